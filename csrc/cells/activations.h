// Activation functions shared by the CPU and CUDA kernels.
//
// Every function here is a host-device inline function so that one source
// of truth serves both back ends: the CPU tests exercise the exact math the
// GPU runs.
//
// The CPU's exponential is branch-free (range reduction to [-ln2/2, ln2/2],
// a Taylor polynomial, scaling by 2^n through the exponent bits) so that a
// loop over hidden units vectorises; std::exp and std::tanh are scalar
// library calls that would dominate the step time. float uses terms to r^6
// (a few ulp, far inside the 1e-5 parity tolerance); double, the precision
// mode checked to 1e-10, terms to r^13 (within 2 ulp of libm). The GPU
// keeps its own exp and tanh.
//
// Non-finite values behave as torch's sigmoid and tanh: NaN in gives NaN
// out, and at +-inf (or once e^x overflows) they saturate to exactly 0, 1
// and +-1, so that a saturated gate times an infinite state gives the NaN
// torch.nn gives. The clamps are selects that let NaN through, not
// branches: the unit loops still vectorise.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FUSEDRNN_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define FUSEDRNN_HOST_DEVICE inline __attribute__((always_inline))
#else
#define FUSEDRNN_HOST_DEVICE inline
#endif

namespace fusedrnn {

#if !defined(__CUDA_ARCH__)
// What the CPU's exponential needs to know of each type.
template <typename T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
  using Bits = uint32_t;
  static constexpr int kMantissaBits = 23, kBias = 127;
  static constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  static constexpr Bits kRoundBits = 0x4B400000u;
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2High = 0.693359375f, kLn2Low = -2.12194440e-4f;
  // 2^(n-1) is a normal float from here up to ln(FLT_MAX).
  static constexpr float kLowest = -86.5f, kHighest = 88.72283935546875f;
  // |r| <= ln2/2 truncates the series after r^6 at ~1e-7.
  static constexpr int kDegree = 6;
};

template <>
struct ExpConstants<double> {
  using Bits = uint64_t;
  static constexpr int kMantissaBits = 52, kBias = 1023;
  static constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr Bits kRoundBits = 0x4338000000000000ull;
  static constexpr double kLog2e = 1.4426950408889634;
  static constexpr double kLn2High = 6.93147180369123816490e-01,
                          kLn2Low = 1.90821492927058770002e-10;
  // 2^(n-1) is a normal double from here up to ln(DBL_MAX).
  static constexpr double kLowest = -708.0, kHighest = 709.782712893384;
  // |r| <= ln2/2 truncates the series after r^13 below 1e-17: the
  // roundings of the evaluation decide the error.
  static constexpr int kDegree = 13;
};

// 1/k! for k = 0..N in T, the Taylor coefficients of e^r.
template <typename T, int N>
struct InverseFactorials {
  T value[N + 1] = {};
  constexpr InverseFactorials() {
    double factorial = 1.0;
    for (int k = 0; k <= N; ++k) {
      factorial *= k > 0 ? k : 1;
      value[k] = T(1.0 / factorial);
    }
  }
};

// x = n ln2 + r with |r| <= ln2/2, split into q = e^r - 1 (its Taylor
// series to r^kDegree) and 2^(n-1), so that e^x - 1 = 2^n q + (2^n - 1)
// and e^x = 2^n q + 2^n. Without the constant 1 in q, e^x - 1 keeps its
// relative precision near 0 (n = 0 gives q itself), which double's tanh
// needs; 2^n as 2 * 2^(n-1) stays finite for x up to ln of the type's
// largest value. x must be NaN or within [kLowest, kHighest]: the callers
// clamp.
template <typename T>
struct ExpParts {
  T q;           // e^r - 1
  T half_scale;  // 2^(n-1)
};

template <typename T>
FUSEDRNN_HOST_DEVICE ExpParts<T> exp_parts(T x) {
  using C = ExpConstants<T>;
  using Bits = typename C::Bits;
  constexpr InverseFactorials<T, C::kDegree> kInverse;
  // n = round(x / ln2) by the add-and-subtract trick (round to nearest even
  // in the default rounding mode); it vectorises where nearbyint may not.
  const T shifted = x * C::kLog2e + C::kRound;
  const T n = shifted - C::kRound;
  // r = x - n ln2 with ln2 in two parts: the first has zeros in its low
  // bits, so that n times it is exact.
  const T r = (x - n * C::kLn2High) - n * C::kLn2Low;
  T p = kInverse.value[C::kDegree];
  for (int k = C::kDegree - 1; k >= 2; --k) p = p * r + kInverse.value[k];
  const T q = r + (r * r) * p;
  // 2^(n-1) through the exponent bits. `shifted` is kRound + n, whose ulp
  // is 1, so its bits are kRound's plus n: n is read from them rather than
  // converted from floating point, which for NaN would be undefined
  // (unsigned arithmetic: a NaN x yields some finite scale, and q is NaN
  // anyway).
  Bits shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const Bits bits = (shifted_bits - C::kRoundBits + Bits(C::kBias - 1))
                    << C::kMantissaBits;
  T half_scale;
  std::memcpy(&half_scale, &bits, sizeof(half_scale));
  return {q, half_scale};
}

// e^x on the CPU. Each clamp is written so that NaN fails its test and
// passes through (`x > lo ? x : lo` would turn NaN into lo); they stay
// vector selects.
template <typename T>
FUSEDRNN_HOST_DEVICE T cpu_exp(T x) {
  using C = ExpConstants<T>;
  T xc = x < C::kLowest ? C::kLowest : x;
  xc = xc > C::kHighest ? C::kHighest : xc;
  const ExpParts<T> e = exp_parts(xc);
  const T y = T(2) * (e.half_scale * e.q + e.half_scale);
  // Past ln(MAX) e^x overflows to +inf, as std::exp's does: so that
  // sigmoid(x) is exactly 0 there and at -inf, as torch's is (its
  // 1 / (1 + exp(-x)) divides by inf). Below kLowest y stays e^kLowest, not
  // the true (denormal or zero) e^x: the activations only add e^x to 1,
  // where both round away.
  return x > C::kHighest ? T(INFINITY) : y;
}
#endif

FUSEDRNN_HOST_DEVICE float exp_activation(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return cpu_exp(x);
#endif
}

FUSEDRNN_HOST_DEVICE double exp_activation(double x) {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  return cpu_exp(x);
#endif
}

template <typename T>
FUSEDRNN_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + exp_activation(-x));
}

FUSEDRNN_HOST_DEVICE float tanh_activation(float x) {
  // tanh(|x|) = 1 - 2 / (1 + e^{2|x|}) with x's sign: absolute error ~1e-7,
  // and exactly +-1 from |x| ~ 9.01 on, where torch's tanh rounds to +-1
  // too. (Evaluated at negative x directly, 1 + e^{2x} would round to 1,
  // and the result to -1, from x < -8.32 on: a zero derivative 1 - g^2 that
  // torch does not have.) Below 2^-12, tanh(x) rounds to x itself, which
  // the formula would cancel to 0 for tiny x; so x is returned there, which
  // also keeps -0 and denormals. NaN fails that test and comes out of the
  // formula as NaN.
  const float ax = fabsf(x);
  const float t = copysignf(1.0f - 2.0f / (1.0f + exp_activation(2.0f * ax)), x);
  return ax < 2.44140625e-4f ? x : t;
}

FUSEDRNN_HOST_DEVICE double tanh_activation(double x) {
#if defined(__CUDA_ARCH__)
  return tanh(x);
#else
  // tanh(|x|) = m / (m + 2) with m = e^{2|x|} - 1, x's sign: no
  // cancellation anywhere, and exactly 1 from |x| ~ 19.1 on (clamped at 22,
  // m ~ 1.3e19, so that inf gives 1, not inf / inf). Below 2^-27, tanh(x)
  // rounds to x itself, returned as it is (keeping -0 and denormals). NaN
  // fails both tests and comes out of the formula as NaN.
  const double ax = fabs(x);
  const double y = ax > 22.0 ? 44.0 : 2.0 * ax;
  const ExpParts<double> e = exp_parts(y);
  const double scale = 2.0 * e.half_scale;
  const double m = scale * e.q + (scale - 1.0);
  const double t = copysign(m / (m + 2.0), x);
  return ax < 7.450580596923828125e-9 ? x : t;
#endif
}

}  // namespace fusedrnn
