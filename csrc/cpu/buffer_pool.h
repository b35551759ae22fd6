// Large CPU buffers of the layer ops, recycled across calls.
//
// A forward at the fastrnns size allocates about 80 MB of buffers (gates,
// outputs, cell states) and its backward as much again. Memory fresh from
// the OS costs a page fault per 4 KiB page at first touch: about 1 us each
// on the test VM, 15-20 ms of a 90-180 ms fastrnns forward (torch's
// allocator returns blocks this large to the OS when they are freed, so
// every call pays again). Buffers from this pool go back to it when their
// tensor dies, and the next call of the same sizes reuses them without a
// fault, as PyTorch's caching allocator does on the GPU. New blocks are
// 2 MiB-aligned and advised as transparent huge pages: 512 times fewer
// faults even on the first call.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fusedrnn::cpu {

// Buffers smaller than this come from at::empty: malloc already reuses
// them, and the pool would only hold memory.
constexpr int64_t kMinPooledBytes = int64_t(1) << 20;
// The free blocks the pool keeps, in all; a block returned beyond this goes
// back to the OS.
constexpr int64_t kMaxPooledBytes = int64_t(1) << 30;

// at::empty(sizes, options) for a CPU tensor, its storage from the pool
// when it is large enough. Contiguous.
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

// `t` in `dtype`: `t` itself when it has it, else a pooled copy.
at::Tensor pooled_to(const at::Tensor& t, at::ScalarType dtype);

}  // namespace fusedrnn::cpu
