// The row passes of the normalized cells (cells with a row stage,
// cells/row_stage.h: kNormalized), run by an executor's `for_each_row`:
// op(row, r) for each row r, with a row context `row` (SerialRow on the
// CPU, a thread block on CUDA). The layer function (recurrent_layer.h) runs
//   before the loop   InputNormForward: LN_ih of every row at once (after
//                     the input projection, which is one multiply)
//   each step         the recurrent multiply, then NormalizedForwardStep:
//                     the cell's row stage (LN_hh, the unit math, LN_c)
//   backward, each    NormalizedBackwardStep: the cell's row derivative,
//   step              through LN_c and LN_hh (h's gradient needs them)
//   after the loop    InputNormBackward: through LN_ih, every row at once;
//                     the norms' gain and bias gradients are column sums
//                     (deterministic) of the gradients after each norm,
//                     times the saved normalized values for the gains
// Every functor compiles for every cell (an empty body for cells without a
// row stage), so the CUDA kernels instantiate over the whole cell list.
// Shared by the CPU and CUDA executors, so it includes no ATen header.
#pragma once

#include <cstdint>

#include "../cells/row_stage.h"
#include "step.h"

namespace fusedrnn {

// A row of a cell's saved values: its per-unit values (kSaved per unit),
// then its per-row statistics (kRowStats).
template <class Cell>
FUSEDRNN_HOST_DEVICE constexpr int64_t saved_width(int64_t H) {
  return Cell::kSaved * H + Cell::kRowStats;
}

// LN_ih of every row: the normalized input projections (`gates`, with b_ih)
// into the saved values, and each row's rstd.
template <class Cell, typename T>
struct InputNormForward {
  using Acc = compute_t<T>;
  int64_t hidden;
  const Acc* gates;  // (rows, G*H)
  Acc* saved;        // (rows, saved_width)
  NormParams<Acc> norms;

  template <class Row>
  FUSEDRNN_HOST_DEVICE void operator()(const Row& row, int64_t r) const {
    if constexpr (Cell::kNormalized) {
      const int64_t H = hidden, W = Cell::kGates * H;
      const Acc* g = gates + r * W;
      Acc* s = saved + r * saved_width<Cell>(H);
      const Acc rstd = normalize<Acc>(
          row, W, norms.eps, [&](int64_t k) FUSEDRNN_ROW_LAMBDA { return g[k]; },
          s + Cell::kInputNormAt * H);
      s[Cell::kSaved * H + kNormInput] = rstd;
    }
  }
};

// Through LN_ih: from the gradient after it (`dnorm_x`) to the one at the
// input projection (`dgates_x`, storage type), every row at once.
template <class Cell, typename T>
struct InputNormBackward {
  using Acc = compute_t<T>;
  int64_t hidden;
  const Acc* dnorm_x;  // (rows, G*H)
  const Acc* saved;    // (rows, saved_width)
  NormParams<Acc> norms;
  T* dgates_x;  // (rows, G*H)

  template <class Row>
  FUSEDRNN_HOST_DEVICE void operator()(const Row& row, int64_t r) const {
    if constexpr (Cell::kNormalized) {
      const int64_t H = hidden, W = Cell::kGates * H;
      const Acc* d = dnorm_x + r * W;
      const Acc* s = saved + r * saved_width<Cell>(H);
      T* out = dgates_x + r * W;
      normalize_backward<Acc>(
          row, W, [&](int64_t k) FUSEDRNN_ROW_LAMBDA { return d[k]; }, norms.gain(kNormInput),
          s + Cell::kInputNormAt * H, s[Cell::kSaved * H + kNormInput],
          [&](int64_t k, Acc v) FUSEDRNN_ROW_LAMBDA { out[k] = static_cast<T>(v); });
    }
  }
};

// One forward step's row stage, row b of the step (after the recurrent
// multiply into step.recurrent).
template <class Cell, typename T>
struct NormalizedForwardStep {
  using Acc = compute_t<T>;
  ForwardStep<T> step;
  NormParams<Acc> norms;

  template <class Row>
  FUSEDRNN_HOST_DEVICE void operator()(const Row& row, int64_t b) const {
    if constexpr (Cell::kNormalized) {
      const int64_t H = step.hidden, P = step.out_size;
      const StepRows<T>& rows = step.rows;
      const T* h_prev = previous_hidden<Cell>(rows, b, P);
      const Acc* c_prev = previous_cells<Cell>(rows, b, H);
      Acc* c_out = Cell::kHasCellState ? step.cells + b * H : nullptr;
      Cell::forward_row(row, H, step.recurrent + b * Cell::kGates * H,
                        step.bias_h, norms, h_prev, c_prev,
                        step.saved + b * saved_width<Cell>(H),
                        step.hidden_out + b * H, c_out);
    }
  }
};

// One backward step's row derivative, row b of the step. `dnorm_*` are the
// step's rows of the layer's gradients after each norm (dnorm_h ==
// dnorm_x for cells with kSharedNormGrad; dnorm_c null without LN_c).
template <class Cell, typename T>
struct NormalizedBackwardStep {
  using Acc = compute_t<T>;
  BackwardStep<T> step;
  NormParams<Acc> norms;
  Acc* dnorm_x;  // (live, G*H)
  Acc* dnorm_h;  // (live, G*H)
  Acc* dnorm_c;  // (live, H) or null

  template <class Row>
  FUSEDRNN_HOST_DEVICE void operator()(const Row& row, int64_t b) const {
    if constexpr (Cell::kNormalized) {
      const int64_t H = step.hidden, P = step.out_size, W = Cell::kGates * H;
      const StepRows<T>& rows = step.rows;
      const T* h_prev = previous_hidden<Cell>(rows, b, P);
      const Acc* c_prev = previous_cells<Cell>(rows, b, H);
      const Acc* c_new = nullptr;
      Acc* dc = nullptr;
      Acc* dn_c = nullptr;
      if constexpr (Cell::kHasCellState) {
        c_new = step.cells + b * H;
        dc = step.dc + b * H;
        dn_c = dnorm_c + b * H;
      }
      Cell::backward_row(row, H, step.saved + b * saved_width<Cell>(H), norms,
                         h_prev, c_prev, c_new, step.dh + b * H,
                         step.dy != nullptr ? step.dy + b * H : nullptr, dc,
                         dnorm_x + b * W, dnorm_h + b * W, dn_c,
                         step.dgates_h + b * W);
    }
  }
};

// The h before the projection of every row (cells with a cell state),
// recomputed from the saved values: the projection's input, for W_hr's
// gradient.
template <class Cell, typename T>
struct NormalizedHidden {
  using Acc = compute_t<T>;
  int64_t hidden;
  const Acc* saved;
  NormParams<Acc> norms;
  T* out;  // (rows, H)

  template <class Row>
  FUSEDRNN_HOST_DEVICE void operator()(const Row& row, int64_t r) const {
    if constexpr (Cell::kNormalized && Cell::kHasCellState) {
      const int64_t H = hidden;
      const Acc* s = saved + r * saved_width<Cell>(H);
      T* o = out + r * H;
      row.units(H, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
        o[j] = static_cast<T>(Cell::hidden_unit(s, H, norms, j));
      });
    }
  }
};

}  // namespace fusedrnn
