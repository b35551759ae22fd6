// The GRU cell's per-unit math (interface: cells/README.md).
//
// Gate order along the 3H axis is (r, z, n), as in torch.nn and cuDNN:
//   r, z = sigmoid(pre_x + pre_h + b_h)
//   n = tanh(pre_x_n + r * (pre_h_n + b_hn))     (b_hn inside the product)
//   h' = (1 - z) * n + z * h
#pragma once

#include "activations.h"

namespace fusedrnn {

struct GruCell {
  static constexpr int kGates = 3;
  // r, z, n and the recurrent part of n (pre_h_n + b_hn), which r scales
  // and the gradient of r needs.
  static constexpr int kSaved = 4;
  static constexpr bool kHasCellState = false;
  static constexpr bool kReadsPreviousHidden = true;
  // r multiplies only the recurrent part of n, so the two projections of n
  // get different gradients.
  static constexpr bool kSplitRecurrentGrad = true;
  // No row stage (row_stage.h): the math is per unit only.
  static constexpr bool kNormalized = false;
  static constexpr int kNorms = 0;
  static constexpr int kRowStats = 0;

  template <typename T>
  FUSEDRNN_HOST_DEVICE static void forward(const T* pre_x, const T* pre_h,
                                           const T* bias_h, int64_t stride,
                                           T h_prev, T /*c_prev*/, T* saved,
                                           T& h_new, T& /*c_new*/) {
    const T r = sigmoid(pre_x[0] + pre_h[0] + bias_h[0]);
    const T z = sigmoid(pre_x[stride] + pre_h[stride] + bias_h[stride]);
    const T recurrent_n = pre_h[2 * stride] + bias_h[2 * stride];
    const T n = tanh_activation(pre_x[2 * stride] + r * recurrent_n);
    h_new = (T(1) - z) * n + z * h_prev;
    saved[0] = r;
    saved[stride] = z;
    saved[2 * stride] = n;
    saved[3 * stride] = recurrent_n;
  }

  // Writes the gradients of the input-side pre-activations to `dpre_x`, of
  // the recurrent ones to `dpre_h`, and h's own share of the gradient at the
  // previous h (through z * h) to `dh_prev`.
  template <typename T>
  FUSEDRNN_HOST_DEVICE static void backward(const T* saved, int64_t stride,
                                            T h_prev, T /*c_prev*/,
                                            T /*c_new*/, T dh, T /*dc*/,
                                            T* dpre_x, T* dpre_h, T& dh_prev,
                                            T& /*dc_prev*/) {
    const T r = saved[0];
    const T z = saved[stride];
    const T n = saved[2 * stride];
    const T recurrent_n = saved[3 * stride];
    const T dn_pre = dh * (T(1) - z) * (T(1) - n * n);
    const T dz_pre = dh * (h_prev - n) * z * (T(1) - z);
    const T dr_pre = dn_pre * recurrent_n * r * (T(1) - r);
    dpre_x[0] = dr_pre;
    dpre_x[stride] = dz_pre;
    dpre_x[2 * stride] = dn_pre;
    dpre_h[0] = dr_pre;
    dpre_h[stride] = dz_pre;
    dpre_h[2 * stride] = dn_pre * r;
    dh_prev = dh * z;
  }
};

}  // namespace fusedrnn
