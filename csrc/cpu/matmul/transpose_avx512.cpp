// The AVX-512 16 x 16 float transpose of copy_in_squares (strided_copy.h).
#include "strided_copy.h"

#include <c10/util/Exception.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fusedrnn::cpu {

#if defined(__x86_64__)

// Four rounds of shuffles, each pairing registers at twice the distance of
// the last: elements, pairs, 128-bit lanes of four, then lanes of eight.
__attribute__((target("avx512f"))) void transpose_square(
    const float* src, int64_t src_col_stride, float* dst,
    int64_t dst_row_stride) {
  __m512 a[16], b[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_loadu_ps(src + i * src_col_stride);
  for (int i = 0; i < 8; ++i) {
    b[2 * i] = _mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]);
    b[2 * i + 1] = _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    a[4 * i] = _mm512_shuffle_ps(b[4 * i], b[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    a[4 * i + 1] = _mm512_shuffle_ps(b[4 * i], b[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    a[4 * i + 2] = _mm512_shuffle_ps(b[4 * i + 1], b[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    a[4 * i + 3] = _mm512_shuffle_ps(b[4 * i + 1], b[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    b[i] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0x88);
    b[i + 4] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0xdd);
    b[i + 8] = _mm512_shuffle_f32x4(a[i + 8], a[i + 12], 0x88);
    b[i + 12] = _mm512_shuffle_f32x4(a[i + 8], a[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; ++i) {
    a[i] = _mm512_shuffle_f32x4(b[i], b[i + 8], 0x88);
    a[i + 8] = _mm512_shuffle_f32x4(b[i], b[i + 8], 0xdd);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * dst_row_stride, a[i]);
}

#else  // not x86-64

void transpose_square(const float*, int64_t, float*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no AVX-512 kernels off x86-64");
}

#endif

}  // namespace fusedrnn::cpu
