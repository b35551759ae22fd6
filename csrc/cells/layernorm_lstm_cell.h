// The layer-normalized LSTM cell (interface: cells/README.md, row stage:
// row_stage.h), fusedrnn.reference.layernorm_lstm_cell's math:
//   pre = LN_ih(W_ih x + b_ih) + LN_hh(W_hh h + b_hh)   (each over the 4H row)
//   i, f, o = sigmoid, g = tanh (gate order i, f, g, o)
//   c' = f * c + i * g                                  (carried, not normalized)
//   h' = o * tanh(LN_c(c'))                             (LN_c over the H units)
// The layer function normalizes the input side of every row before the
// loop (LN_ih, into the saved values); the step's row stage does the rest.
#pragma once

#include "activations.h"
#include "row_stage.h"

namespace fusedrnn {

struct LayerNormLstmCell {
  static constexpr int kGates = 4;
  // Per unit, saved for the backward: i, f, g, o; the normalized c'
  // (c_hat); the normalized recurrent pre-activations (4H); the normalized
  // input ones (4H). Then, per row, the rstd of each normalization.
  static constexpr int kSaved = 13;
  static constexpr int kRowStats = 3;
  static constexpr int kCellNormAt = 4;       // c_hat: unit block 4
  static constexpr int kRecurrentNormAt = 5;  // xhat_hh: blocks 5..8
  static constexpr int kInputNormAt = 9;      // xhat_ih: blocks 9..12
  static constexpr int kNorms = 3;            // LN_ih, LN_hh, LN_c
  static constexpr bool kNormalized = true;
  static constexpr bool kHasCellState = true;
  static constexpr bool kReadsPreviousHidden = false;
  // b_hh sits inside LN_hh: it gets the gradient before LN_hh, b_ih the one
  // before LN_ih; the two sides share the gradient after their norms.
  static constexpr bool kSplitRecurrentGrad = true;
  static constexpr bool kSharedNormGrad = true;

  // h before any projection, from a row's saved values.
  template <typename Acc>
  FUSEDRNN_HOST_DEVICE static Acc hidden_unit(const Acc* saved, int64_t H,
                                              const NormParams<Acc>& p,
                                              int64_t j) {
    const Acc o = saved[3 * H + j];
    const Acc c_hat = saved[kCellNormAt * H + j];
    return o * tanh_activation(c_hat * p.gain(kNormCell)[j] +
                               p.bias(kNormCell)[j]);
  }

  // One row of one step. `recurrent` is the row's h W_hh^T (without b_hh),
  // `saved` the row's saved values, whose input side (xhat_ih, rstd_ih) the
  // layer function has filled.
  template <class Row, typename T, typename Acc>
  FUSEDRNN_HOST_DEVICE static void forward_row(
      const Row& row, int64_t H, const Acc* recurrent, const Acc* bias_h,
      const NormParams<Acc>& p, const T* /*h_prev*/, const Acc* c_prev,
      Acc* saved, T* h_out, Acc* c_out) {
    const int64_t W = kGates * H;
    Acc* xh = saved + kRecurrentNormAt * H;
    const Acc* xi = saved + kInputNormAt * H;
    Acc* stats = saved + kSaved * H;
    const Acc rstd_h = normalize<Acc>(
        row, W, p.eps, [&](int64_t k) FUSEDRNN_ROW_LAMBDA { return recurrent[k] + bias_h[k]; },
        xh);
    stats[kNormRecurrent] = rstd_h;
    const Acc* gi = p.gain(kNormInput);
    const Acc* bi = p.bias(kNormInput);
    const Acc* gh = p.gain(kNormRecurrent);
    const Acc* bh = p.bias(kNormRecurrent);
    row.units(H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
      auto pre = [&](int gate) FUSEDRNN_ROW_LAMBDA {
        const int64_t k = gate * H + j;
        return xi[k] * gi[k] + bi[k] + xh[k] * gh[k] + bh[k];
      };
      const Acc i = sigmoid(pre(0));
      const Acc f = sigmoid(pre(1));
      const Acc g = tanh_activation(pre(2));
      const Acc o = sigmoid(pre(3));
      c_out[j] = f * c_prev[j] + i * g;
      saved[j] = i;
      saved[H + j] = f;
      saved[2 * H + j] = g;
      saved[3 * H + j] = o;
    });
    Acc* c_hat = saved + kCellNormAt * H;
    stats[kNormCell] = normalize<Acc>(
        row, H, p.eps, [&](int64_t j) FUSEDRNN_ROW_LAMBDA { return c_out[j]; }, c_hat);
    row.units(H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
      h_out[j] = static_cast<T>(hidden_unit(saved, H, p, j));
    });
  }

  // The row's derivative. On entry dh (+ dy when not null) is the gradient
  // at h', dc the one at c'; on exit dc is the gradient at c. Writes the
  // gradient after the norms (shared by both sides) to dnorm_x, the one
  // after LN_c to dnorm_c (the norms' gains and biases take their gradients
  // from these after the loop) and the recurrent side's gradient before
  // LN_hh to dgates_h.
  template <class Row, typename T, typename Acc>
  FUSEDRNN_HOST_DEVICE static void backward_row(
      const Row& row, int64_t H, const Acc* saved, const NormParams<Acc>& p,
      const T* /*h_prev*/, const Acc* c_prev, const Acc* /*c_new*/,
      Acc* dh, const T* dy, Acc* dc, Acc* dnorm_x, Acc* /*dnorm_h*/,
      Acc* dnorm_c, T* dgates_h) {
    const Acc* stats = saved + kSaved * H;
    const Acc* c_hat = saved + kCellNormAt * H;
    const Acc* gc = p.gain(kNormCell);
    const Acc* bc = p.bias(kNormCell);
    row.units(H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
      const Acc dh_total =
          dy != nullptr ? dh[j] + static_cast<Acc>(dy[j]) : dh[j];
      const Acc o = saved[3 * H + j];
      const Acc t = tanh_activation(c_hat[j] * gc[j] + bc[j]);
      dnorm_c[j] = dh_total * o * (Acc(1) - t * t);
      dnorm_x[3 * H + j] = dh_total * t * o * (Acc(1) - o);
    });
    normalize_backward<Acc>(
        row, H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA { return dnorm_c[j]; }, gc, c_hat,
        stats[kNormCell], [&](int64_t j, Acc v) FUSEDRNN_ROW_LAMBDA {
          const Acc dc_total = dc[j] + v;
          const Acc i = saved[j];
          const Acc f = saved[H + j];
          const Acc g = saved[2 * H + j];
          dnorm_x[j] = dc_total * g * i * (Acc(1) - i);
          dnorm_x[H + j] = dc_total * c_prev[j] * f * (Acc(1) - f);
          dnorm_x[2 * H + j] = dc_total * i * (Acc(1) - g * g);
          dc[j] = dc_total * f;
        });
    normalize_backward<Acc>(
        row, kGates * H, [&](int64_t k) FUSEDRNN_ROW_LAMBDA { return dnorm_x[k]; },
        p.gain(kNormRecurrent), saved + kRecurrentNormAt * H,
        stats[kNormRecurrent],
        [&](int64_t k, Acc v) FUSEDRNN_ROW_LAMBDA { dgates_h[k] = static_cast<T>(v); });
  }
};

}  // namespace fusedrnn
