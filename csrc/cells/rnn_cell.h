// The Elman RNN cell's per-unit math (interface: cells/README.md):
//   h' = g(pre_x + pre_h + b_h),   g = tanh or relu.
#pragma once

#include "activations.h"

namespace fusedrnn {

enum class Nonlinearity { kTanh, kRelu };

template <Nonlinearity kNonlinearity>
struct RnnCell {
  static constexpr int kGates = 1;
  // h' itself: both derivatives are functions of the output.
  static constexpr int kSaved = 1;
  static constexpr bool kHasCellState = false;
  static constexpr bool kReadsPreviousHidden = false;
  static constexpr bool kSplitRecurrentGrad = false;
  // No row stage (row_stage.h): the math is per unit only.
  static constexpr bool kNormalized = false;
  static constexpr int kNorms = 0;
  static constexpr int kRowStats = 0;

  template <typename T>
  FUSEDRNN_HOST_DEVICE static void forward(const T* pre_x, const T* pre_h,
                                           const T* bias_h, int64_t /*stride*/,
                                           T /*h_prev*/, T /*c_prev*/,
                                           T* saved, T& h_new, T& /*c_new*/) {
    const T pre = pre_x[0] + pre_h[0] + bias_h[0];
    if constexpr (kNonlinearity == Nonlinearity::kTanh) {
      h_new = tanh_activation(pre);
    } else {
      // NaN fails the test and passes through, as in torch.relu.
      h_new = pre < T(0) ? T(0) : pre;
    }
    saved[0] = h_new;
  }

  template <typename T>
  FUSEDRNN_HOST_DEVICE static void backward(const T* saved, int64_t /*stride*/,
                                            T /*h_prev*/, T /*c_prev*/,
                                            T /*c_new*/, T dh, T /*dc*/,
                                            T* dpre_x, T* /*dpre_h*/,
                                            T& /*dh_prev*/, T& /*dc_prev*/) {
    const T h = saved[0];
    if constexpr (kNonlinearity == Nonlinearity::kTanh) {
      dpre_x[0] = dh * (T(1) - h * h);
    } else {
      // torch's threshold_backward: zero where h <= 0, so a NaN h passes
      // the gradient on.
      dpre_x[0] = h <= T(0) ? T(0) : dh;
    }
  }
};

using RnnTanhCell = RnnCell<Nonlinearity::kTanh>;
using RnnReluCell = RnnCell<Nonlinearity::kRelu>;

}  // namespace fusedrnn
