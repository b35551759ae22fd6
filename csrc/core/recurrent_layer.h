// One recurrent layer in one direction, for any cell and any back end:
// argument checks, buffers, the input projection of all steps, the time
// loop's bookkeeping, and the weight and bias gradients after the loop.
// What differs between back ends is an executor (below); what differs
// between cells is the cell's math header (cells/README.md).
//
// Dtypes (storage_types.h): the input, weights, outputs, h, every gradient
// and the gate gradients between the loop and the weight-gradient
// multiplies are in the storage type T; the cell math, the cell state, the
// per-step values the backward reads back (`saved`, `cells`) and the state
// gradients are in the compute type Acc = compute_t<T>. For 16-bit input
// the forward returns `saved` and `cells` in float32 and the backward
// expects them so.
//
// An executor is a class template Executor<T> over the storage type with
//   static constexpr bool kServes;            whether it runs T at all
//   static constexpr const char* kDeviceName; "CPU", "CUDA"
//   static constexpr bool kRowScratch;        whether backward_step wants
//                                             BackwardStep::scratch
//   static constexpr bool kTeamLoops;         whether it has the members
//                                             marked (team) below
//   static void check_input(const Tensor&);   device, what this machine runs
//   Executor(const Tensor& input, const LayerShape&);  per call: device
//                                             guard, stream, library handles
//   Tensor empty(sizes, options);             the layer's buffers
//   Tensor input_projection(input, w_ih, b_ih);
//                                             input W_ih^T + b_ih, compute
//                                             type, (rows, G*H) in time-major
//                                             order, for the input as given:
//                                             dense (T, B, I) of any strides
//                                             or packed
//   Tensor input_rows(input);                 the input as a row-major
//                                             (rows, I) matrix in time-major
//                                             order: a view or a copy
//   Tensor product(a, b);                     a b, storage type (gradients)
//   Weight weight(w, transpose, groups);      op(W) prepared for the steps
//   forward_step<Cell>(ForwardStep, w_hh);    recurrent multiply + cell math
//   backward_step<Cell>(BackwardStep);        the cell's derivative
//   multiply(m, a, lda, w, beta, c, ldc);     c (compute type) = a op(W) + beta c
//   project(m, a, lda, w, c, ldc, scratch);   c (storage type) = a op(W)
//   add_output_gradient(n, dh, dy, out);      out = dh + dy (dy may be null)
//   copy(dst, src, n);                        stream-ordered where it matters
//   recompute_hidden<Cell>(rows, H, saved, cells, out)
//   for_each_unit(rows, width, op);           op(b, j) over every unit: the
//                                             passes of regularization.h
//   for_each_row(rows, width, op);            op(row, r) over rows, with a row
//                                             context (cells/row_stage.h): the
//                                             passes of normalization.h
//   static constexpr bool kCellSteps;         whether it has single_step
//   single_step<Cell>(LayerInputs, LayerOutputs&)
//                                             a one-step dense input of a
//                                             plain cell, no projection or
//                                             regularization, all outputs,
//                                             where the executor has a
//                                             kernel for it; returns whether
//                                             it ran
//   single_step_backward<Cell>(LayerInputs, grad_output, grad_h_n,
//       grad_c_n, saved, cells, input_grad, state_grad, LayerGradients&)
//                                             the backward of such a step,
//                                             all gradients but those not
//                                             wanted; returns whether
//                                             it ran
//   (team) runs_team_loops();                 whether it runs this call's
//                                             time loops itself, for a plain
//                                             cell without regularization
//   (team) team_forward<Cell>(layout, H, weight(W_hh^T), ForwardBuffers)
//                                             the whole loop
//   (team) team_backward<Cell>(layout, H, weight(W_hh), BackwardBuffers)
// A step never allocates, synchronises or dispatches an ATen op.
//
// Recurrent dropout and zoneout (regularization.h) are passes between the
// executor's steps: recurrent dropout writes the masked previous h that the
// step's multiply reads (ForwardStep::h_multiplied), zoneout blends each
// step's new state with the previous one after it. With zoneout of c the
// cell states the layer returns (`cells`) are the cell's own c', which its
// backward needs, and the zoned c that the next step reads is kept apart
// (`zoned_cells`, recomputed by the backward).
//
// Cells with a row stage (kNormalized: layer norm, cells/row_stage.h) run
// the same loop with row passes (normalization.h) in place of the
// executor's fused steps: LN_ih of all rows after the input projection;
// per step the recurrent multiply (exec.multiply), then the cell's row
// stage; backward per step the cell's row derivative, then the same
// multiply as the other cells; after the loop the pass back through LN_ih
// and the norms' gain and bias gradients as column sums. Their saved rows
// hold kSaved values per unit then kRowStats per row (saved_width); their
// layer-norm parameters come packed in one compute-type array (NormParams).
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "dispatch.h"
#include "layer_args.h"
#include "layer_buffers.h"
#include "normalization.h"
#include "regularization.h"
#include "sequence_layout.h"
#include "step.h"

namespace fusedrnn {

// A step's rows of a mask over the layer's rows, or null.
inline const bool* step_mask(const bool* mask, int64_t row0, int64_t width) {
  return mask != nullptr ? mask + row0 * width : nullptr;
}

// Zoneout of c at the step processed s-th: the cell's c' of the step's
// rows (`cells`) blended with the previous zoned c into `zoned_cells`.
template <class Exec, typename T>
void zone_cells(const Exec& exec, const SequenceLayout& layout, int64_t s,
                int64_t H, const StepRows<T>& rows,
                const Regularization<T>& reg, const compute_t<T>* cells,
                compute_t<T>* zoned_cells) {
  using Acc = compute_t<T>;
  const int64_t row0 = layout.offset(layout.step(s));
  exec.for_each_unit(
      rows.live, H,
      ZoneoutForward<Acc, Acc>{rows.continuing, H, rows.c_previous_step,
                               rows.c0,
                               step_mask(reg.cell_zoneout_keep, row0, H),
                               reg.cell_zoneout, cells + row0 * H,
                               zoned_cells + row0 * H});
}

// Sequences whose last step was the one processed s-th hand over their
// final state: h from the outputs, c from `state_cells` (the c each step
// reads back), when the cell has one.
template <class Exec, typename T>
void hand_over_final_states(const Exec& exec, const SequenceLayout& layout,
                            int64_t s, int64_t H, int64_t P,
                            const ForwardBuffers<T>& buf,
                            const compute_t<T>* state_cells) {
  const int64_t row0 = layout.offset(layout.step(s));
  const int64_t live = layout.live(layout.step(s)), ending = layout.live_after(s);
  exec.copy(buf.h_n + ending * P, buf.output + (row0 + ending) * P,
            (live - ending) * P);
  if (state_cells != nullptr) {
    exec.copy(buf.c_n + ending * H, state_cells + (row0 + ending) * H,
              (live - ending) * H);
  }
}

// The forward time loop on the executor's team (its team loops), where it
// takes this call; returns whether it did.
template <class Cell, class Exec, typename T>
bool team_forward(const Exec& exec, const SequenceLayout& layout, int64_t H,
                  const typename Exec::Weight& w_hh,
                  const Regularization<T>& reg,
                  const ForwardBuffers<T>& buf) {
  if constexpr (Exec::kTeamLoops && !Cell::kNormalized) {
    if (exec.runs_team_loops() && !reg.any()) {
      exec.template team_forward<Cell>(layout, H, w_hh, buf);
      for (int64_t s = 0; s < layout.steps(); ++s) {
        hand_over_final_states(exec, layout, s, H, H, buf, buf.cells);
      }
      return true;
    }
  }
  return false;
}

// The same for the backward time loop; `w_hh` is op(W_hh) = W_hh.
template <class Cell, class Exec, typename T>
bool team_backward(const Exec& exec, const SequenceLayout& layout, int64_t H,
                   const typename Exec::Weight& w_hh,
                   const Regularization<T>& reg,
                   const BackwardBuffers<T>& buf) {
  if constexpr (Exec::kTeamLoops && !Cell::kNormalized) {
    if (exec.runs_team_loops() && !reg.any()) {
      exec.template team_backward<Cell>(layout, H, w_hh, buf);
      return true;
    }
  }
  return false;
}

// Forward time loop. `w_hh` is op(W_hh) = W_hh^T (P -> G*H) in G blocks
// (one per gate); `w_hr`, when not null, is W_hr^T (H -> P).
template <class Cell, class Exec, typename T>
void forward_sequence(const Exec& exec, const SequenceLayout& layout,
                      int64_t H, int64_t P, const typename Exec::Weight& w_hh,
                      const typename Exec::Weight* w_hr,
                      const Regularization<T>& reg,
                      const ForwardBuffers<T>& buf) {
  using Acc = compute_t<T>;
  constexpr int64_t G = Cell::kGates;
  const int64_t SW = saved_width<Cell>(H);
  // The c each step reads back: the zoned one with zoneout of c.
  Acc* state_cells = buf.zoned_cells != nullptr ? buf.zoned_cells : buf.cells;
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t row0 = layout.offset(layout.step(s));
    const StepRows<T> rows =
        step_rows(layout, s, H, P, buf.output, buf.h0, state_cells, buf.c0);
    const int64_t live = rows.live;
    T* output_t = buf.output + row0 * P;
    Acc* cells_t = buf.cells != nullptr ? buf.cells + row0 * H : nullptr;
    const T* h_multiplied = nullptr;
    if (reg.recurrent_keep != nullptr) {
      exec.for_each_unit(
          live, P,
          RecurrentDropoutForward<T>{rows.continuing, P, rows.h_previous_step,
                                     rows.h0, reg.recurrent_keep,
                                     reg.recurrent_scale, buf.h_dropped});
      h_multiplied = buf.h_dropped;
    }
    const ForwardStep<T> step{rows, H, P, buf.gates + row0 * G * H,
                              buf.saved + row0 * SW, buf.recurrent, buf.bias_h,
                              w_hr != nullptr ? buf.unprojected : output_t,
                              cells_t, h_multiplied};
    if constexpr (Cell::kNormalized) {
      // The recurrent multiply of the step's rows, then the row stage.
      if (h_multiplied != nullptr) {
        exec.multiply(live, h_multiplied, P, w_hh, Acc(0), buf.recurrent,
                      G * H);
      } else {
        exec.multiply(rows.continuing, rows.h_previous_step, P, w_hh, Acc(0),
                      buf.recurrent, G * H);
        exec.multiply(live - rows.continuing, rows.h0 + rows.continuing * P, P,
                      w_hh, Acc(0), buf.recurrent + rows.continuing * G * H,
                      G * H);
      }
      exec.for_each_row(live, SW,
                        NormalizedForwardStep<Cell, T>{step, buf.norms});
    } else {
      exec.template forward_step<Cell>(step, w_hh);
    }
    if (w_hr != nullptr) {
      exec.project(live, buf.unprojected, H, *w_hr, output_t, P, buf.recurrent);
    }
    if (reg.zones_hidden()) {
      exec.for_each_unit(
          live, P,
          ZoneoutForward<T, Acc>{rows.continuing, P, rows.h_previous_step,
                                 rows.h0, step_mask(reg.zoneout_keep, row0, P),
                                 reg.zoneout, output_t, output_t});
    }
    if (buf.zoned_cells != nullptr) {
      zone_cells(exec, layout, s, H, rows, reg, buf.cells, buf.zoned_cells);
    }
    hand_over_final_states(exec, layout, s, H, P, buf, state_cells);
  }
}

// Backward time loop, steps in the reverse of processing order. `w_hh` is
// op(W_hh) = W_hh (G*H -> P); `w_hr`, when not null, is W_hr (P -> H).
template <class Cell, class Exec, typename T>
void backward_sequence(const Exec& exec, const SequenceLayout& layout,
                       int64_t H, int64_t P, const typename Exec::Weight& w_hh,
                       const typename Exec::Weight* w_hr,
                       const Regularization<T>& reg,
                       const BackwardBuffers<T>& buf) {
  using Acc = compute_t<T>;
  constexpr int64_t G = Cell::kGates;
  const int64_t SW = saved_width<Cell>(H);
  const bool zoned_c = buf.zoned_cells != nullptr;
  for (int64_t s = layout.steps() - 1; s >= 0; --s) {
    const int64_t row0 = layout.offset(layout.step(s));
    const StepRows<T> rows = step_rows(
        layout, s, H, P, buf.output, buf.h0,
        zoned_c ? buf.zoned_cells : buf.cells, buf.c0);
    const int64_t live = rows.live;
    const T* dy = buf.output_grad == nullptr ? nullptr
                                             : buf.output_grad + row0 * P;
    // Zoneout: the gradient at the zoned state splits into the cell's share
    // and the previous state's, which is added back after the step.
    if (reg.zones_hidden()) {
      exec.for_each_unit(
          live, P,
          ZoneoutBackward<T, Acc>{P, step_mask(reg.zoneout_keep, row0, P),
                                  reg.zoneout, dy, buf.dh, buf.carry_h});
      dy = nullptr;
    }
    if (zoned_c) {
      exec.for_each_unit(
          live, H,
          ZoneoutBackward<Acc, Acc>{H,
                                    step_mask(reg.cell_zoneout_keep, row0, H),
                                    reg.cell_zoneout, nullptr, buf.dc,
                                    buf.carry_c});
    }
    Acc* dh = buf.dh;
    if (w_hr != nullptr) {
      // The gradient at the projected output, kept for W_hr's gradient,
      // then carried back through W_hr to the unprojected h.
      T* dprojected = buf.dprojected + row0 * P;
      exec.add_output_gradient(live * P, buf.dh, dy, dprojected);
      exec.multiply(live, dprojected, P, *w_hr, Acc(0), buf.dunprojected, H);
      dh = buf.dunprojected;
      dy = nullptr;
    }
    T* dgates_h = buf.dgates_h + row0 * G * H;
    const BackwardStep<T> step{
        rows, H, P, buf.saved + row0 * SW,
        buf.cells != nullptr ? buf.cells + row0 * H : nullptr, dy, dh, buf.dc,
        buf.dgates_x + row0 * G * H, dgates_h, buf.scratch};
    if constexpr (Cell::kNormalized) {
      exec.for_each_row(
          live, SW,
          NormalizedBackwardStep<Cell, T>{
              step, buf.norms, buf.dnorm_x + row0 * G * H,
              buf.dnorm_h + row0 * G * H,
              buf.dnorm_c != nullptr ? buf.dnorm_c + row0 * H : nullptr});
    } else {
      exec.template backward_step<Cell>(step);
    }
    // The gradient at the previous h of the live rows through W_hh, added
    // to h's own share where the cell has one. Rows that started from the
    // initial state keep theirs: it is the gradient at h0, and skipped
    // where h0 needs none.
    const int64_t carried = buf.h0_grad ? live : rows.continuing;
    const Acc beta = Cell::kReadsPreviousHidden ? Acc(1) : Acc(0);
    if (reg.recurrent_keep != nullptr) {
      exec.multiply(carried, dgates_h, G * H, w_hh, Acc(0), buf.recurrent_grad,
                    P);
      exec.for_each_unit(
          carried, P,
          AddGradient<Acc>{P, buf.recurrent_grad, reg.recurrent_keep,
                           reg.recurrent_scale, Cell::kReadsPreviousHidden,
                           buf.dh});
    } else {
      exec.multiply(carried, dgates_h, G * H, w_hh, beta, buf.dh, P);
    }
    if (reg.zones_hidden()) {
      exec.for_each_unit(live, P, AddGradient<Acc>{P, buf.carry_h, nullptr,
                                                   Acc(1), true, buf.dh});
    }
    if (zoned_c) {
      exec.for_each_unit(live, H, AddGradient<Acc>{H, buf.carry_c, nullptr,
                                                   Acc(1), true, buf.dc});
    }
  }
}

// The h each step's recurrent multiply read, as a (rows, P) matrix: the
// previous step's output, or h0 for rows that started there. W_hh's
// gradient is then one multiply over all steps. Copies that extend the
// pending one (after its end, or before its start in reverse) are merged
// into it, so dense input takes two copies however many steps it has.
template <class Exec, typename T>
void gather_previous_outputs(const Exec& exec, const SequenceLayout& layout,
                             int64_t P, const T* output, const T* h0,
                             T* h_prev) {
  T* pending_dst = h_prev;
  const T* pending_src = nullptr;
  int64_t pending = 0;
  auto copy = [&](T* dst, const T* src, int64_t n) {
    if (n == 0) return;
    if (pending > 0 && dst == pending_dst + pending &&
        src == pending_src + pending) {
      pending += n;
      return;
    }
    if (pending > 0 && dst + n == pending_dst && src + n == pending_src) {
      pending_dst = dst;
      pending_src = src;
      pending += n;
      return;
    }
    exec.copy(pending_dst, pending_src, pending);
    pending_dst = dst;
    pending_src = src;
    pending = n;
  };
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t continuing = layout.continuing(s);
    T* dst = h_prev + layout.offset(t) * P;
    if (continuing > 0) {
      copy(dst, output + layout.offset(layout.step(s - 1)) * P,
           continuing * P);
    }
    copy(dst + continuing * P, h0 + continuing * P, (live - continuing) * P);
  }
  exec.copy(pending_dst, pending_src, pending);
}

// The pointers of a layer call's regularization inputs (checked by
// check_layer_inputs: bool, contiguous, the right shapes).
template <typename T>
Regularization<T> regularization_of(const RegularizationInputs& in) {
  using Acc = compute_t<T>;
  auto data = [](const OptionalTensor& mask) -> const bool* {
    return mask.has_value() ? mask->data_ptr<bool>() : nullptr;
  };
  Regularization<T> reg;
  reg.recurrent_keep = data(in.recurrent_keep);
  reg.recurrent_scale = static_cast<Acc>(1.0 / (1.0 - in.recurrent_dropout));
  reg.zoneout_keep = data(in.zoneout_keep);
  reg.zoneout = static_cast<Acc>(in.zoneout);
  reg.cell_zoneout_keep = data(in.cell_zoneout_keep);
  reg.cell_zoneout = static_cast<Acc>(in.cell_zoneout);
  return reg;
}

// The layer norms' gains and biases (LayerInputs::norms, checked) as one
// contiguous compute-type array, in NormParams' order; undefined for cells
// without a row stage.
template <class Cell>
Tensor packed_norms(const LayerInputs& in, const at::TensorOptions& acc) {
  if constexpr (!Cell::kNormalized) {
    return Tensor();
  } else {
    return in.norms->to(acc).contiguous();
  }
}

template <typename Acc>
NormParams<Acc> norm_params(const Tensor& packed, int64_t width,
                            int64_t hidden, double eps) {
  return {data_or_null<Acc>(packed), width, hidden, static_cast<Acc>(eps)};
}

// One dense step without projection or regularization: what an executor's
// single_step and single_step_backward may take.
template <typename T>
bool is_single_step(const LayerInputs& in, const LayerShape& shape) {
  return shape.layout.steps() == 1 && !shape.packed && !in.w_hr &&
         !regularization_of<T>(in.regularization).any();
}

template <template <class> class Executor, class Cell>
LayerOutputs layer_forward(const LayerInputs& in) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  return dispatch_storage_type<Executor>(in.input, [&]<typename T>() {
    using Acc = compute_t<T>;
    const LayerShape shape = check_layer_inputs(in, G, Cell::kHasCellState);
    check_norms(in, shape, Cell::kNorms);
    const Executor<T> exec(in.input, shape);
    if constexpr (Executor<T>::kCellSteps && !Cell::kNormalized) {
      LayerOutputs step;
      if (is_single_step<T>(in, shape) &&
          exec.template single_step<Cell>(in, step)) {
        return step;
      }
    }
    const int64_t rows = shape.layout.rows(), B = shape.layout.batch();
    const int64_t H = shape.hidden, P = shape.out_size;
    const int64_t SW = saved_width<Cell>(H);
    const auto options = in.input.options();
    const auto acc_options = compute_options(in.input);
    const bool projected = in.w_hr.has_value();
    // The input projection of every step, with b_ih, from the input as
    // given: batch-first input comes as a strided time-major view, which
    // the executor reads in place where it can.
    const Tensor gates = exec.input_projection(in.input, in.w_ih, in.b_ih);
    Tensor bias_h = at::zeros({G * H}, acc_options);
    if (in.b_hh.has_value()) bias_h.copy_(*in.b_hh);
    const Tensor norm_data = packed_norms<Cell>(in, acc_options);
    const NormParams<Acc> norms = norm_params<Acc>(norm_data, G * H, H, in.eps);
    LayerOutputs out;
    out.saved = S == G && !Cell::kNormalized
                    ? gates
                    : exec.empty({rows, SW}, acc_options);
    if constexpr (Cell::kNormalized) {
      // LN_ih of every row at once, into the saved values.
      exec.for_each_row(rows, SW,
                        InputNormForward<Cell, T>{H, gates.data_ptr<Acc>(),
                                                  out.saved.data_ptr<Acc>(),
                                                  norms});
    }
    out.output = exec.empty(shape.rows_of(P), options);
    out.h_n = exec.empty({B, P}, options);
    Tensor c_n = exec.empty(Cell::kHasCellState ? std::vector<int64_t>{B, H}
                                                : std::vector<int64_t>{0},
                            acc_options);
    out.cells = exec.empty(
        Cell::kHasCellState ? shape.rows_of(H) : std::vector<int64_t>{0},
        acc_options);
    Tensor recurrent = exec.empty({B, G * H}, acc_options);
    Tensor unprojected = exec.empty({projected ? B : 0, H}, options);
    const Regularization<T> reg = regularization_of<T>(in.regularization);
    const bool zoned_c = Cell::kHasCellState && reg.zones_cells();
    Tensor zoned_cells = exec.empty({zoned_c ? rows : 0, H}, acc_options);
    Tensor h_dropped =
        exec.empty({reg.recurrent_keep != nullptr ? B : 0, P}, options);
    const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
    const Tensor c0 = in.c0 ? in.c0->to(acc_options).contiguous() : Tensor();
    const Tensor w_hr = projected ? in.w_hr->contiguous() : Tensor();

    const ForwardBuffers<T> buffers{
        h0.data_ptr<T>(), data_or_null<Acc>(c0), bias_h.data_ptr<Acc>(),
        gates.data_ptr<Acc>(), out.saved.data_ptr<Acc>(),
        out.output.data_ptr<T>(),
        Cell::kHasCellState ? out.cells.data_ptr<Acc>() : nullptr,
        out.h_n.data_ptr<T>(),
        Cell::kHasCellState ? c_n.data_ptr<Acc>() : nullptr,
        recurrent.data_ptr<Acc>(), data_or_null<T>(unprojected),
        zoned_c ? zoned_cells.data_ptr<Acc>() : nullptr,
        data_or_null<T>(h_dropped), norms};
    const auto hh = exec.weight(w_hh, /*transpose=*/true, /*groups=*/G);
    if (!team_forward<Cell>(exec, shape.layout, H, hh, reg, buffers)) {
      std::optional<typename Executor<T>::Weight> hr;
      if (projected) hr.emplace(exec.weight(w_hr, /*transpose=*/true, 1));
      forward_sequence<Cell>(exec, shape.layout, H, P, hh,
                             hr ? &*hr : nullptr, reg, buffers);
    }
    out.saved = out.saved.view(shape.rows_of(SW));
    out.c_n = c_n.to(options.dtype());
    return out;
  });
}

template <template <class> class Executor, class Cell>
LayerGradients layer_backward(const LayerInputs& in,
                              const OptionalTensor& grad_output,
                              const OptionalTensor& grad_h_n,
                              const OptionalTensor& grad_c_n,
                              const Tensor& output, const Tensor& saved,
                              const OptionalTensor& cells, bool input_grad,
                              bool state_grad) {
  constexpr int64_t G = Cell::kGates;
  return dispatch_storage_type<Executor>(in.input, [&]<typename T>() {
    using Acc = compute_t<T>;
    const LayerShape shape = check_layer_inputs(in, G, Cell::kHasCellState);
    check_norms(in, shape, Cell::kNorms);
    const int64_t rows = shape.layout.rows(), B = shape.layout.batch();
    const int64_t H = shape.hidden, P = shape.out_size;
    const int64_t SW = saved_width<Cell>(H);
    const bool projected = in.w_hr.has_value();
    check_same(output, in.input, "output");
    check_saved(saved, in.input, "saved");
    check_shape(output, shape.rows_of(P), "output");
    check_shape(saved, shape.rows_of(SW), "saved");
    if constexpr (Cell::kHasCellState) {
      TORCH_CHECK(cells.has_value(), "fusedrnn: cells are required");
      check_saved(*cells, in.input, "cells");
      check_shape(*cells, shape.rows_of(H), "cells");
    }
    if (grad_output.has_value()) {
      check_same(*grad_output, in.input, "grad_output");
      check_shape(*grad_output, shape.rows_of(P), "grad_output");
    }
    const Executor<T> exec(in.input, shape);
    if constexpr (Executor<T>::kCellSteps && !Cell::kNormalized) {
      LayerGradients step;
      if (is_single_step<T>(in, shape) &&
          exec.template single_step_backward<Cell>(in, grad_output, grad_h_n,
                                                   grad_c_n, saved, cells,
                                                   input_grad, state_grad,
                                                   step)) {
        return step;
      }
    }
    const auto options = in.input.options();
    const auto acc_options = compute_options(in.input);
    const Tensor dy = grad_output ? grad_output->contiguous() : Tensor();
    const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
    const Tensor w_hr = projected ? in.w_hr->contiguous() : Tensor();
    const Tensor saved_c = saved.contiguous(), output_c = output.contiguous();
    const Tensor c0 = in.c0 ? in.c0->to(acc_options).contiguous() : Tensor();
    const Tensor cells_c = Cell::kHasCellState ? cells->contiguous() : Tensor();
    // The state gradients accumulate in the compute type.
    Tensor dh = state_gradient(grad_h_n, in.h0);
    Tensor dc =
        Cell::kHasCellState ? state_gradient(grad_c_n, *in.c0) : Tensor();
    Tensor dgates_x = exec.empty({rows, G * H}, options);
    Tensor dgates_h = Cell::kSplitRecurrentGrad
                          ? exec.empty({rows, G * H}, options)
                          : dgates_x;
    Tensor dprojected = exec.empty({projected ? rows : 0, P}, options);
    Tensor dunprojected = exec.empty({projected ? B : 0, H}, acc_options);
    Tensor scratch =
        exec.empty({Executor<T>::kRowScratch ? B : 0, 2 * G * H}, acc_options);
    Tensor h_prev = exec.empty({rows, P}, options);
    Tensor unprojected = exec.empty({projected ? rows : 0, H}, options);
    const Regularization<T> reg = regularization_of<T>(in.regularization);
    const bool zoned_c = Cell::kHasCellState && reg.zones_cells();
    const bool dropped = reg.recurrent_keep != nullptr;
    Tensor zoned_cells = exec.empty({zoned_c ? rows : 0, H}, acc_options);
    Tensor carry_h = exec.empty({reg.zones_hidden() ? B : 0, P}, acc_options);
    Tensor carry_c = exec.empty({zoned_c ? B : 0, H}, acc_options);
    Tensor recurrent_grad = exec.empty({dropped ? B : 0, P}, acc_options);
    // Normalized cells: the gradients after each norm, kept for the norms'
    // own gradients and (LN_ih's) for the pass back through LN_ih.
    const bool normalized = Cell::kNormalized;
    const Tensor norm_data = packed_norms<Cell>(in, acc_options);
    const NormParams<Acc> norms = norm_params<Acc>(norm_data, G * H, H, in.eps);
    Tensor dnorm_x = exec.empty({normalized ? rows : 0, G * H}, acc_options);
    Tensor dnorm_h = [&] {
      if constexpr (Cell::kNormalized) {
        if (!Cell::kSharedNormGrad) return exec.empty({rows, G * H}, acc_options);
      }
      return dnorm_x;
    }();
    Tensor dnorm_c = exec.empty(
        {normalized && Cell::kHasCellState ? rows : 0, H}, acc_options);
    if (zoned_c) {
      // The zoned c every step read back, from the cell's own c' and the
      // masks, in the forward's order.
      for (int64_t s = 0; s < shape.layout.steps(); ++s) {
        const StepRows<T> step = step_rows(
            shape.layout, s, H, P, output_c.data_ptr<T>(), h0.data_ptr<T>(),
            zoned_cells.data_ptr<Acc>(), data_or_null<Acc>(c0));
        zone_cells(exec, shape.layout, s, H, step, reg,
                   cells_c.data_ptr<Acc>(), zoned_cells.data_ptr<Acc>());
      }
    }

    const BackwardBuffers<T> buffers{
        h0.data_ptr<T>(), data_or_null<Acc>(c0), output_c.data_ptr<T>(),
        saved_c.data_ptr<Acc>(), data_or_null<Acc>(cells_c),
        data_or_null<T>(dy), dh.data_ptr<Acc>(), data_or_null<Acc>(dc),
        dgates_x.data_ptr<T>(), dgates_h.data_ptr<T>(),
        data_or_null<T>(dprojected), data_or_null<Acc>(dunprojected),
        data_or_null<Acc>(scratch),
        zoned_c ? zoned_cells.data_ptr<Acc>() : nullptr,
        data_or_null<Acc>(carry_h), data_or_null<Acc>(carry_c),
        data_or_null<Acc>(recurrent_grad), norms,
        data_or_null<Acc>(dnorm_x), data_or_null<Acc>(dnorm_h),
        data_or_null<Acc>(dnorm_c), state_grad};
    const auto hh = exec.weight(w_hh, /*transpose=*/false, 1);
    if (!team_backward<Cell>(exec, shape.layout, H, hh, reg, buffers)) {
      std::optional<typename Executor<T>::Weight> hr;
      if (projected) hr.emplace(exec.weight(w_hr, /*transpose=*/false, 1));
      backward_sequence<Cell>(exec, shape.layout, H, P, hh,
                              hr ? &*hr : nullptr, reg, buffers);
    }
    gather_previous_outputs(exec, shape.layout, P, output_c.data_ptr<T>(),
                            h0.data_ptr<T>(), h_prev.data_ptr<T>());
    if (dropped) {
      // W_hh multiplied the dropped h: so does its gradient.
      for (int64_t s = 0; s < shape.layout.steps(); ++s) {
        const int64_t t = shape.layout.step(s);
        exec.for_each_unit(
            shape.layout.live(t), P,
            RecurrentDropoutRows<T>{
                P, reg.recurrent_keep, reg.recurrent_scale,
                h_prev.data_ptr<T>() + shape.layout.offset(t) * P});
      }
    }
    if constexpr (Cell::kHasCellState) {
      if (projected) {
        if constexpr (Cell::kNormalized) {
          exec.for_each_row(
              rows, H,
              NormalizedHidden<Cell, T>{H, saved_c.data_ptr<Acc>(), norms,
                                        unprojected.data_ptr<T>()});
        } else {
          exec.template recompute_hidden<Cell>(
              rows, H, saved_c.data_ptr<Acc>(), cells_c.data_ptr<Acc>(),
              unprojected.data_ptr<T>());
        }
      }
    }
    LayerGradients grads;
    if constexpr (Cell::kNormalized) {
      // Each norm's gain gradient: the column sums of the gradient after it
      // times the normalized values it saved; its bias's: the column sums
      // of that gradient. Then the pass back through LN_ih, into dgates_x.
      // The products go through one of the executor's buffers (pooled on
      // the CPU: a fresh (rows, G*H) temporary per call would cost a page
      // fault per 4 KiB).
      const Tensor saved_rows = saved_c.view({rows, SW});
      Tensor product = exec.empty({rows, G * H}, acc_options);
      std::vector<Tensor> parts;
      auto add = [&](const Tensor& grad, int64_t at, int64_t width) {
        const Tensor normalized_values = saved_rows.narrow(1, at * H, width);
        Tensor p = product.narrow(1, 0, width);
        at::mul_out(p, grad, normalized_values);
        parts.push_back(p.sum(0));
        // Both sides share the gradient after their norms: one bias sum.
        const bool shared = &grad == &dnorm_h && Cell::kSharedNormGrad;
        parts.push_back(shared ? parts[1] : grad.sum(0));
      };
      add(dnorm_x, Cell::kInputNormAt, G * H);
      add(dnorm_h, Cell::kRecurrentNormAt, G * H);
      if constexpr (Cell::kNorms > 2) add(dnorm_c, Cell::kCellNormAt, H);
      grads.norms = at::cat(parts).to(options.dtype());
      exec.for_each_row(
          rows, SW,
          InputNormBackward<Cell, T>{H, dnorm_x.data_ptr<Acc>(),
                                     saved_c.data_ptr<Acc>(), norms,
                                     dgates_x.data_ptr<T>()});
    }

    // Everything that does not depend on the step order, as large
    // multiplies. The bias gradients are sums over rows: deterministic.
    grads.input = input_grad
                      ? exec.product(dgates_x, in.w_ih).view(in.input.sizes())
                      : at::empty({0}, options);
    grads.h0 = state_grad ? dh.to(options.dtype()) : at::empty({0}, options);
    grads.c0 = Cell::kHasCellState && state_grad ? dc.to(options.dtype())
                                                 : at::empty({0}, options);
    // dgates_x's rows are in time-major order: so must x's be. Batch-first
    // input is copied so: a product per sequence would read and write all
    // of W_ih's gradient once per sequence.
    grads.w_ih = exec.product(dgates_x.t(), exec.input_rows(in.input));
    grads.w_hh = exec.product(dgates_h.t(), h_prev);
    grads.b_ih = dgates_x.sum(0);
    grads.b_hh = Cell::kSplitRecurrentGrad ? dgates_h.sum(0)
                                           : at::empty({0}, options);
    grads.w_hr = projected ? exec.product(dprojected.t(), unprojected)
                           : at::empty({0}, options);
    if (!grads.norms.defined()) grads.norms = at::empty({0}, options);
    return grads;
  });
}

}  // namespace fusedrnn
