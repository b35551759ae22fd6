// A strided copy for the packing of matrices into the tile kernels' layout.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fusedrnn::cpu {

// dst[r * dst_row_stride + c * dst_col_stride] =
//     src[r * src_row_stride + c * src_col_stride]   for r < rows, c < cols.
// When one side is transposed the other way, a plain loop would touch a new
// cache line per element on that side; copied in squares of 16 x 16, the
// lines read and written stay in L1 while a square is copied.
template <typename E>
void copy_in_squares(int64_t rows, int64_t cols, const E* src,
                     int64_t src_row_stride, int64_t src_col_stride, E* dst,
                     int64_t dst_row_stride, int64_t dst_col_stride = 1) {
  constexpr int64_t kSquare = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kSquare) {
    const int64_t r1 = std::min(rows, r0 + kSquare);
    for (int64_t c0 = 0; c0 < cols; c0 += kSquare) {
      const int64_t c1 = std::min(cols, c0 + kSquare);
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
