// bfloat16 multiplies of a few rows by a weight matrix used where it lies,
// without packing it: C (m x n) = A (m x k) op(W) + beta C, C in float.
//
// Packing W costs a pass over all of it, repaid only over many rows (see
// kMinRowsToPack); one step of a small batch (a decoding loop's cell call,
// streaming at batch 1) reads W once instead, here. float uses BLAS for
// this; there is no BLAS for bfloat16 products summed in float.
//
// - op(W) = W^T, W (n x k) row-major: each C element is a dot product of
//   a row of A and a row of W, both contiguous in k (AVX512_BF16 dot
//   products of 32 elements at a time).
// - op(W) = W, W (k x n) row-major: each row of W, widened to float, is
//   added to the rows of C times A's element (16 columns at a time).
// Needs has_avx512_kernels<BFloat16>().
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace fusedrnn::cpu {

// C (m x n) = A (m x k) op(W) + beta C, with op(W) = W^T for a W (n x k)
// when `transpose`, else W (k x n); ldw is W's leading dimension. Splits
// C's columns over the intra-op threads (inside a parallel region it runs
// on the calling thread).
void few_rows_multiply(int64_t m, const c10::BFloat16* a, int64_t lda,
                       const c10::BFloat16* w, int64_t ldw, int64_t k,
                       int64_t n, bool transpose, float beta, float* c,
                       int64_t ldc);

}  // namespace fusedrnn::cpu
