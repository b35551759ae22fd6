// The large products outside the time loops: the input projection of all
// steps in the forward, the input and weight gradients in the backward.
//
// Each is one multiply over every row of the sequence, thousands of rows by
// a few hundred to a few thousand columns. For float on a CPU with AVX-512,
// and for bfloat16 on one with AVX512_BF16, they run on the same tile
// kernels as the step multiplies (matmul/); with fewer rows than packing
// repays (a short sequence at a small batch), the row dot products read the
// weight in place; elsewhere at::mm does them.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fusedrnn::cpu {

// a (M x K) times b (K x N), plus `bias` (N) on every row when given, as a
// new contiguous (M x N) tensor in the compute type (float for bfloat16:
// products are summed in float, and the caller rounds the result only where
// it must). a and b are 2-D CPU tensors of one dtype;
// b is best contiguous or a transposed contiguous tensor (anything else is
// copied first), a may have any strides (a transposed one is read in
// blocks). Pass as b the operand with fewer elements: it is copied once
// into the kernels' layout.
at::Tensor whole_multiply(const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& bias = std::nullopt);

// The same for the rows of a layer's input x: (T, B, K) dense, of any
// strides, or (rows, K) packed; the result's rows in time-major order (row
// t*B + b for x[t][b]). A dense x whose steps are not one strided matrix
// (the time-major view of batch-first input) is read in place, a sequence
// (or a step) at a time, where each row's elements are adjacent.
at::Tensor time_major_multiply(const at::Tensor& x, const at::Tensor& b,
                               const std::optional<at::Tensor>& bias);

}  // namespace fusedrnn::cpu
