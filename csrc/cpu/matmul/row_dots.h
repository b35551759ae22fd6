// Dot products of consecutive rows of a row-major matrix with a few
// vectors, reading the matrix where it lies: the multiplies of the one-step
// cell kernel (cpu/cell_step.h), which reads each weight row once per call
// and must not pay for packing or transposing W.
//
//   out[b * ldo + r] = sum_k w[r * ldw + k] * v[b * ldv + k]
//   for r < rows, b < vectors, k < depth,
//
// summed in the compute type compute_t<T> (float for bfloat16). Up to
// kMaxDotVectors vectors share each pass over the rows, so every weight
// element loaded feeds that many products.
//
// On a CPU with AVX-512 the sums run in vector registers
// (row_dots_avx512.cpp: AVX-512F for every type, bfloat16 widened to
// float as it is loaded); elsewhere in plain loops (row_dots.cpp). The
// order of the additions differs from a GEMM's, as any two GEMMs' do; NaN
// and infinity propagate as in any sum of products (inf * 0 is NaN).
#pragma once

#include <ATen/OpMathType.h>
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace fusedrnn::cpu {

constexpr int64_t kMaxDotVectors = 4;

// 1 <= vectors <= kMaxDotVectors; rows, depth >= 0. Runs on the calling
// thread. Defined for float, double and c10::BFloat16.
template <typename T>
void row_dots(int64_t rows, int64_t vectors, const T* w, int64_t ldw,
              const T* v, int64_t ldv, int64_t depth,
              at::opmath_type<T>* out, int64_t ldo);

// The AVX-512 version (row_dots_avx512.cpp); call only where
// has_avx512_kernels<float>() (float, double) or
// has_avx512_kernels<c10::BFloat16>() (bfloat16).
template <typename T>
void row_dots_avx512(int64_t rows, int64_t vectors, const T* w, int64_t ldw,
                     const T* v, int64_t ldv, int64_t depth,
                     at::opmath_type<T>* out, int64_t ldo);

}  // namespace fusedrnn::cpu
