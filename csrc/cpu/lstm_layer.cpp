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
using OptionalTensor = std::optional<Tensor>;

void check_same(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), "fusedrnn: ", name, " is on ",
              t.device(), " but input is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "fusedrnn: ", name,
              " has dtype ", t.scalar_type(), " but input has ",
              ref.scalar_type());
}

void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "fusedrnn: expected ", name, " of size ",
              expected, ", got ", t.sizes());
}

// The layer's sizes and step layout, from arguments validated before any
// memory is touched.
struct LayerShape {
  SequenceLayout layout;
  int64_t input_size, hidden, out_size;  // I, H, P (P = H without projection)
  bool packed;

  // Shapes of the per-row buffers: (T, B, width) dense, (rows, width) packed.
  std::vector<int64_t> rows_of(int64_t width) const {
    if (packed) return {layout.rows(), width};
    return {layout.steps(), layout.batch(), width};
  }
};

LayerShape check_layer_args(const Tensor& input, const Tensor& h0,
                            const Tensor& c0, const Tensor& w_ih,
                            const Tensor& w_hh, const OptionalTensor& w_hr,
                            const OptionalTensor& batch_sizes, bool reverse) {
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: CPU kernel got ",
              input.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat ||
                  input.scalar_type() == at::kDouble,
              "fusedrnn: the CPU LSTM kernel supports float32 and float64, got ",
              input.scalar_type());
  const bool packed = batch_sizes.has_value();
  TORCH_CHECK(input.dim() == (packed ? 2 : 3), "fusedrnn: expected a ",
              packed ? "2-D packed" : "3-D time-major", " input, got ",
              input.dim(), "-D");
  TORCH_CHECK(input.size(0) > 0,
              "Expected sequence length to be larger than 0 in RNN");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % 4 == 0 && w_hh.size(0) > 0,
              "fusedrnn: expected w_hh of size (4H, P), got ", w_hh.sizes());
  const int64_t H = w_hh.size(0) / 4, P = w_hh.size(1);
  const int64_t I = input.size(-1);
  for (const auto& [t, name] :
       {std::pair{h0, "h0"}, {c0, "c0"}, {w_ih, "w_ih"}, {w_hh, "w_hh"}}) {
    check_same(t, input, name);
  }
  if (w_hr.has_value()) {
    check_same(*w_hr, input, "w_hr");
    check_shape(*w_hr, {P, H}, "w_hr");
  } else {
    TORCH_CHECK(P == H, "fusedrnn: expected w_hh of size (4H, H) without a "
                "projection, got ", w_hh.sizes());
  }
  SequenceLayout layout = packed ? SequenceLayout(*batch_sizes, reverse)
                                 : SequenceLayout(input.size(0), input.size(1),
                                                  reverse);
  if (packed) {
    TORCH_CHECK(layout.rows() == input.size(0), "fusedrnn: batch_sizes sum to ",
                layout.rows(), " but the packed input has ", input.size(0),
                " rows");
  }
  const int64_t B = layout.batch();
  check_shape(h0, {B, P}, "h0");
  check_shape(c0, {B, H}, "c0");
  check_shape(w_ih, {4 * H, I}, "w_ih");
  return {std::move(layout), I, H, P, packed};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_forward(
    const Tensor& input, const Tensor& h0, const Tensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, const OptionalTensor& w_hr,
    const OptionalTensor& batch_sizes, bool reverse) {
  const LayerShape shape =
      check_layer_args(input, h0, c0, w_ih, w_hh, w_hr, batch_sizes, reverse);
  const int64_t rows = shape.layout.rows(), B = shape.layout.batch();
  const int64_t H = shape.hidden, P = shape.out_size;
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(),
              "fusedrnn: give both biases or neither");
  const Tensor x = input.contiguous().view({rows, shape.input_size});

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
  const auto options = input.options();
  Tensor output = at::empty(shape.rows_of(P), options);
  Tensor cells = at::empty(shape.rows_of(H), options);
  Tensor h_n = at::empty({B, P}, options), c_n = at::empty({B, H}, options);
  Tensor recurrent = at::empty({B, 4 * H}, options);
  Tensor unprojected = at::empty({w_hr.has_value() ? B : 0, H}, options);
  const Tensor w_hh_c = w_hh.contiguous();
  const Tensor w_hr_c = w_hr.has_value() ? w_hr->contiguous() : Tensor();
  const Tensor h0_c = h0.contiguous(), c0_c = c0.contiguous();

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm_layer_forward", [&] {
    using T = scalar_t;
    const RightOperand<T> hh(w_hh_c.data_ptr<T>(), 4 * H, P, /*transpose=*/true);
    std::optional<RightOperand<T>> hr;
    if (w_hr_c.defined()) hr.emplace(w_hr_c.data_ptr<T>(), P, H, true);
    forward_sequence<LstmCell, T>(
        shape.layout, H, P, hh, hr ? &*hr : nullptr,
        {h0_c.data_ptr<T>(), c0_c.data_ptr<T>(), gates.data_ptr<T>(),
         output.data_ptr<T>(), cells.data_ptr<T>(), h_n.data_ptr<T>(),
         c_n.data_ptr<T>(), recurrent.data_ptr<T>(), unprojected.data_ptr<T>()});
  });
  return {output, h_n, c_n, gates.view(shape.rows_of(4 * H)), cells};
}

// A contiguous buffer the backward updates in place, starting from `grad`
// or 0. (Not *_like: those would copy the strides of `like`.)
Tensor state_gradient(const OptionalTensor& grad, const Tensor& like) {
  if (!grad.has_value()) return at::zeros(like.sizes(), like.options());
  check_same(*grad, like, "final-state gradient");
  check_shape(*grad, like.sizes(), "final-state gradient");
  return at::empty(like.sizes(), like.options()).copy_(*grad);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
lstm_layer_backward(const OptionalTensor& grad_output,
                    const OptionalTensor& grad_h_n,
                    const OptionalTensor& grad_c_n, const Tensor& input,
                    const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                    const Tensor& w_hh, const OptionalTensor& w_hr,
                    const OptionalTensor& batch_sizes, const Tensor& output,
                    const Tensor& gates, const Tensor& cells, bool reverse) {
  const LayerShape shape =
      check_layer_args(input, h0, c0, w_ih, w_hh, w_hr, batch_sizes, reverse);
  const int64_t rows = shape.layout.rows();
  const int64_t H = shape.hidden, P = shape.out_size;
  const bool projected = w_hr.has_value();
  check_same(output, input, "output");
  check_same(gates, input, "gates");
  check_same(cells, input, "cells");
  check_shape(output, shape.rows_of(P), "output");
  check_shape(gates, shape.rows_of(4 * H), "gates");
  check_shape(cells, shape.rows_of(H), "cells");
  Tensor dy;
  if (grad_output.has_value()) {
    check_same(*grad_output, input, "grad_output");
    check_shape(*grad_output, shape.rows_of(P), "grad_output");
    dy = grad_output->contiguous();
  }
  const auto options = input.options();
  const Tensor w_hh_c = w_hh.contiguous(), c0_c = c0.contiguous();
  const Tensor w_hr_c = projected ? w_hr->contiguous() : Tensor();
  const Tensor saved = gates.contiguous(), cells_c = cells.contiguous();
  const Tensor output_c = output.contiguous(), h0_c = h0.contiguous();
  Tensor dh = state_gradient(grad_h_n, h0);
  Tensor dc = state_gradient(grad_c_n, c0);
  Tensor dgates = at::empty({rows, 4 * H}, options);
  Tensor dprojected = at::empty({projected ? rows : 0, P}, options);
  Tensor dunprojected = at::empty({projected ? shape.layout.batch() : 0, H}, options);
  Tensor h_prev = at::empty({rows, P}, options);
  Tensor unprojected = at::empty({projected ? rows : 0, H}, options);

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm_layer_backward", [&] {
    using T = scalar_t;
    const RightOperand<T> hh(w_hh_c.data_ptr<T>(), 4 * H, P, /*transpose=*/false);
    std::optional<RightOperand<T>> hr;
    if (projected) hr.emplace(w_hr_c.data_ptr<T>(), P, H, false);
    backward_sequence<LstmCell, T>(
        shape.layout, H, P, hh, hr ? &*hr : nullptr,
        {c0_c.data_ptr<T>(), saved.data_ptr<T>(), cells_c.data_ptr<T>(),
         dy.defined() ? dy.data_ptr<T>() : nullptr, dh.data_ptr<T>(),
         dc.data_ptr<T>(), dgates.data_ptr<T>(), dprojected.data_ptr<T>(),
         dunprojected.data_ptr<T>()});
    gather_previous_outputs(shape.layout, P, output_c.data_ptr<T>(),
                            h0_c.data_ptr<T>(), h_prev.data_ptr<T>());
    if (projected) {
      recompute_unprojected<LstmCell, T>(rows, H, saved.data_ptr<T>(),
                                         cells_c.data_ptr<T>(),
                                         unprojected.data_ptr<T>());
    }
  });

  // Everything that does not depend on the step order, as large multiplies.
  const Tensor x = input.contiguous().view({rows, shape.input_size});
  Tensor grad_input = at::mm(dgates, w_ih).view(input.sizes());
  Tensor grad_w_ih = at::mm(dgates.t(), x);
  Tensor grad_w_hh = at::mm(dgates.t(), h_prev);
  Tensor grad_bias = dgates.sum(0);
  Tensor grad_w_hr = projected ? at::mm(dprojected.t(), unprojected)
                               : at::empty({0}, options);
  return {grad_input, dh, dc, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr};
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  m.impl("lstm_layer_forward", &lstm_layer_forward);
  m.impl("lstm_layer_backward", &lstm_layer_backward);
}

}  // namespace fusedrnn::cpu
