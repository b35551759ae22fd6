// A strided copy for the packing of matrices into the tile kernels' layout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>

#include "tile_kernels.h"  // has_avx512_kernels

namespace fusedrnn::cpu {

// dst[r * dst_row_stride + c] = src[r + c * src_col_stride] for a whole
// square of 16 rows and 64 bytes of columns (16 floats or 32 bfloat16),
// with AVX-512 shuffles (transpose_avx512.cpp; only where
// has_avx512_kernels<float>()).
void transpose_square(const float* src, int64_t src_col_stride, float* dst,
                      int64_t dst_row_stride);
void transpose_square(const c10::BFloat16* src, int64_t src_col_stride,
                      c10::BFloat16* dst, int64_t dst_row_stride);

// dst[r * dst_row_stride + c * dst_col_stride] =
//     src[r * src_row_stride + c * src_col_stride]   for r < rows, c < cols.
// When one side is transposed the other way, a plain loop would touch a new
// cache line per element on that side; copied in squares, the lines read
// and written stay in L1 while a square is copied.
template <typename E>
void copy_in_squares(int64_t rows, int64_t cols, const E* src,
                     int64_t src_row_stride, int64_t src_col_stride, E* dst,
                     int64_t dst_row_stride, int64_t dst_col_stride = 1) {
  // Squares of 16 rows and a cache line of columns.
  constexpr int64_t kRows = 16, kCols = 64 / sizeof(E);
  // Transposes (the weight gradients' left operand, W^T's panels) shuffle
  // whole squares in registers: half the time of element by element (the
  // strided reads still bound it).
  constexpr bool kShuffles =
      std::is_same_v<E, float> || std::is_same_v<E, c10::BFloat16>;
  bool shuffle = false;
  if constexpr (kShuffles) {
    shuffle = src_row_stride == 1 && dst_col_stride == 1 &&
              has_avx512_kernels<float>();
  }
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int64_t r1 = std::min(rows, r0 + kRows);
    for (int64_t c0 = 0; c0 < cols; c0 += kCols) {
      const int64_t c1 = std::min(cols, c0 + kCols);
      if constexpr (kShuffles) {
        if (shuffle && r1 - r0 == kRows && c1 - c0 == kCols) {
          transpose_square(src + r0 + c0 * src_col_stride, src_col_stride,
                           dst + r0 * dst_row_stride + c0, dst_row_stride);
          continue;
        }
      }
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) {
          dst[r * dst_row_stride + c * dst_col_stride] =
              src[r * src_row_stride + c * src_col_stride];
        }
      }
    }
  }
}

}  // namespace fusedrnn::cpu
