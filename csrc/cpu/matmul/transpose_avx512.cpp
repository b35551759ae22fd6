// The AVX-512 square transposes of copy_in_squares (strided_copy.h).
#include "strided_copy.h"

#include <c10/util/Exception.h>

#include "avx512_target.h"

namespace fusedrnn::cpu {

#if defined(__x86_64__)

namespace {

// Transposes the 16 x 16 matrix of 32-bit values whose rows are a[0..15]:
// four rounds of shuffles, each pairing registers at twice the distance of
// the last (elements, pairs, 128-bit lanes of four, then lanes of eight).
// They only move bits, so any 32-bit payload survives.
FUSEDRNN_AVX512 void transpose(
    __m512 (&a)[16]) {
  __m512 b[16];
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
}

}  // namespace

FUSEDRNN_AVX512_KERNEL void transpose_square(
    const float* src, int64_t src_col_stride, float* dst,
    int64_t dst_row_stride) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_loadu_ps(src + i * src_col_stride);
  transpose(a);
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * dst_row_stride, a[i]);
}

// The same with 16 pairs of bfloat16 columns: columns 2i and 2i + 1 of
// source row r become one 32-bit value (low half first, as in memory),
// and the 16 x 16 matrix of those is transposed.
FUSEDRNN_AVX512_KERNEL void transpose_square(
    const c10::BFloat16* src, int64_t src_col_stride, c10::BFloat16* dst,
    int64_t dst_row_stride) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) {
    const auto* first = src + 2 * i * src_col_stride;
    const __m512i low = _mm512_cvtepu16_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(first)));
    const __m512i high = _mm512_cvtepu16_epi32(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(first + src_col_stride)));
    a[i] = _mm512_castsi512_ps(
        _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
  }
  transpose(a);
  for (int i = 0; i < 16; ++i) {
    _mm512_storeu_ps(reinterpret_cast<float*>(dst + i * dst_row_stride), a[i]);
  }
}

#else  // not x86-64

void transpose_square(const float*, int64_t, float*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no AVX-512 kernels off x86-64");
}

void transpose_square(const c10::BFloat16*, int64_t, c10::BFloat16*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no AVX-512 kernels off x86-64");
}

#endif

}  // namespace fusedrnn::cpu
