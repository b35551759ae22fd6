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
  // Clamp so that 2^n stays a normal float: exp(88.3) ~ 2e38, exp(-87.3) ~ 1e-38.
  x = x > -87.3f ? x : -87.3f;
  x = x < 88.3f ? x : 88.3f;
  // n = round(x / ln2) by the add-and-subtract trick (round to nearest even
  // in the default rounding mode); it vectorises where nearbyint may not.
  const float kRound = 12582912.0f;  // 1.5 * 2^23
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  // r = x - n ln2 with ln2 split in two so that the product is exact.
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  // Taylor series of e^r; |r| <= 0.35 makes the degree-6 truncation ~1e-7.
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
#endif
}

FUSEDRNN_HOST_DEVICE double exp_activation(double x) { return exp(x); }

template <typename T>
FUSEDRNN_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + exp_activation(-x));
}

FUSEDRNN_HOST_DEVICE float tanh_activation(float x) {
  // tanh(x) = 1 - 2 / (1 + e^{2x}): absolute error ~1e-7, saturates cleanly.
  return 1.0f - 2.0f / (1.0f + exp_activation(2.0f * x));
}

FUSEDRNN_HOST_DEVICE double tanh_activation(double x) { return tanh(x); }

}  // namespace fusedrnn
