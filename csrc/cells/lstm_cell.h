// The LSTM cell's per-unit math, forward and backward, for the CPU and CUDA
// sequence drivers.
//
// Gate order along the 4H axis is (i, f, g, o), as in torch.nn and cuDNN:
//   i, f, o = sigmoid(pre), g = tanh(pre)
//   c' = f * c + i * g,   h' = o * tanh(c')
// Every cell has the interface described in cells/README.md: the driver
// hands it one hidden unit, with `pre_x` (input projection + b_ih),
// `pre_h` (recurrent projection) and `bias_h` (b_hh) pointing at the unit's
// first gate; consecutive gates are `stride` (= H) elements apart.
#pragma once

#include "activations.h"

namespace fusedrnn {

struct LstmCell {
  static constexpr int kGates = 4;
  // Saved per unit for the backward: the activated gates, in place of the
  // pre-activations.
  static constexpr int kSaved = 4;
  static constexpr bool kHasCellState = true;
  // The unit math reads neither h (only the multiply does) nor gives h a
  // gradient of its own, and both projections get the same gradient.
  static constexpr bool kReadsPreviousHidden = false;
  static constexpr bool kSplitRecurrentGrad = false;
  // No row stage (row_stage.h): the math is per unit only.
  static constexpr bool kNormalized = false;
  static constexpr int kNorms = 0;
  static constexpr int kRowStats = 0;

  // h before any projection: o * tanh(c). The backward recomputes it from
  // the saved o and c for the projection's weight gradient.
  template <typename T>
  FUSEDRNN_HOST_DEVICE static T hidden(T o, T c) {
    return o * tanh_activation(c);
  }
  template <typename T>
  FUSEDRNN_HOST_DEVICE static T hidden_from_saved(const T* saved,
                                                  int64_t stride, T c) {
    return hidden(saved[3 * stride], c);
  }

  template <typename T>
  FUSEDRNN_HOST_DEVICE static void forward(const T* pre_x, const T* pre_h,
                                           const T* bias_h, int64_t stride,
                                           T /*h_prev*/, T c_prev, T* saved,
                                           T& h_new, T& c_new) {
    auto pre = [&](int gate) {
      const int64_t k = gate * stride;
      return pre_x[k] + pre_h[k] + bias_h[k];
    };
    const T i = sigmoid(pre(0));
    const T f = sigmoid(pre(1));
    const T g = tanh_activation(pre(2));
    const T o = sigmoid(pre(3));
    c_new = f * c_prev + i * g;
    h_new = hidden(o, c_new);
    saved[0] = i;
    saved[stride] = f;
    saved[2 * stride] = g;
    saved[3 * stride] = o;
  }

  // `dh` is the total gradient reaching h' (layer output and next step),
  // `dc` the gradient reaching c' from the next step. Writes the gradients
  // of the pre-activations to `dpre_x` and the gradient at c to `dc_prev`.
  template <typename T>
  FUSEDRNN_HOST_DEVICE static void backward(const T* saved, int64_t stride,
                                            T /*h_prev*/, T c_prev, T c_new,
                                            T dh, T dc, T* dpre_x,
                                            T* /*dpre_h*/, T& /*dh_prev*/,
                                            T& dc_prev) {
    const T i = saved[0];
    const T f = saved[stride];
    const T g = saved[2 * stride];
    const T o = saved[3 * stride];
    const T tanh_c = tanh_activation(c_new);
    const T dc_total = dc + dh * o * (T(1) - tanh_c * tanh_c);
    dpre_x[0] = dc_total * g * i * (T(1) - i);
    dpre_x[stride] = dc_total * c_prev * f * (T(1) - f);
    dpre_x[2 * stride] = dc_total * i * (T(1) - g * g);
    dpre_x[3 * stride] = dh * tanh_c * o * (T(1) - o);
    dc_prev = dc_total * f;
  }
};

}  // namespace fusedrnn
