// The CPU kernel of fusedrnn::random_mask (schema: core/schemas.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../core/layer_args.h"
#include "../core/random_mask.h"
#include "cell_loops.h"  // FUSEDRNN_MULTIVERSION

namespace fusedrnn::cpu {
namespace {

// Units [begin, end) of a mask; vectorised where the CPU multiplies 64-bit
// lanes (AVX-512).
FUSEDRNN_MULTIVERSION void fill_mask(uint64_t key, uint64_t threshold,
                                     bool* __restrict out, int64_t begin,
                                     int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    out[i] = mask_unit(key, threshold, static_cast<uint64_t>(i));
  }
}

at::Tensor random_mask(const at::Tensor& seed, c10::SymIntArrayRef sym_size,
                       double p) {
  at::Tensor mask =
      checked_random_mask(seed, sym_size, p, c10::DeviceType::CPU, "CPU");
  const uint64_t key = static_cast<uint64_t>(seed.item<int64_t>());
  const uint64_t threshold = mask_threshold(p);
  bool* out = mask.data_ptr<bool>();
  // A core fills about 3 units per nanosecond: threads only for masks
  // large enough to repay waking them.
  at::parallel_for(0, mask.numel(), 1 << 21, [&](int64_t begin, int64_t end) {
    fill_mask(key, threshold, out, begin, end);
  });
  return mask;
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) { m.impl("random_mask", &random_mask); }

}  // namespace fusedrnn::cpu
