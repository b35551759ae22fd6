// The AVX-512 tile kernels (see tile_kernels.h).
//
// setup.py compiles every file for baseline x86-64, so the functions that
// use AVX-512 say so themselves with a target attribute; they only run after
// has_avx512_kernels() has checked the CPU. Off x86-64 this file provides
// only has_avx512_kernels(), which is false there.
#include "tile_kernels.h"

#include <c10/util/Exception.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fusedrnn::cpu {

#if defined(__x86_64__)

#define FUSEDRNN_AVX512 __attribute__((target("avx512f")))

namespace {

// The loops over rows and vectors have constant trip counts, so the
// compiler unrolls them and keeps acc[][] in registers.
template <int kRows, int kVectors>
FUSEDRNN_AVX512 void tile(int64_t depth, const float* a, int64_t lda,
                          const float* b, float beta, const float* bias,
                          float* c, int64_t ldc, int64_t columns) {
  constexpr int64_t kWidth = 16 * kVectors;
  __m512 acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  // The tile of C read at the end is fetched while the k loop runs: in
  // large multiplies it has usually left the caches since the previous
  // depth block wrote it.
  if (beta != 0.0f) {
    for (int r = 0; r < kRows; ++r) {
      for (int v = 0; v < kVectors; ++v) {
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * v),
                     _MM_HINT_T0);
      }
    }
  }
  for (int64_t k = 0; k < depth; ++k) {
    __m512 panel[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      panel[v] = _mm512_loadu_ps(b + k * kWidth + 16 * v);
    }
    for (int r = 0; r < kRows; ++r) {
      const __m512 a_rk = _mm512_set1_ps(a[r * lda + k]);
      for (int v = 0; v < kVectors; ++v) {
        acc[r][v] = _mm512_fmadd_ps(a_rk, panel[v], acc[r][v]);
      }
    }
  }
  // Only the last vector can hold padding columns, which must not be
  // written (they may be the next panel's, or past the end of C's row).
  const int64_t last_columns = columns - 16 * (kVectors - 1);
  const __mmask16 last_mask = static_cast<__mmask16>((1u << last_columns) - 1);
  const __m512 beta_v = _mm512_set1_ps(beta);
  __m512 bias_v[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    const __mmask16 mask = v + 1 < kVectors ? __mmask16(0xffff) : last_mask;
    bias_v[v] = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + 16 * v)
                                : _mm512_setzero_ps();
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) {
      float* out = c + r * ldc + 16 * v;
      const __mmask16 mask = v + 1 < kVectors ? __mmask16(0xffff) : last_mask;
      __m512 result = _mm512_add_ps(acc[r][v], bias_v[v]);
      if (beta != 0.0f) {
        result = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, out),
                                 result);
      }
      _mm512_mask_storeu_ps(out, mask, result);
    }
  }
}

template <int kRows>
struct RowKernels {
  static constexpr TileKernel by_vectors[4] = {
      tile<kRows, 1>, tile<kRows, 2>, tile<kRows, 3>, tile<kRows, 4>};
};

constexpr const TileKernel* kKernels[kMaxTileRows] = {
    RowKernels<1>::by_vectors, RowKernels<2>::by_vectors,
    RowKernels<3>::by_vectors, RowKernels<4>::by_vectors,
    RowKernels<5>::by_vectors, RowKernels<6>::by_vectors};

}  // namespace

bool has_avx512_kernels() {
  static const bool supported = __builtin_cpu_supports("avx512f");
  return supported;
}

TileKernel avx512_tile_kernel(int rows, int vectors) {
  TORCH_INTERNAL_ASSERT(rows >= 1 && rows <= kMaxTileRows && vectors >= 1 &&
                        vectors <= 4);
  return kKernels[rows - 1][vectors - 1];
}

#else  // not x86-64

bool has_avx512_kernels() { return false; }

TileKernel avx512_tile_kernel(int, int) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no AVX-512 kernels off x86-64");
  return nullptr;
}

#endif

}  // namespace fusedrnn::cpu
