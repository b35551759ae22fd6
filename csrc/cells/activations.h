// Activation functions shared by the CPU and CUDA kernels.
//
// Every function here is a host-device inline function so that one source
// of truth serves both back ends: the CPU tests exercise the exact math the
// GPU runs.
//
// The CPU's exponentials are branch-free (range reduction to
// [-ln2/2, ln2/2], a polynomial, scaling by 2^n through the exponent bits)
// so that a loop over hidden units vectorises; std::exp and std::tanh are
// scalar library calls that would dominate the step time. float uses a
// degree-6 polynomial (a few ulp, far inside the 1e-5 parity tolerance);
// double, the precision mode checked to 1e-10, a degree-13 one (truncation
// below 1e-17, so the result is as close as the roundings of the
// evaluation allow: a few ulp). The GPU keeps its own exp and tanh.
//
// Non-finite values behave as torch's sigmoid and tanh: NaN in gives NaN
// out, and at +-inf (or once e^x overflows) they saturate to exactly 0, 1
// and +-1, so that a saturated gate times an infinite state gives the NaN
// torch.nn gives. The float clamps are selects that let NaN through, not
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

FUSEDRNN_HOST_DEVICE float exp_activation(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  // Clamp so that 2^n stays a normal float: exp(88.3) ~ 2e38, exp(-87.3) ~
  // 1e-38. Each test is written so that NaN fails it and passes through
  // (`x > lo ? x : lo` would turn NaN into lo); they stay vector selects.
  float xc = x < -87.3f ? -87.3f : x;
  xc = xc > 88.3f ? 88.3f : xc;
  // n = round(x / ln2) by the add-and-subtract trick (round to nearest even
  // in the default rounding mode); it vectorises where nearbyint may not.
  const float kRound = 12582912.0f;  // 1.5 * 2^23
  const float shifted = xc * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  // r = x - n ln2 with ln2 split in two so that the product is exact.
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  // Taylor series of e^r; |r| <= 0.35 makes the degree-6 truncation ~1e-7.
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n through the exponent bits. `shifted` is kRound + n, a float whose
  // ulp is 1, so its bits are kRound's plus n: n is read from them rather
  // than converted from float, which for NaN would be undefined (unsigned
  // arithmetic: a NaN x yields some finite scale, and p is NaN anyway).
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const uint32_t bits = (shifted_bits - 0x4B400000u + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float y = p * scale;
  // Past ln(FLT_MAX) e^x overflows to +inf, as std::exp's does: so that
  // sigmoid(x) is exactly 0 below -88.72 and at -inf, as torch's is (its
  // 1 / (1 + exp(-x)) divides by inf there). Below the low clamp y stays
  // e^-87.3, not the true (denormal or zero) e^x: the activations only add
  // e^x to 1, where both round away.
  return x > 88.72283935546875f ? INFINITY : y;
#endif
}

#if !defined(__CUDA_ARCH__)
// e^x - 1 and e^x for double, on the CPU: x = n ln2 + r with |r| <=
// ln2/2, q = e^r - 1 by its Taylor series to r^13 (the next term is below
// 1e-17), then e^x - 1 = 2^n q + (2^n - 1) and e^x = 2^n q + 2^n. Without
// the constant 1 in q, e^x - 1 keeps its relative precision near 0 (n = 0
// gives q itself), which tanh needs. 2^n comes as 2 * 2^(n-1), so that x
// may be NaN or anywhere in [-708, 709.79] (n up to 1024); the callers
// clamp.
struct ExpParts {
  double q;           // e^r - 1
  double half_scale;  // 2^(n-1)
};

FUSEDRNN_HOST_DEVICE ExpParts exp_parts(double x) {
  // n = round(x / ln2) by the add-and-subtract trick, as for float.
  const double kRound = 6755399441055744.0;  // 1.5 * 2^52
  const double shifted = x * 1.4426950408889634 + kRound;
  const double n = shifted - kRound;
  // ln2 in two parts: the first has zeros in its low bits, so n times it
  // is exact for |n| < 2^11.
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  const double q = r + (r * r) * p;
  // 2^n from the low bits of `shifted` (its ulp is 1), as for float.
  uint64_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const uint64_t bits = (shifted_bits - 0x4338000000000000ull + 1022u) << 52;
  double half_scale;
  std::memcpy(&half_scale, &bits, sizeof(half_scale));
  return {q, half_scale};
}
#endif

FUSEDRNN_HOST_DEVICE double exp_activation(double x) {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  // The clamps let NaN through (see the float version).
  double xc = x < -708.0 ? -708.0 : x;
  xc = xc > 709.782712893384 ? 709.782712893384 : xc;
  const ExpParts e = exp_parts(xc);
  const double y = 2.0 * (e.half_scale * e.q + e.half_scale);
  // e^x overflows past ln(DBL_MAX), to +inf as std::exp's does; below
  // -708, y stays e^-708, which the activations only add to 1.
  return x > 709.782712893384 ? INFINITY : y;
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
  const ExpParts e = exp_parts(y);
  const double scale = 2.0 * e.half_scale;
  const double m = scale * e.q + (scale - 1.0);
  const double t = copysign(m / (m + 2.0), x);
  return ax < 7.450580596923828125e-9 ? x : t;
#endif
}

}  // namespace fusedrnn
