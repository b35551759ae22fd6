// The LSTM cell's per-unit math, forward and backward, for the CPU and CUDA
// sequence drivers.
//
// Gate order along the 4H axis is (i, f, g, o), as in torch.nn and cuDNN:
//   i, f, o = sigmoid(pre), g = tanh(pre)
//   c' = f * c + i * g,   h' = o * tanh(c')
// The driver hands each function one hidden unit: `pre_x` and `pre_h` point
// at the unit's first gate in the input and recurrent projections (biases
// included), and consecutive gates are `stride` (= H) elements apart.
#pragma once

#include "activations.h"

namespace fusedrnn {

struct LstmCell {
  static constexpr int kGates = 4;
  // The cell carries a second state (c) besides the output h.
  static constexpr bool kHasCellState = true;

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

  // Forward for one unit. Writes the activated gates to `saved` (what the
  // backward needs) and returns the new cell and hidden values.
  template <typename T>
  FUSEDRNN_HOST_DEVICE static void forward(const T* pre_x, const T* pre_h,
                                           int64_t stride, T c_prev, T* saved,
                                           T& c_new, T& h_new) {
    const T i = sigmoid(pre_x[0] + pre_h[0]);
    const T f = sigmoid(pre_x[stride] + pre_h[stride]);
    const T g = tanh_activation(pre_x[2 * stride] + pre_h[2 * stride]);
    const T o = sigmoid(pre_x[3 * stride] + pre_h[3 * stride]);
    c_new = f * c_prev + i * g;
    h_new = hidden(o, c_new);
    saved[0] = i;
    saved[stride] = f;
    saved[2 * stride] = g;
    saved[3 * stride] = o;
  }

  // Backward for one unit. `dh` is the total gradient reaching h' (from the
  // layer output and the next step), `dc` the gradient reaching c' from the
  // next step. Writes the gradients of the four pre-activations to `dpre`
  // (the same for the input and recurrent parts in an LSTM) and returns the
  // gradient flowing to c.
  template <typename T>
  FUSEDRNN_HOST_DEVICE static void backward(const T* saved, int64_t stride,
                                            T c_prev, T c_new, T dh, T dc,
                                            T* dpre, T& dc_prev) {
    const T i = saved[0];
    const T f = saved[stride];
    const T g = saved[2 * stride];
    const T o = saved[3 * stride];
    const T tanh_c = tanh_activation(c_new);
    const T dc_total = dc + dh * o * (T(1) - tanh_c * tanh_c);
    dpre[0] = dc_total * g * i * (T(1) - i);
    dpre[stride] = dc_total * c_prev * f * (T(1) - f);
    dpre[2 * stride] = dc_total * i * (T(1) - g * g);
    dpre[3 * stride] = dh * tanh_c * o * (T(1) - o);
    dc_prev = dc_total * f;
  }
};

}  // namespace fusedrnn
