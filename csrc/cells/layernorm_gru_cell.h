// The layer-normalized GRU cell (interface: cells/README.md, row stage:
// row_stage.h), fusedrnn.reference.layernorm_gru_cell's math:
//   gx = LN_ih(W_ih x + b_ih), gh = LN_hh(W_hh h + b_hh)   (each over the 3H row)
//   r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z)
//   n = tanh(gx_n + r * gh_n),  h' = (1 - z) * n + z * h
// The layer function normalizes the input side of every row before the
// loop (LN_ih, into the saved values); the step's row stage does the rest.
#pragma once

#include "activations.h"
#include "row_stage.h"

namespace fusedrnn {

struct LayerNormGruCell {
  static constexpr int kGates = 3;
  // Per unit: r, z, n; the normalized recurrent pre-activations (3H); the
  // normalized input ones (3H). Per row: rstd of LN_ih and LN_hh.
  static constexpr int kSaved = 9;
  static constexpr int kRowStats = 2;
  static constexpr int kRecurrentNormAt = 3;  // xhat_hh: blocks 3..5
  static constexpr int kInputNormAt = 6;      // xhat_ih: blocks 6..8
  static constexpr int kCellNormAt = -1;      // none
  static constexpr int kNorms = 2;            // LN_ih, LN_hh
  static constexpr bool kNormalized = true;
  static constexpr bool kHasCellState = false;
  static constexpr bool kReadsPreviousHidden = true;
  static constexpr bool kSplitRecurrentGrad = true;
  // r scales gh_n only: the two sides' gradients after their norms differ.
  static constexpr bool kSharedNormGrad = false;

  template <class Row, typename T, typename Acc>
  FUSEDRNN_HOST_DEVICE static void forward_row(
      const Row& row, int64_t H, const Acc* recurrent, const Acc* bias_h,
      const NormParams<Acc>& p, const T* h_prev, const Acc* /*c_prev*/,
      Acc* saved, T* h_out, Acc* /*c_out*/) {
    Acc* xh = saved + kRecurrentNormAt * H;
    const Acc* xi = saved + kInputNormAt * H;
    Acc* stats = saved + kSaved * H;
    stats[kNormRecurrent] = normalize<Acc>(
        row, kGates * H, p.eps,
        [&](int64_t k) FUSEDRNN_ROW_LAMBDA { return recurrent[k] + bias_h[k]; }, xh);
    const Acc* gi = p.gain(kNormInput);
    const Acc* bi = p.bias(kNormInput);
    const Acc* gh = p.gain(kNormRecurrent);
    const Acc* bh = p.bias(kNormRecurrent);
    row.units(H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
      auto x_side = [&](int gate) FUSEDRNN_ROW_LAMBDA {
        const int64_t k = gate * H + j;
        return xi[k] * gi[k] + bi[k];
      };
      auto h_side = [&](int gate) FUSEDRNN_ROW_LAMBDA {
        const int64_t k = gate * H + j;
        return xh[k] * gh[k] + bh[k];
      };
      const Acc r = sigmoid(x_side(0) + h_side(0));
      const Acc z = sigmoid(x_side(1) + h_side(1));
      const Acc n = tanh_activation(x_side(2) + r * h_side(2));
      h_out[j] = static_cast<T>((Acc(1) - z) * n +
                                z * static_cast<Acc>(h_prev[j]));
      saved[j] = r;
      saved[H + j] = z;
      saved[2 * H + j] = n;
    });
  }

  // On entry dh (+ dy when not null) is the gradient at h'; on exit h's own
  // share of the gradient at the previous h (z * dh'). Writes the gradients
  // after LN_ih to dnorm_x, after LN_hh to dnorm_h, and before LN_hh to
  // dgates_h.
  template <class Row, typename T, typename Acc>
  FUSEDRNN_HOST_DEVICE static void backward_row(
      const Row& row, int64_t H, const Acc* saved, const NormParams<Acc>& p,
      const T* h_prev, const Acc* /*c_prev*/, const Acc* /*c_new*/, Acc* dh,
      const T* dy, Acc* /*dc*/, Acc* dnorm_x, Acc* dnorm_h,
      Acc* /*dnorm_c*/, T* dgates_h) {
    const Acc* xh = saved + kRecurrentNormAt * H;
    const Acc* gh = p.gain(kNormRecurrent);
    const Acc* bh = p.bias(kNormRecurrent);
    row.units(H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
      const Acc dh_total =
          dy != nullptr ? dh[j] + static_cast<Acc>(dy[j]) : dh[j];
      const Acc r = saved[j];
      const Acc z = saved[H + j];
      const Acc n = saved[2 * H + j];
      const Acc gh_n = xh[2 * H + j] * gh[2 * H + j] + bh[2 * H + j];
      const Acc dn = dh_total * (Acc(1) - z) * (Acc(1) - n * n);
      const Acc dz = dh_total * (static_cast<Acc>(h_prev[j]) - n) * z *
                     (Acc(1) - z);
      const Acc dr = dn * gh_n * r * (Acc(1) - r);
      dnorm_x[j] = dr;
      dnorm_x[H + j] = dz;
      dnorm_x[2 * H + j] = dn;
      dnorm_h[j] = dr;
      dnorm_h[H + j] = dz;
      dnorm_h[2 * H + j] = dn * r;
      dh[j] = dh_total * z;
    });
    normalize_backward<Acc>(
        row, kGates * H, [&](int64_t k) FUSEDRNN_ROW_LAMBDA { return dnorm_h[k]; }, gh, xh,
        saved[kSaved * H + kNormRecurrent],
        [&](int64_t k, Acc v) FUSEDRNN_ROW_LAMBDA { dgates_h[k] = static_cast<T>(v); });
  }
};

}  // namespace fusedrnn
