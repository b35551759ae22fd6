// Activation functions shared by the CPU and CUDA kernels.
//
// Every function here is a host-device inline function so that one source
// of truth serves both back ends: the CPU tests exercise the exact math the
// GPU runs.
//
// float uses a branch-free exponential (range reduction to [-ln2/2, ln2/2],
// a degree-6 polynomial, scaling by 2^n through the exponent bits) so that a
// loop over hidden units vectorises on the CPU; std::exp is a scalar library
// call that would dominate the step time. Its relative error is a few ulp,
// far inside the 1e-5 parity tolerance. double keeps the libm functions: it
// is the precision mode and is checked to 1e-10.
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

FUSEDRNN_HOST_DEVICE double exp_activation(double x) { return exp(x); }

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

FUSEDRNN_HOST_DEVICE double tanh_activation(double x) { return tanh(x); }

}  // namespace fusedrnn
