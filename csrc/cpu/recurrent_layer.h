// One recurrent layer in one direction on the CPU, for any cell: argument
// checks, buffers, the large multiplies outside the time loop, and the
// shared sequence driver inside. The ops (layer_ops.cpp) are thin wrappers.
//
// Dtypes, as on CUDA: float32 and float64 are stored and computed in their
// own type. bfloat16 (on a CPU with AVX512_BF16) is stored in 16 bits
// (input, weights, output, h_n, c_n, every gradient, and the gate gradients
// between the loop and the weight-gradient multiplies) but computed in
// float32: the multiplies sum their bfloat16 products in float32, and the
// per-step values the backward reads back, `saved` and `cells`, stay in
// float32 (the forward returns them so and the backward expects them so).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <optional>
#include <vector>

#include "../ops/layer_args.h"
#include "buffer_pool.h"
#include "sequence_driver.h"
#include "whole_multiply.h"

namespace fusedrnn::cpu {

// Checks that the kernels take this input: a CPU tensor of float32,
// float64, or bfloat16 where the CPU has AVX512_BF16 (the rest of the
// arguments: check_layer_inputs).
void check_cpu_input(const Tensor& input);

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
  const auto acc_options = compute_options(in.input);
  const Tensor x = in.input.contiguous().view({rows, shape.input_size});
  Tensor bias_h = at::zeros({G * H}, acc_options);
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
  out.saved = S == G ? gates : pooled_empty({rows, S * H}, acc_options);
  out.output = pooled_empty(shape.rows_of(P), options);
  out.h_n = at::empty({B, P}, options);
  Tensor c_n;
  if constexpr (Cell::kHasCellState) {
    out.cells = pooled_empty(shape.rows_of(H), acc_options);
    c_n = at::empty({B, H}, acc_options);
  }
  const bool projected = in.w_hr.has_value();
  const bool rounded = options.dtype() != acc_options.dtype();
  Tensor recurrent = pooled_empty({B, G * H}, acc_options);
  Tensor unprojected = pooled_empty({projected ? B : 0, H}, options);
  Tensor projected_acc = pooled_empty({projected && rounded ? B : 0, P}, acc_options);
  const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
  const Tensor c0 = in.c0 ? in.c0->to(acc_options).contiguous() : Tensor();
  const Tensor w_hr = projected ? in.w_hr->contiguous() : Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND(
      at::kBFloat16, in.input.scalar_type(), "layer_forward", [&] {
        using T = scalar_t;
        using Acc = compute_t<T>;
        const RightOperand<T> hh(w_hh.data_ptr<T>(), G * H, P,
                                 /*transpose=*/true, rows, /*groups=*/G);
        std::optional<RightOperand<T>> hr;
        if (projected) hr.emplace(w_hr.data_ptr<T>(), P, H, true, rows);
        forward_sequence<Cell, T>(
            shape.layout, H, P, hh, hr ? &*hr : nullptr,
            {h0.data_ptr<T>(), data_or_null<Acc>(c0), bias_h.data_ptr<Acc>(),
             gates.data_ptr<Acc>(), out.saved.data_ptr<Acc>(),
             out.output.data_ptr<T>(), data_or_null<Acc>(out.cells),
             out.h_n.data_ptr<T>(), data_or_null<Acc>(c_n),
             recurrent.data_ptr<Acc>(), unprojected.data_ptr<T>(),
             projected_acc.data_ptr<Acc>()});
      });
  out.saved = out.saved.view(shape.rows_of(S * H));
  if constexpr (Cell::kHasCellState) out.c_n = c_n.to(options.dtype());
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
  check_saved(saved, in.input, "saved");
  check_shape(output, shape.rows_of(P), "output");
  check_shape(saved, shape.rows_of(S * H), "saved");
  if constexpr (Cell::kHasCellState) {
    TORCH_CHECK(cells.has_value(), "fusedrnn: cells are required");
    check_saved(*cells, in.input, "cells");
    check_shape(*cells, shape.rows_of(H), "cells");
  }
  Tensor dy;
  if (grad_output.has_value()) {
    check_same(*grad_output, in.input, "grad_output");
    check_shape(*grad_output, shape.rows_of(P), "grad_output");
    dy = grad_output->contiguous();
  }
  const auto options = in.input.options();
  const auto acc_options = compute_options(in.input);
  const bool rounded = options.dtype() != acc_options.dtype();
  const int64_t B = shape.layout.batch();
  const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
  const Tensor w_hr = projected ? in.w_hr->contiguous() : Tensor();
  const Tensor saved_c = saved.contiguous(), output_c = output.contiguous();
  const Tensor c0 = in.c0 ? in.c0->to(acc_options).contiguous() : Tensor();
  const Tensor cells_c = cells ? cells->contiguous() : Tensor();
  // The state gradients accumulate in the compute type.
  Tensor dh = state_gradient(grad_h_n, in.h0);
  Tensor dc = Cell::kHasCellState ? state_gradient(grad_c_n, *in.c0) : Tensor();
  Tensor dgates_x = pooled_empty({rows, G * H}, options);
  Tensor dgates_h =
      Cell::kSplitRecurrentGrad ? pooled_empty({rows, G * H}, options) : dgates_x;
  Tensor row_x = pooled_empty({rounded ? B : 0, G * H}, acc_options);
  Tensor row_h = pooled_empty(
      {rounded && Cell::kSplitRecurrentGrad ? B : 0, G * H}, acc_options);
  Tensor dprojected = pooled_empty({projected ? rows : 0, P}, options);
  Tensor dunprojected = pooled_empty({projected ? B : 0, H}, acc_options);
  Tensor h_prev = pooled_empty({rows, P}, options);
  Tensor unprojected = pooled_empty({projected ? rows : 0, H}, options);

  AT_DISPATCH_FLOATING_TYPES_AND(
      at::kBFloat16, in.input.scalar_type(), "layer_backward", [&] {
        using T = scalar_t;
        using Acc = compute_t<T>;
        const RightOperand<T> hh(w_hh.data_ptr<T>(), G * H, P,
                                 /*transpose=*/false, rows);
        std::optional<RightOperand<T>> hr;
        if (projected) hr.emplace(w_hr.data_ptr<T>(), P, H, false, rows);
        backward_sequence<Cell, T>(
            shape.layout, H, P, hh, hr ? &*hr : nullptr,
            {h0.data_ptr<T>(), data_or_null<Acc>(c0), output_c.data_ptr<T>(),
             saved_c.data_ptr<Acc>(), data_or_null<Acc>(cells_c),
             data_or_null<T>(dy), dh.data_ptr<Acc>(), data_or_null<Acc>(dc),
             dgates_x.data_ptr<T>(), dgates_h.data_ptr<T>(),
             dprojected.data_ptr<T>(), dunprojected.data_ptr<Acc>(),
             row_x.data_ptr<Acc>(), row_h.data_ptr<Acc>()});
        gather_previous_outputs(shape.layout, P, output_c.data_ptr<T>(),
                                h0.data_ptr<T>(), h_prev.data_ptr<T>());
        if constexpr (Cell::kHasCellState) {
          if (projected) {
            recompute_unprojected<Cell, T>(rows, H, saved_c.data_ptr<Acc>(),
                                           cells_c.data_ptr<Acc>(),
                                           unprojected.data_ptr<T>());
          }
        }
      });

  // Everything that does not depend on the step order, as large multiplies
  // (in the compute type, rounded to the storage type at the end).
  const auto dtype = in.input.scalar_type();
  const Tensor x = in.input.contiguous().view({rows, shape.input_size});
  LayerGradients grads;
  grads.input =
      pooled_to(whole_multiply(dgates_x, in.w_ih), dtype).view(in.input.sizes());
  grads.h0 = dh.to(dtype);
  if constexpr (Cell::kHasCellState) grads.c0 = dc.to(dtype);
  grads.w_ih = pooled_to(whole_multiply(dgates_x.t(), x), dtype);
  grads.w_hh = pooled_to(whole_multiply(dgates_h.t(), h_prev), dtype);
  grads.b_ih = dgates_x.sum(0);
  grads.b_hh = Cell::kSplitRecurrentGrad ? dgates_h.sum(0) : grads.b_ih;
  if (projected) {
    grads.w_hr = pooled_to(whole_multiply(dprojected.t(), unprojected), dtype);
  }
  return grads;
}

}  // namespace fusedrnn::cpu
