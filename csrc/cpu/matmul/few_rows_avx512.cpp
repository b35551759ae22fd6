// The few-row bfloat16 multiplies (see few_rows.h), for AVX-512 with
// AVX512_BF16. Like the tile kernels, compiled for baseline x86-64 with
// target attributes, and only called after has_avx512_kernels<BFloat16>().
#include "few_rows.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "packed_multiply.h"  // kMinTaskWork

#include "avx512_target.h"

namespace fusedrnn::cpu {

#if defined(__x86_64__)

namespace {

// Rows of A (and C) per pass over W: their accumulators stay in registers.
constexpr int64_t kRowGroup = 8;

// C = A W^T + beta C, W (n x k): dot products along k.
FUSEDRNN_AVX512_BF16_BW void times_transposed(
    int64_t m, const c10::BFloat16* a, int64_t lda, const c10::BFloat16* w,
    int64_t ldw, int64_t k, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t m0 = 0; m0 < m; m0 += kRowGroup) {
    const int64_t rows = std::min(kRowGroup, m - m0);
    for (int64_t j = 0; j < n; ++j) {
      const c10::BFloat16* w_row = w + j * ldw;
      __m512 acc[kRowGroup];
      for (int64_t r = 0; r < kRowGroup; ++r) acc[r] = _mm512_setzero_ps();
      for (int64_t k0 = 0; k0 < k; k0 += 32) {
        // A partial chunk loads zeros past k: they pair with zeros.
        const __mmask32 mask =
            k - k0 >= 32 ? __mmask32(~0u) : __mmask32((1u << (k - k0)) - 1);
        const __m512bh w_chunk = (__m512bh)_mm512_maskz_loadu_epi16(mask, w_row + k0);
        for (int64_t r = 0; r < rows; ++r) {
          const __m512bh a_chunk =
              (__m512bh)_mm512_maskz_loadu_epi16(mask, a + (m0 + r) * lda + k0);
          acc[r] = _mm512_dpbf16_ps(acc[r], a_chunk, w_chunk);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* out = c + (m0 + r) * ldc + j;
        const float sum = _mm512_reduce_add_ps(acc[r]);
        *out = beta != 0.0f ? sum + beta * *out : sum;
      }
    }
  }
}

// C = A W + beta C, W (k x n): rows of W times A's elements.
FUSEDRNN_AVX512_BF16_BW void times(int64_t m, const c10::BFloat16* a, int64_t lda,
                                const c10::BFloat16* w, int64_t ldw, int64_t k,
                                int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t m0 = 0; m0 < m; m0 += kRowGroup) {
    const int64_t rows = std::min(kRowGroup, m - m0);
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
      const __mmask16 mask =
          n - j0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - j0)) - 1);
      __m512 acc[kRowGroup];
      for (int64_t r = 0; r < kRowGroup; ++r) acc[r] = _mm512_setzero_ps();
      for (int64_t kk = 0; kk < k; ++kk) {
        // bfloat16 is the high half of a float: widen and shift.
        const __m256i half = _mm256_maskz_loadu_epi16(mask, w + kk * ldw + j0);
        const __m512 w_row = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
        for (int64_t r = 0; r < rows; ++r) {
          const float a_rk = static_cast<float>(a[(m0 + r) * lda + kk]);
          acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a_rk), w_row, acc[r]);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* out = c + (m0 + r) * ldc + j0;
        __m512 result = acc[r];
        if (beta != 0.0f) {
          result = _mm512_fmadd_ps(_mm512_set1_ps(beta),
                                   _mm512_maskz_loadu_ps(mask, out), result);
        }
        _mm512_mask_storeu_ps(out, mask, result);
      }
    }
  }
}

}  // namespace

void few_rows_multiply(int64_t m, const c10::BFloat16* a, int64_t lda,
                       const c10::BFloat16* w, int64_t ldw, int64_t k,
                       int64_t n, bool transpose, float beta, float* c,
                       int64_t ldc) {
  if (m == 0) return;
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, m * k));
  at::parallel_for(0, n, grain, [&](int64_t j0, int64_t j1) {
    // Columns [j0, j1) of op(W): rows of W^T's W, or columns of W.
    if (transpose) {
      times_transposed(m, a, lda, w + j0 * ldw, ldw, k, j1 - j0, beta, c + j0, ldc);
    } else {
      times(m, a, lda, w + j0, ldw, k, j1 - j0, beta, c + j0, ldc);
    }
  });
}

#else  // not x86-64

void few_rows_multiply(int64_t, const c10::BFloat16*, int64_t,
                       const c10::BFloat16*, int64_t, int64_t, int64_t, bool,
                       float, float*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no bfloat16 kernels off x86-64");
}

#endif

}  // namespace fusedrnn::cpu
