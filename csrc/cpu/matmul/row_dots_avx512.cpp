// The AVX-512 row dot products (see row_dots.h).
//
// Like the tile kernels, this file is compiled for baseline x86-64 and its
// functions say with a target attribute that they use AVX-512F (every
// element type here needs only that); they run only after
// has_avx512_kernels<>() has checked the CPU.
//
// A kernel holds kRows x kVectors accumulators (16 at most: with the loaded
// vectors they fit the 32 registers) and walks the depth in chunks: it
// loads each vector's chunk once and each row's chunk once, and multiplies
// every pair. At the end each accumulator is summed across its lanes.
// bfloat16 is widened to float as it is loaded (a bfloat16 is the high
// half of a float), so its products are exact and summed in float like
// float32's; the weights are read in 16-bit either way, which is what a
// one-row step waits for.
#include "row_dots.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fusedrnn::cpu {

#if defined(__x86_64__)

// A helper inlined into the kernels, and a kernel.
#define FUSEDRNN_AVX512 __attribute__((target("avx512f"), always_inline)) inline
#define FUSEDRNN_AVX512_KERNEL __attribute__((target("avx512f")))

namespace {

// How the kernels load, multiply and sum an element type: kDepth elements
// per chunk, in a Vec of compute-type lanes.
struct FloatLanes {
  using T = float;
  using Out = float;
  using Vec = __m512;
  static constexpr int64_t kDepth = 16;
  FUSEDRNN_AVX512 static Vec zero() { return _mm512_setzero_ps(); }
  FUSEDRNN_AVX512 static Vec load(const T* p) { return _mm512_loadu_ps(p); }
  // The first n < kDepth elements, zeros after them (nothing past them is
  // read: the masked lanes do not fault).
  FUSEDRNN_AVX512 static Vec load(const T* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  FUSEDRNN_AVX512 static Vec fma(Vec w, Vec v, Vec acc) {
    return _mm512_fmadd_ps(w, v, acc);
  }
  FUSEDRNN_AVX512 static Out total(Vec acc) { return _mm512_reduce_add_ps(acc); }
};

struct DoubleLanes {
  using T = double;
  using Out = double;
  using Vec = __m512d;
  static constexpr int64_t kDepth = 8;
  FUSEDRNN_AVX512 static Vec zero() { return _mm512_setzero_pd(); }
  FUSEDRNN_AVX512 static Vec load(const T* p) { return _mm512_loadu_pd(p); }
  FUSEDRNN_AVX512 static Vec load(const T* p, int64_t n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  FUSEDRNN_AVX512 static Vec fma(Vec w, Vec v, Vec acc) {
    return _mm512_fmadd_pd(w, v, acc);
  }
  FUSEDRNN_AVX512 static Out total(Vec acc) { return _mm512_reduce_add_pd(acc); }
};

struct BFloat16Lanes {
  using T = c10::BFloat16;
  using Out = float;
  using Vec = __m512;
  static constexpr int64_t kDepth = 16;
  FUSEDRNN_AVX512 static Vec zero() { return _mm512_setzero_ps(); }
  // 16 bfloat16, widened: each 16-bit pattern shifted into a float's high
  // half (exact, NaN and infinity included).
  FUSEDRNN_AVX512 static Vec load(const T* p) {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
  }
  FUSEDRNN_AVX512 static Vec load(const T* p, int64_t n) {
    // 16-bit masked loads need AVX512BW; a row's tail goes through a
    // zeroed copy instead (once per row and call).
    T chunk[kDepth];
    std::memset(chunk, 0, sizeof(chunk));
    std::memcpy(chunk, p, n * sizeof(T));
    return load(chunk);
  }
  FUSEDRNN_AVX512 static Vec fma(Vec w, Vec v, Vec acc) {
    return _mm512_fmadd_ps(w, v, acc);
  }
  FUSEDRNN_AVX512 static Out total(Vec acc) { return _mm512_reduce_add_ps(acc); }
};

// Dot products of rows [0, rows) (rows <= kRows) of w with kVectors
// vectors. Rows past `rows` repeat the last one (cached, and not stored),
// so that the loops keep their constant trip counts.
template <class L, int kRows, int kVectors>
FUSEDRNN_AVX512_KERNEL void dots(int64_t rows, const typename L::T* w,
                                 int64_t ldw, const typename L::T* v,
                                 int64_t ldv, int64_t depth,
                                 typename L::Out* out, int64_t ldo) {
  using Vec = typename L::Vec;
  const typename L::T* row[kRows];
  for (int r = 0; r < kRows; ++r) {
    row[r] = w + std::min<int64_t>(r, rows - 1) * ldw;
  }
  Vec acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < kVectors; ++b) acc[r][b] = L::zero();
  }
  int64_t k = 0;
  for (; k + L::kDepth <= depth; k += L::kDepth) {
    Vec vec[kVectors];
    for (int b = 0; b < kVectors; ++b) vec[b] = L::load(v + b * ldv + k);
    for (int r = 0; r < kRows; ++r) {
      const Vec w_chunk = L::load(row[r] + k);
      for (int b = 0; b < kVectors; ++b) {
        acc[r][b] = L::fma(w_chunk, vec[b], acc[r][b]);
      }
    }
  }
  if (k < depth) {
    const int64_t n = depth - k;
    Vec vec[kVectors];
    for (int b = 0; b < kVectors; ++b) vec[b] = L::load(v + b * ldv + k, n);
    for (int r = 0; r < kRows; ++r) {
      const Vec w_chunk = L::load(row[r] + k, n);
      for (int b = 0; b < kVectors; ++b) {
        acc[r][b] = L::fma(w_chunk, vec[b], acc[r][b]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows) break;
    for (int b = 0; b < kVectors; ++b) out[b * ldo + r] = L::total(acc[r][b]);
  }
}

// Rows in blocks of kRows, with as many rows per block as keep 16
// accumulators: 16 rows for one vector, 4 for four.
template <class L, int kVectors>
void dots_over_rows(int64_t rows, const typename L::T* w, int64_t ldw,
                    const typename L::T* v, int64_t ldv, int64_t depth,
                    typename L::Out* out, int64_t ldo) {
  constexpr int kRows = 16 / kVectors;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    dots<L, kRows, kVectors>(std::min<int64_t>(kRows, rows - r0), w + r0 * ldw,
                             ldw, v, ldv, depth, out + r0, ldo);
  }
}

template <typename T>
struct LanesOf;
template <>
struct LanesOf<float> {
  using type = FloatLanes;
};
template <>
struct LanesOf<double> {
  using type = DoubleLanes;
};
template <>
struct LanesOf<c10::BFloat16> {
  using type = BFloat16Lanes;
};

}  // namespace

template <typename T>
void row_dots_avx512(int64_t rows, int64_t vectors, const T* w, int64_t ldw,
                     const T* v, int64_t ldv, int64_t depth,
                     at::opmath_type<T>* out, int64_t ldo) {
  using L = typename LanesOf<T>::type;
  if (rows <= 0) return;
  switch (vectors) {
    case 1:
      return dots_over_rows<L, 1>(rows, w, ldw, v, ldv, depth, out, ldo);
    case 2:
      return dots_over_rows<L, 2>(rows, w, ldw, v, ldv, depth, out, ldo);
    case 3:
      return dots_over_rows<L, 3>(rows, w, ldw, v, ldv, depth, out, ldo);
    case 4:
      return dots_over_rows<L, 4>(rows, w, ldw, v, ldv, depth, out, ldo);
    default:
      TORCH_INTERNAL_ASSERT(false, "fusedrnn: row_dots takes 1 to ",
                            kMaxDotVectors, " vectors, got ", vectors);
  }
}

#else  // not x86-64

template <typename T>
void row_dots_avx512(int64_t, int64_t, const T*, int64_t, const T*, int64_t,
                     int64_t, at::opmath_type<T>*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "fusedrnn: no AVX-512 kernels off x86-64");
}

#endif

template void row_dots_avx512<float>(int64_t, int64_t, const float*, int64_t,
                                     const float*, int64_t, int64_t, float*,
                                     int64_t);
template void row_dots_avx512<double>(int64_t, int64_t, const double*, int64_t,
                                      const double*, int64_t, int64_t, double*,
                                      int64_t);
template void row_dots_avx512<c10::BFloat16>(int64_t, int64_t,
                                             const c10::BFloat16*, int64_t,
                                             const c10::BFloat16*, int64_t,
                                             int64_t, float*, int64_t);

}  // namespace fusedrnn::cpu
