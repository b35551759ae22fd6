// The AVX-512 tile kernels (see tile_kernels.h).
//
// setup.py compiles every file for baseline x86-64, so the functions that
// use AVX-512 say so themselves with a target attribute; they only run after
// has_avx512_kernels<E>() has checked the CPU. Off x86-64 this file provides
// only has_avx512_kernels<E>(), which is false there.
#include "tile_kernels.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <type_traits>

#include "avx512_target.h"

namespace fusedrnn::cpu {

#if defined(__x86_64__)

namespace {

// What every kernel does before and after its k loop. The loops over rows
// and vectors have constant trip counts, so the compiler unrolls them and
// keeps acc[][] in registers (these helpers are always inlined).
template <int kRows, int kVectors>
FUSEDRNN_AVX512 void start_tile(__m512 (&acc)[kRows][kVectors], float beta,
                                const float* c, int64_t ldc) {
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
}

template <int kRows, int kVectors>
FUSEDRNN_AVX512 void finish_tile(const __m512 (&acc)[kRows][kVectors],
                                 float beta, const float* bias, float* c,
                                 int64_t ldc, int64_t columns) {
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

template <int kRows, int kVectors>
FUSEDRNN_AVX512_KERNEL void float_tile(int64_t depth, const float* a,
                                       int64_t lda, const float* b, float beta,
                                       const float* bias, float* c,
                                       int64_t ldc, int64_t columns) {
  constexpr int64_t kWidth = 16 * kVectors;
  __m512 acc[kRows][kVectors];
  start_tile(acc, beta, c, ldc);
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
  finish_tile(acc, beta, bias, c, ldc, columns);
}

// One lane row of a bfloat16 panel (k and k + 1 of 16 * kVectors columns)
// times each row's pair of A, a[r] = A(r, k) and A(r, k + 1) as the two
// halves of one 32-bit value, summed into the float accumulators.
template <int kRows, int kVectors>
FUSEDRNN_AVX512_BF16 void bfloat16_lane_row(__m512 (&acc)[kRows][kVectors],
                                            const int32_t (&a)[kRows],
                                            const c10::BFloat16* b) {
  __m512bh panel[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    panel[v] = (__m512bh)_mm512_loadu_si512(b + 32 * v);
  }
  for (int r = 0; r < kRows; ++r) {
    const __m512bh a_pair = (__m512bh)_mm512_set1_epi32(a[r]);
    for (int v = 0; v < kVectors; ++v) {
      acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a_pair, panel[v]);
    }
  }
}

template <int kRows, int kVectors>
FUSEDRNN_AVX512_BF16_KERNEL void bfloat16_tile(
    int64_t depth, const c10::BFloat16* a, int64_t lda,
    const c10::BFloat16* b, float beta, const float* bias, float* c,
    int64_t ldc, int64_t columns) {
  constexpr int64_t kLaneRow = 2 * 16 * kVectors;  // elements
  __m512 acc[kRows][kVectors];
  start_tile(acc, beta, c, ldc);
  int32_t pairs[kRows];
  int64_t k = 0;
  for (; k + 1 < depth; k += 2) {
    for (int r = 0; r < kRows; ++r) {
      std::memcpy(&pairs[r], a + r * lda + k, sizeof(int32_t));
    }
    bfloat16_lane_row<kRows, kVectors>(acc, pairs, b + k / 2 * kLaneRow);
  }
  if (k < depth) {
    // An odd depth's last k, paired with zero: A's row may end here, and
    // the panel's padding is zero, so the product of the pair's second
    // halves is 0 * 0.
    for (int r = 0; r < kRows; ++r) pairs[r] = a[r * lda + k].x;
    bfloat16_lane_row<kRows, kVectors>(acc, pairs, b + k / 2 * kLaneRow);
  }
  finish_tile(acc, beta, bias, c, ldc, columns);
}

template <typename E, int kRows, int kVectors>
constexpr TileKernel<E> tile() {
  if constexpr (std::is_same_v<E, float>) {
    return float_tile<kRows, kVectors>;
  } else {
    return bfloat16_tile<kRows, kVectors>;
  }
}

// The kernels of element type E by [rows - 1][vectors - 1].
template <typename E, int kRows>
constexpr TileKernel<E> kRowKernels[4] = {
    tile<E, kRows, 1>(), tile<E, kRows, 2>(), tile<E, kRows, 3>(),
    tile<E, kRows, 4>()};
template <typename E>
constexpr const TileKernel<E>* kKernels[kMaxTileRows] = {
    kRowKernels<E, 1>, kRowKernels<E, 2>, kRowKernels<E, 3>,
    kRowKernels<E, 4>, kRowKernels<E, 5>, kRowKernels<E, 6>};

}  // namespace

template <>
bool has_avx512_kernels<float>() {
  static const bool supported = __builtin_cpu_supports("avx512f");
  return supported;
}

template <>
bool has_avx512_kernels<c10::BFloat16>() {
  // (The few-row kernels, few_rows.h, also use AVX512BW and AVX512VL,
  // which every CPU with AVX512_BF16 has.)
  static const bool supported = __builtin_cpu_supports("avx512f") &&
                                __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl") &&
                                __builtin_cpu_supports("avx512bf16");
  return supported;
}

template <typename E>
TileKernel<E> avx512_tile_kernel(int rows, int vectors) {
  TORCH_INTERNAL_ASSERT(rows >= 1 && rows <= kMaxTileRows && vectors >= 1 &&
                        vectors <= 4);
  return kKernels<E>[rows - 1][vectors - 1];
}

#else  // not x86-64

template <typename E>
bool has_avx512_kernels() {
  return false;
}

template <typename E>
TileKernel<E> avx512_tile_kernel(int, int) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no AVX-512 kernels off x86-64");
  return nullptr;
}

template bool has_avx512_kernels<float>();
template bool has_avx512_kernels<c10::BFloat16>();

#endif

template TileKernel<float> avx512_tile_kernel<float>(int, int);
template TileKernel<c10::BFloat16> avx512_tile_kernel<c10::BFloat16>(int, int);

}  // namespace fusedrnn::cpu
