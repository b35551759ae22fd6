// CPU kernels of the LSTM layer ops: argument checks, buffers, the large
// multiplies outside the time loop, and the shared sequence driver inside.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../cells/lstm_cell.h"
#include "sequence_driver.h"

namespace fusedrnn::cpu {
namespace {

using at::Tensor;

void check_same(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), "fusedrnn: ", name,
              " is on ", t.device(), " but input is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "fusedrnn: ", name,
              " has dtype ", t.scalar_type(), " but input has ",
              ref.scalar_type());
}

void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "fusedrnn: expected ", name,
              " of size ", expected, ", got ", t.sizes());
}

// Validates the layer's arguments before any memory is touched.
// Returns (T, B, I, H).
std::array<int64_t, 4> check_layer_args(const Tensor& input, const Tensor& h0,
                                        const Tensor& c0, const Tensor& w_ih,
                                        const Tensor& w_hh) {
  TORCH_CHECK(input.dim() == 3,
              "fusedrnn: expected a 3-D time-major input, got ", input.dim(),
              "-D");
  TORCH_CHECK(input.size(0) > 0,
              "Expected sequence length to be larger than 0 in RNN");
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: CPU kernel got ",
              input.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat ||
                  input.scalar_type() == at::kDouble,
              "fusedrnn: the CPU LSTM kernel supports float32 and float64, got ",
              input.scalar_type());
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 4 * w_hh.size(1),
              "fusedrnn: expected w_hh of size (4H, H), got ", w_hh.sizes());
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t H = w_hh.size(1);
  for (const auto& [t, name] : {std::pair{h0, "h0"}, {c0, "c0"},
                                {w_ih, "w_ih"}, {w_hh, "w_hh"}}) {
    check_same(t, input, name);
  }
  check_shape(h0, {B, H}, "h0");
  check_shape(c0, {B, H}, "c0");
  check_shape(w_ih, {4 * H, I}, "w_ih");
  return {T, B, I, H};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_forward(
    const Tensor& input, const Tensor& h0, const Tensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const std::optional<Tensor>& b_ih,
    const std::optional<Tensor>& b_hh, bool reverse) {
  const auto [T, B, I, H] = check_layer_args(input, h0, c0, w_ih, w_hh);
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(),
              "fusedrnn: give both biases or neither");
  const Tensor x = input.contiguous().view({T * B, I});
  const Tensor w_hh_c = w_hh.contiguous();
  const Tensor h0_c = h0.contiguous(), c0_c = c0.contiguous();

  // The input projection of every step in one multiply; both biases are
  // folded in here so that the time loop adds nothing.
  Tensor gates;
  if (b_ih.has_value()) {
    check_same(*b_ih, input, "b_ih");
    check_same(*b_hh, input, "b_hh");
    check_shape(*b_ih, {4 * H}, "b_ih");
    check_shape(*b_hh, {4 * H}, "b_hh");
    gates = at::addmm(*b_ih + *b_hh, x, w_ih.t());
  } else {
    gates = at::mm(x, w_ih.t());
  }
  Tensor output = at::empty({T, B, H}, input.options());
  Tensor cells = at::empty({T, B, H}, input.options());
  Tensor recurrent = at::empty({B, 4 * H}, input.options());

  const SequenceDims dims{T, B, H, reverse};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm_layer_forward", [&] {
    forward_sequence<LstmCell, scalar_t>(
        dims, w_hh_c.data_ptr<scalar_t>(), h0_c.data_ptr<scalar_t>(),
        c0_c.data_ptr<scalar_t>(), gates.data_ptr<scalar_t>(),
        output.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(),
        recurrent.data_ptr<scalar_t>());
  });
  const int64_t last = dims.step(T - 1);
  return {output, output[last].clone(), cells[last].clone(),
          gates.view({T, B, 4 * H}), cells};
}

// A contiguous (B, H) buffer the backward updates in place, starting from
// `grad` or 0. (Not *_like: those would copy the strides of `like`.)
Tensor state_gradient(const std::optional<Tensor>& grad, const Tensor& like) {
  if (!grad.has_value()) return at::zeros(like.sizes(), like.options());
  check_same(*grad, like, "final-state gradient");
  check_shape(*grad, like.sizes(), "final-state gradient");
  return at::empty(like.sizes(), like.options()).copy_(*grad);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_backward(
    const std::optional<Tensor>& grad_output,
    const std::optional<Tensor>& grad_h_n,
    const std::optional<Tensor>& grad_c_n, const Tensor& input,
    const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& output, const Tensor& gates, const Tensor& cells,
    bool reverse) {
  const auto [T, B, I, H] = check_layer_args(input, h0, c0, w_ih, w_hh);
  check_same(output, input, "output");
  check_same(gates, input, "gates");
  check_same(cells, input, "cells");
  check_shape(output, {T, B, H}, "output");
  check_shape(gates, {T, B, 4 * H}, "gates");
  check_shape(cells, {T, B, H}, "cells");
  Tensor dy;
  if (grad_output.has_value()) {
    check_same(*grad_output, input, "grad_output");
    check_shape(*grad_output, {T, B, H}, "grad_output");
    dy = grad_output->contiguous();
  }
  const Tensor w_hh_c = w_hh.contiguous(), c0_c = c0.contiguous();
  const Tensor saved = gates.contiguous(), cells_c = cells.contiguous();
  Tensor dh = state_gradient(grad_h_n, h0);
  Tensor dc = state_gradient(grad_c_n, c0);
  Tensor dgates = at::empty({T, B, 4 * H}, input.options());

  const SequenceDims dims{T, B, H, reverse};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm_layer_backward", [&] {
    backward_sequence<LstmCell, scalar_t>(
        dims, w_hh_c.data_ptr<scalar_t>(), c0_c.data_ptr<scalar_t>(),
        saved.data_ptr<scalar_t>(), cells_c.data_ptr<scalar_t>(),
        dy.defined() ? dy.data_ptr<scalar_t>() : nullptr,
        dh.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(),
        dgates.data_ptr<scalar_t>());
  });

  // Everything that does not depend on the step order, as large multiplies.
  const Tensor dg = dgates.view({T * B, 4 * H});
  const Tensor x = input.contiguous().view({T * B, I});
  Tensor grad_input = at::mm(dg, w_ih).view({T, B, I});
  Tensor grad_w_ih = at::mm(dg.t(), x);
  // W_hh met h0 at the first processed step and the previous step's output
  // at every other step.
  const int64_t first = dims.step(0);
  Tensor grad_w_hh = at::mm(dgates[first].t(), h0);
  if (T > 1) {
    const Tensor dg_rest = reverse ? dgates.narrow(0, 0, T - 1)
                                   : dgates.narrow(0, 1, T - 1);
    const Tensor h_prev = reverse ? output.narrow(0, 1, T - 1)
                                  : output.narrow(0, 0, T - 1);
    grad_w_hh.addmm_(dg_rest.reshape({-1, 4 * H}).t(),
                     h_prev.reshape({-1, H}));
  }
  Tensor grad_bias = dg.sum(0);
  return {grad_input, dh, dc, grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("lstm_layer_forward", &lstm_layer_forward);
  m.impl("lstm_layer_backward", &lstm_layer_backward);
}

}  // namespace fusedrnn::cpu
