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
// bfloat16 is widened to float as it is loaded (BFloat16Lanes), so its
// products are exact and summed in float like float32's; the weights are
// read in 16-bit either way, which is what a one-row step waits for.
#include "row_dots.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#include "avx512_target.h"

namespace fusedrnn::cpu {

#if defined(__x86_64__)

namespace {

// The lane sums of 16 float accumulators as one vector, lane i holding
// acc[i]'s, in 15 additions (instead of 16 reductions of 4 each): halves
// of pairs are added (8 vectors of two accumulators' 8 partial sums), then
// quarters (4 vectors of four accumulators' 4 partial sums, one per
// 128-bit lane), then within the 128-bit lanes. That leaves lane 4q + j
// holding accumulator 4j + q's sum, so the accumulators go in transposed.
FUSEDRNN_AVX512 __m512 float_totals(const __m512 (&acc)[16]) {
  __m512 a[16];
  for (int q = 0; q < 4; ++q) {
    for (int j = 0; j < 4; ++j) a[4 * j + q] = acc[4 * q + j];
  }
  __m512 halves[8], quarters[4];
  for (int k = 0; k < 8; ++k) {
    halves[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0x44),
                              _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0xEE));
  }
  for (int k = 0; k < 4; ++k) {
    quarters[k] =
        _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * k], halves[2 * k + 1], 0x88),
                      _mm512_shuffle_f32x4(halves[2 * k], halves[2 * k + 1], 0xDD));
  }
  const __m512 pairs0 = _mm512_add_ps(_mm512_unpacklo_ps(quarters[0], quarters[1]),
                                      _mm512_unpackhi_ps(quarters[0], quarters[1]));
  const __m512 pairs1 = _mm512_add_ps(_mm512_unpacklo_ps(quarters[2], quarters[3]),
                                      _mm512_unpackhi_ps(quarters[2], quarters[3]));
  const __m512d p0 = _mm512_castps_pd(pairs0), p1 = _mm512_castps_pd(pairs1);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p0, p1)),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(p0, p1)));
}

// The same for 8 double accumulators acc[first, first + 8): lane 2q + j
// ends up with accumulator 4j + q's sum, so again they go in transposed.
FUSEDRNN_AVX512 __m512d double_totals(const __m512d (&acc)[16], int first) {
  __m512d a[8];
  for (int q = 0; q < 4; ++q) {
    for (int j = 0; j < 2; ++j) a[4 * j + q] = acc[first + 2 * q + j];
  }
  __m512d halves[4];
  for (int k = 0; k < 4; ++k) {
    halves[k] = _mm512_add_pd(_mm512_shuffle_f64x2(a[2 * k], a[2 * k + 1], 0x44),
                              _mm512_shuffle_f64x2(a[2 * k], a[2 * k + 1], 0xEE));
  }
  const __m512d q0 = _mm512_add_pd(_mm512_shuffle_f64x2(halves[0], halves[1], 0x88),
                                   _mm512_shuffle_f64x2(halves[0], halves[1], 0xDD));
  const __m512d q1 = _mm512_add_pd(_mm512_shuffle_f64x2(halves[2], halves[3], 0x88),
                                   _mm512_shuffle_f64x2(halves[2], halves[3], 0xDD));
  return _mm512_add_pd(_mm512_unpacklo_pd(q0, q1), _mm512_unpackhi_pd(q0, q1));
}

// How the kernels load, multiply and sum an element type: a chunk of
// kDepth elements at a time, loaded as a Chunk and multiplied into a Vec
// of compute-type lanes.
struct FloatLanes {
  using T = float;
  using Out = float;
  using Vec = __m512;
  using Chunk = __m512;
  static constexpr int64_t kDepth = 16;
  FUSEDRNN_AVX512 static Vec zero() { return _mm512_setzero_ps(); }
  FUSEDRNN_AVX512 static Chunk load(const T* p) { return _mm512_loadu_ps(p); }
  // The first n < kDepth elements, zeros after them (nothing past them is
  // read: the masked lanes do not fault).
  FUSEDRNN_AVX512 static Chunk load(const T* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  FUSEDRNN_AVX512 static Vec fma(Chunk w, Chunk v, Vec acc) {
    return _mm512_fmadd_ps(w, v, acc);
  }
  // out[i] = the sum of acc[i]'s lanes, for 16 accumulators.
  FUSEDRNN_AVX512 static void totals(const Vec (&acc)[16], Out* out) {
    _mm512_storeu_ps(out, float_totals(acc));
  }
};

struct DoubleLanes {
  using T = double;
  using Out = double;
  using Vec = __m512d;
  using Chunk = __m512d;
  static constexpr int64_t kDepth = 8;
  FUSEDRNN_AVX512 static Vec zero() { return _mm512_setzero_pd(); }
  FUSEDRNN_AVX512 static Chunk load(const T* p) { return _mm512_loadu_pd(p); }
  FUSEDRNN_AVX512 static Chunk load(const T* p, int64_t n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  FUSEDRNN_AVX512 static Vec fma(Chunk w, Chunk v, Vec acc) {
    return _mm512_fmadd_pd(w, v, acc);
  }
  FUSEDRNN_AVX512 static void totals(const Vec (&acc)[16], Out* out) {
    _mm512_storeu_pd(out, double_totals(acc, 0));
    _mm512_storeu_pd(out + 8, double_totals(acc, 8));
  }
};

// bfloat16 is widened to float (exactly: a bfloat16 is a float's high
// half), 32 elements per 64-byte load: float lane i of the 32-bit lanes
// holds elements 2i (low half) and 2i + 1 (high half), so the even
// elements are the lanes shifted up by 16 bits and the odd ones the lanes
// with their low half cleared. Two single-cycle integer operations per 32
// elements, where widening 16 at a time (a zero-extending shuffle and a
// shift) kept a one-row step below half the rate at which L2 delivers the
// weights.
struct BFloat16Lanes {
  using T = c10::BFloat16;
  using Out = float;
  using Vec = __m512;
  struct Chunk {
    __m512 even, odd;
  };
  static constexpr int64_t kDepth = 32;
  FUSEDRNN_AVX512 static Vec zero() { return _mm512_setzero_ps(); }
  FUSEDRNN_AVX512 static Chunk load(const T* p) {
    const __m512i pairs = _mm512_loadu_si512(p);
    return {_mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16)),
            _mm512_castsi512_ps(_mm512_and_si512(
                pairs, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))))};
  }
  FUSEDRNN_AVX512 static Chunk load(const T* p, int64_t n) {
    // 16-bit masked loads need AVX512BW; a row's tail goes through a
    // zeroed copy instead (once per row and call).
    T chunk[kDepth];
    std::memset(chunk, 0, sizeof(chunk));
    std::memcpy(chunk, p, n * sizeof(T));
    return load(chunk);
  }
  FUSEDRNN_AVX512 static Vec fma(const Chunk& w, const Chunk& v, Vec acc) {
    return _mm512_fmadd_ps(w.odd, v.odd, _mm512_fmadd_ps(w.even, v.even, acc));
  }
  FUSEDRNN_AVX512 static void totals(const Vec (&acc)[16], Out* out) {
    _mm512_storeu_ps(out, float_totals(acc));
  }
};

// Dot products of rows [0, rows) (rows <= kRows) of w with kVectors
// vectors. Rows past `rows` repeat the last one (cached, and not stored),
// so that the loops keep their constant trip counts. The rows are read
// kStream at a time, each group over the whole depth: fewer concurrent
// streams than 16 rows at once keep the hardware prefetchers ahead (at
// batch 1, H = 256 to 1024, one thread: 4 rows at a time read 10-40%
// faster than 16 on the test machine).
template <class L, int kRows, int kVectors>
FUSEDRNN_AVX512_KERNEL void dots(int64_t rows, const typename L::T* w,
                                 int64_t ldw, const typename L::T* v,
                                 int64_t ldv, int64_t depth,
                                 typename L::Out* out, int64_t ldo) {
  using Vec = typename L::Vec;
  constexpr int kStream = kRows <= 5 ? kRows : 4;
  static_assert(kRows % kStream == 0);
  const typename L::T* row[kRows];
  for (int r = 0; r < kRows; ++r) {
    row[r] = w + std::min<int64_t>(r, rows - 1) * ldw;
  }
  Vec acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < kVectors; ++b) acc[r][b] = L::zero();
  }
  // (Unrolled, so that acc[][] has constant indices and stays in registers.)
#pragma GCC unroll 16
  for (int r0 = 0; r0 < kRows; r0 += kStream) {
    if (r0 >= rows) continue;
    int64_t k = 0;
    for (; k + L::kDepth <= depth; k += L::kDepth) {
      typename L::Chunk vec[kVectors];
      for (int b = 0; b < kVectors; ++b) vec[b] = L::load(v + b * ldv + k);
      for (int r = r0; r < r0 + kStream; ++r) {
        const typename L::Chunk w_chunk = L::load(row[r] + k);
        for (int b = 0; b < kVectors; ++b) {
          acc[r][b] = L::fma(w_chunk, vec[b], acc[r][b]);
        }
      }
    }
    if (k < depth) {
      const int64_t n = depth - k;
      typename L::Chunk vec[kVectors];
      for (int b = 0; b < kVectors; ++b) vec[b] = L::load(v + b * ldv + k, n);
      for (int r = r0; r < r0 + kStream; ++r) {
        const typename L::Chunk w_chunk = L::load(row[r] + k, n);
        for (int b = 0; b < kVectors; ++b) {
          acc[r][b] = L::fma(w_chunk, vec[b], acc[r][b]);
        }
      }
    }
  }
  // Every accumulator's lane sum at once (with zeros to make 16), in the
  // order vector by vector, row by row.
  Vec flat[16];
  for (int b = 0; b < kVectors; ++b) {
    for (int r = 0; r < kRows; ++r) flat[b * kRows + r] = acc[r][b];
  }
  for (int i = kRows * kVectors; i < 16; ++i) flat[i] = L::zero();
  typename L::Out sums[16];
  L::totals(flat, sums);
  for (int b = 0; b < kVectors; ++b) {
    for (int r = 0; r < kRows; ++r) {
      if (r < rows) out[b * ldo + r] = sums[b * kRows + r];
    }
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
