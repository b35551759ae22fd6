// One recurrent layer in one direction on CUDA, for any cell: argument
// checks, buffers, the large multiplies outside the time loop, and the
// shared sequence driver inside. The CUDA counterpart of
// cpu/recurrent_layer.h; both take the arguments of ops/layer_args.h, and
// the ops (layer_ops.cpp) are the shared wrappers of ops/layer_kernels.h.
//
// Dtypes: float32 and float64 are stored and computed in their own type.
// float16 and bfloat16 are stored in 16 bits (input, weights, output, h_n,
// c_n and every gradient) but computed in float32 (accumulate.h), and the
// per-step values the backward reads back, `saved` and `cells`, stay in
// float32 too: for 16-bit input the forward returns them as float32 and the
// backward expects them so.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <optional>

#include "../ops/layer_args.h"
#include "sequence_driver.h"

namespace fusedrnn::cuda {

// Checks that the kernels take this input: a CUDA tensor of float32,
// float64, float16 or bfloat16 (the rest of the arguments:
// check_layer_inputs).
void check_cuda_input(const Tensor& input);

template <typename Cell>
LayerOutputs layer_forward(const LayerInputs& in, const OptionalTensor& b_ih,
                           const OptionalTensor& b_hh) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  check_cuda_input(in.input);
  const LayerShape shape = check_layer_inputs(in, G, Cell::kHasCellState);
  const c10::cuda::CUDAGuard device_guard(in.input.device());
  const int64_t rows = shape.layout.rows(), B = shape.layout.batch();
  const int64_t I = shape.input_size, H = shape.hidden, P = shape.out_size;
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(),
              "fusedrnn: give both biases or neither");
  const auto options = in.input.options();
  const auto acc_options = compute_options(in.input);
  const Tensor x = in.input.contiguous().view({rows, I});
  // The input projection of every step, with b_ih, is one multiply into a
  // buffer that already holds b_ih (beta = 1).
  Tensor gates = at::empty({rows, G * H}, acc_options);
  Tensor bias_h = at::zeros({G * H}, acc_options);
  if (b_ih.has_value()) {
    check_same(*b_ih, in.input, "b_ih");
    check_same(*b_hh, in.input, "b_hh");
    check_shape(*b_ih, {G * H}, "b_ih");
    check_shape(*b_hh, {G * H}, "b_hh");
    gates.copy_(b_ih->expand({rows, G * H}));
    bias_h.copy_(*b_hh);
  }
  LayerOutputs out;
  out.saved = S == G ? gates : at::empty({rows, S * H}, acc_options);
  out.output = at::empty(shape.rows_of(P), options);
  out.h_n = at::empty({B, P}, options);
  if constexpr (Cell::kHasCellState) {
    out.cells = at::empty(shape.rows_of(H), acc_options);
    out.c_n = at::empty({B, H}, options);
  }
  Tensor recurrent = at::empty({B, G * H}, acc_options);
  Tensor unprojected = at::empty({in.w_hr ? B : 0, H}, options);
  const Tensor w_ih = in.w_ih.contiguous(), w_hh = in.w_hh.contiguous();
  const Tensor h0 = in.h0.contiguous();
  const Tensor c0 = in.c0 ? in.c0->to(acc_options).contiguous() : Tensor();
  const Tensor w_hr = in.w_hr ? in.w_hr->contiguous() : Tensor();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.input.scalar_type(), "layer_forward", [&] {
        using T = scalar_t;
        using Acc = accumulate_t<T>;
        const Blas blas;
        blas.multiply(rows, x.data_ptr<T>(), I,
                      RightOperand<T>(w_ih.data_ptr<T>(), G * H, I,
                                      /*transpose=*/true),
                      Acc(b_ih.has_value() ? 1 : 0), gates.data_ptr<Acc>(),
                      G * H);
        const RightOperand<T> hh(w_hh.data_ptr<T>(), G * H, P,
                                 /*transpose=*/true);
        std::optional<RightOperand<T>> hr;
        if (w_hr.defined()) hr.emplace(w_hr.data_ptr<T>(), P, H, true);
        forward_sequence<Cell, T>(
            blas, stream, shape.layout, H, P, hh, hr ? &*hr : nullptr,
            {h0.data_ptr<T>(), data_or_null<Acc>(c0), bias_h.data_ptr<Acc>(),
             gates.data_ptr<Acc>(), out.saved.data_ptr<Acc>(),
             out.output.data_ptr<T>(), data_or_null<Acc>(out.cells),
             out.h_n.data_ptr<T>(), data_or_null<T>(out.c_n),
             recurrent.data_ptr<Acc>(), unprojected.data_ptr<T>()});
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
  check_cuda_input(in.input);
  const LayerShape shape = check_layer_inputs(in, G, Cell::kHasCellState);
  const c10::cuda::CUDAGuard device_guard(in.input.device());
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
  const Tensor w_hh = in.w_hh.contiguous(), h0 = in.h0.contiguous();
  const Tensor w_hr = projected ? in.w_hr->contiguous() : Tensor();
  const Tensor saved_c = saved.contiguous(), output_c = output.contiguous();
  const Tensor c0 = in.c0 ? in.c0->to(acc_options).contiguous() : Tensor();
  const Tensor cells_c = cells ? cells->contiguous() : Tensor();
  // The state gradients accumulate in the compute type; they are returned
  // in the storage type at the end.
  Tensor dh = state_gradient(grad_h_n, in.h0);
  Tensor dc = Cell::kHasCellState ? state_gradient(grad_c_n, *in.c0) : Tensor();
  Tensor dgates_x = at::empty({rows, G * H}, options);
  Tensor dgates_h =
      Cell::kSplitRecurrentGrad ? at::empty({rows, G * H}, options) : dgates_x;
  Tensor dprojected = at::empty({projected ? rows : 0, P}, options);
  Tensor dunprojected =
      at::empty({projected ? shape.layout.batch() : 0, H}, acc_options);
  Tensor h_prev = at::empty({rows, P}, options);
  Tensor unprojected = at::empty({projected ? rows : 0, H}, options);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.input.scalar_type(), "layer_backward", [&] {
        using T = scalar_t;
        using Acc = accumulate_t<T>;
        const Blas blas;
        const RightOperand<T> hh(w_hh.data_ptr<T>(), G * H, P,
                                 /*transpose=*/false);
        std::optional<RightOperand<T>> hr;
        if (projected) hr.emplace(w_hr.data_ptr<T>(), P, H, false);
        backward_sequence<Cell, T>(
            blas, stream, shape.layout, H, P, hh, hr ? &*hr : nullptr,
            {h0.data_ptr<T>(), data_or_null<Acc>(c0), output_c.data_ptr<T>(),
             saved_c.data_ptr<Acc>(), data_or_null<Acc>(cells_c),
             data_or_null<T>(dy), dh.data_ptr<Acc>(), data_or_null<Acc>(dc),
             dgates_x.data_ptr<T>(), dgates_h.data_ptr<T>(),
             dprojected.data_ptr<T>(), dunprojected.data_ptr<Acc>()});
        gather_previous_outputs(shape.layout, P, output_c.data_ptr<T>(),
                                h0.data_ptr<T>(), h_prev.data_ptr<T>(), stream);
        if constexpr (Cell::kHasCellState) {
          if (projected) {
            launch_recompute_hidden<Cell, T>(rows, H, saved_c.data_ptr<Acc>(),
                                             cells_c.data_ptr<Acc>(),
                                             unprojected.data_ptr<T>(), stream);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        }
      });

  // Everything that does not depend on the step order, as large multiplies
  // (cuBLAS through ATen; 16-bit products accumulate in float32). The bias
  // gradients are sums over rows: deterministic, no atomics.
  const Tensor x = in.input.contiguous().view({rows, shape.input_size});
  LayerGradients grads;
  grads.input = at::mm(dgates_x, in.w_ih).view(in.input.sizes());
  grads.h0 = dh.to(options);
  if constexpr (Cell::kHasCellState) grads.c0 = dc.to(options);
  grads.w_ih = at::mm(dgates_x.t(), x);
  grads.w_hh = at::mm(dgates_h.t(), h_prev);
  grads.b_ih = dgates_x.sum(0);
  grads.b_hh = Cell::kSplitRecurrentGrad ? dgates_h.sum(0) : grads.b_ih;
  if (projected) grads.w_hr = at::mm(dprojected.t(), unprojected);
  return grads;
}

}  // namespace fusedrnn::cuda
