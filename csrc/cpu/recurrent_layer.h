// One recurrent layer in one direction on the CPU, for any cell: argument
// checks, buffers, the large multiplies outside the time loop, and the
// shared sequence driver inside. The ops (layer_ops.cpp) are thin wrappers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <optional>
#include <vector>

#include "../ops/layer_args.h"
#include "sequence_driver.h"
#include "whole_multiply.h"

namespace fusedrnn::cpu {

// Checks that the kernels take this input: a CPU tensor of float32 or
// float64 (the rest of the arguments: check_layer_inputs).
void check_cpu_input(const Tensor& input);
// A contiguous buffer the backward updates in place, starting from `grad`
// or 0. (Not *_like: those would copy the strides of `like`.)
Tensor state_gradient(const OptionalTensor& grad, const Tensor& like);

template <typename Cell>
LayerOutputs layer_forward(const LayerInputs& in, const OptionalTensor& b_ih,
                           const OptionalTensor& b_hh) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  check_cpu_input(in.input);
  const LayerShape shape = check_layer_inputs(in, G, Cell::kHasCellState);
  const int64_t rows = shape.layout.rows(), B = shape.layout.batch();
  const int64_t H = shape.hidden, P = shape.out_size;
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(),
              "fusedrnn: give both biases or neither");
  const auto options = in.input.options();
  const Tensor x = in.input.contiguous().view({rows, shape.input_size});
  Tensor bias_h = at::zeros({G * H}, options);
  // The input projection of every step in one multiply, with b_ih.
  Tensor gates;
  if (b_ih.has_value()) {
    check_same(*b_ih, in.input, "b_ih");
    check_same(*b_hh, in.input, "b_hh");
    check_shape(*b_ih, {G * H}, "b_ih");
    check_shape(*b_hh, {G * H}, "b_hh");
    gates = whole_multiply(x, in.w_ih.t(), *b_ih);
    bias_h.copy_(*b_hh);
  } else {
    gates = whole_multiply(x, in.w_ih.t());
  }
  LayerOutputs out;
  out.saved = S == G ? gates : at::empty({rows, S * H}, options);
  out.output = at::empty(shape.rows_of(P), options);
  out.h_n = at::empty({B, P}, options);
  if constexpr (Cell::kHasCellState) {
    out.cells = at::empty(shape.rows_of(H), options);
    out.c_n = at::empty({B, H}, options);
  }
  Tensor recurrent = at::empty({B, G * H}, options);
  Tensor unprojected = at::empty({in.w_hr ? B : 0, H}, options);
  const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
  const Tensor c0 = in.c0 ? in.c0->contiguous() : Tensor();
  const Tensor w_hr = in.w_hr ? in.w_hr->contiguous() : Tensor();

  AT_DISPATCH_FLOATING_TYPES(in.input.scalar_type(), "layer_forward", [&] {
    using T = scalar_t;
    const RightOperand<T> hh(w_hh.data_ptr<T>(), G * H, P, /*transpose=*/true,
                             rows, /*groups=*/G);
    std::optional<RightOperand<T>> hr;
    if (w_hr.defined()) hr.emplace(w_hr.data_ptr<T>(), P, H, true, rows);
    forward_sequence<Cell, T>(
        shape.layout, H, P, hh, hr ? &*hr : nullptr,
        {h0.data_ptr<T>(), data_or_null<T>(c0), bias_h.data_ptr<T>(),
         gates.data_ptr<T>(), out.saved.data_ptr<T>(),
         out.output.data_ptr<T>(), data_or_null<T>(out.cells),
         out.h_n.data_ptr<T>(), data_or_null<T>(out.c_n),
         recurrent.data_ptr<T>(), unprojected.data_ptr<T>()});
  });
  out.saved = out.saved.view(shape.rows_of(S * H));
  return out;
}

template <typename Cell>
LayerGradients layer_backward(const LayerInputs& in,
                              const OptionalTensor& grad_output,
                              const OptionalTensor& grad_h_n,
                              const OptionalTensor& grad_c_n,
                              const Tensor& output, const Tensor& saved,
                              const OptionalTensor& cells) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  check_cpu_input(in.input);
  const LayerShape shape = check_layer_inputs(in, G, Cell::kHasCellState);
  const int64_t rows = shape.layout.rows();
  const int64_t H = shape.hidden, P = shape.out_size;
  const bool projected = in.w_hr.has_value();
  check_same(output, in.input, "output");
  check_same(saved, in.input, "saved");
  check_shape(output, shape.rows_of(P), "output");
  check_shape(saved, shape.rows_of(S * H), "saved");
  if constexpr (Cell::kHasCellState) {
    TORCH_CHECK(cells.has_value(), "fusedrnn: cells are required");
    check_same(*cells, in.input, "cells");
    check_shape(*cells, shape.rows_of(H), "cells");
  }
  Tensor dy;
  if (grad_output.has_value()) {
    check_same(*grad_output, in.input, "grad_output");
    check_shape(*grad_output, shape.rows_of(P), "grad_output");
    dy = grad_output->contiguous();
  }
  const auto options = in.input.options();
  const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
  const Tensor w_hr = projected ? in.w_hr->contiguous() : Tensor();
  const Tensor saved_c = saved.contiguous(), output_c = output.contiguous();
  const Tensor c0 = in.c0 ? in.c0->contiguous() : Tensor();
  const Tensor cells_c = cells ? cells->contiguous() : Tensor();
  LayerGradients grads;
  grads.h0 = state_gradient(grad_h_n, in.h0);
  if constexpr (Cell::kHasCellState) grads.c0 = state_gradient(grad_c_n, *in.c0);
  Tensor dgates_x = at::empty({rows, G * H}, options);
  Tensor dgates_h =
      Cell::kSplitRecurrentGrad ? at::empty({rows, G * H}, options) : dgates_x;
  Tensor dprojected = at::empty({projected ? rows : 0, P}, options);
  Tensor dunprojected = at::empty({projected ? shape.layout.batch() : 0, H}, options);
  Tensor h_prev = at::empty({rows, P}, options);
  Tensor unprojected = at::empty({projected ? rows : 0, H}, options);

  AT_DISPATCH_FLOATING_TYPES(in.input.scalar_type(), "layer_backward", [&] {
    using T = scalar_t;
    const RightOperand<T> hh(w_hh.data_ptr<T>(), G * H, P, /*transpose=*/false,
                             rows);
    std::optional<RightOperand<T>> hr;
    if (projected) hr.emplace(w_hr.data_ptr<T>(), P, H, false, rows);
    backward_sequence<Cell, T>(
        shape.layout, H, P, hh, hr ? &*hr : nullptr,
        {h0.data_ptr<T>(), data_or_null<T>(c0), output_c.data_ptr<T>(),
         saved_c.data_ptr<T>(), data_or_null<T>(cells_c), data_or_null<T>(dy),
         grads.h0.data_ptr<T>(), data_or_null<T>(grads.c0),
         dgates_x.data_ptr<T>(), dgates_h.data_ptr<T>(),
         dprojected.data_ptr<T>(), dunprojected.data_ptr<T>()});
    gather_previous_outputs(shape.layout, P, output_c.data_ptr<T>(),
                            h0.data_ptr<T>(), h_prev.data_ptr<T>());
    if constexpr (Cell::kHasCellState) {
      if (projected) {
        recompute_unprojected<Cell, T>(rows, H, saved_c.data_ptr<T>(),
                                       cells_c.data_ptr<T>(),
                                       unprojected.data_ptr<T>());
      }
    }
  });

  // Everything that does not depend on the step order, as large multiplies.
  const Tensor x = in.input.contiguous().view({rows, shape.input_size});
  grads.input = whole_multiply(dgates_x, in.w_ih).view(in.input.sizes());
  grads.w_ih = whole_multiply(dgates_x.t(), x);
  grads.w_hh = whole_multiply(dgates_h.t(), h_prev);
  grads.b_ih = dgates_x.sum(0);
  grads.b_hh = Cell::kSplitRecurrentGrad ? dgates_h.sum(0) : grads.b_ih;
  if (projected) grads.w_hr = whole_multiply(dprojected.t(), unprojected);
  return grads;
}

}  // namespace fusedrnn::cpu
