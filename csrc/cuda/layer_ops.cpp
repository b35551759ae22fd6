// The CUDA kernels of the layer ops (schemas: ops/schemas.cpp): each unpacks
// its arguments into the cell-independent layer_forward/layer_backward, as
// cpu/layer_ops.cpp does for the CPU. The calls name cuda:: because their
// argument struct is the CPU's (cpu::LayerInputs), so argument-dependent
// lookup also finds cpu::layer_forward and cpu::layer_backward.
#include <torch/library.h>

#include "../cells/gru_cell.h"
#include "../cells/lstm_cell.h"
#include "../cells/rnn_cell.h"
#include "recurrent_layer.h"

namespace fusedrnn::cuda {
namespace {

const OptionalTensor kNone;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& input, const Tensor& h0, const Tensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, const OptionalTensor& w_hr,
    const OptionalTensor& batch_sizes, bool reverse) {
  const OptionalTensor cell(c0);
  auto out = cuda::layer_forward<LstmCell>(
      {input, h0, cell, w_ih, w_hh, w_hr, batch_sizes, reverse}, b_ih, b_hh);
  return {out.output, out.h_n, out.c_n, out.saved, out.cells};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
lstm_backward(const OptionalTensor& grad_output, const OptionalTensor& grad_h_n,
              const OptionalTensor& grad_c_n, const Tensor& input,
              const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
              const Tensor& w_hh, const OptionalTensor& w_hr,
              const OptionalTensor& batch_sizes, const Tensor& output,
              const Tensor& gates, const Tensor& cells, bool reverse) {
  const OptionalTensor cell(c0), cell_states(cells);
  auto g = cuda::layer_backward<LstmCell>(
      {input, h0, cell, w_ih, w_hh, w_hr, batch_sizes, reverse}, grad_output,
      grad_h_n, grad_c_n, output, gates, cell_states);
  // Both LSTM biases get the same gradient.
  return {g.input, g.h0, g.c0, g.w_ih, g.w_hh, g.b_ih,
          g.w_hr.defined() ? g.w_hr : at::empty({0}, input.options())};
}

std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& input, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
    const OptionalTensor& batch_sizes, bool reverse) {
  auto out = cuda::layer_forward<GruCell>(
      {input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse}, b_ih, b_hh);
  return {out.output, out.h_n, out.saved};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const OptionalTensor& grad_output, const OptionalTensor& grad_h_n,
    const Tensor& input, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptionalTensor& batch_sizes,
    const Tensor& output, const Tensor& saved, bool reverse) {
  auto g = cuda::layer_backward<GruCell>(
      {input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse}, grad_output,
      grad_h_n, kNone, output, saved, kNone);
  return {g.input, g.h0, g.w_ih, g.w_hh, g.b_ih, g.b_hh};
}

std::tuple<Tensor, Tensor, Tensor> rnn_forward(
    const Tensor& input, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
    const OptionalTensor& batch_sizes, bool relu, bool reverse) {
  const LayerInputs in{input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse};
  auto out = relu ? cuda::layer_forward<RnnReluCell>(in, b_ih, b_hh)
                  : cuda::layer_forward<RnnTanhCell>(in, b_ih, b_hh);
  return {out.output, out.h_n, out.saved};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const OptionalTensor& grad_output, const OptionalTensor& grad_h_n,
    const Tensor& input, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptionalTensor& batch_sizes,
    const Tensor& output, const Tensor& saved, bool relu, bool reverse) {
  const LayerInputs in{input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse};
  auto g = relu ? cuda::layer_backward<RnnReluCell>(
                      in, grad_output, grad_h_n, kNone, output, saved, kNone)
                : cuda::layer_backward<RnnTanhCell>(
                      in, grad_output, grad_h_n, kNone, output, saved, kNone);
  // Both RNN biases get the same gradient.
  return {g.input, g.h0, g.w_ih, g.w_hh, g.b_ih};
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  m.impl("lstm_layer_forward", &lstm_forward);
  m.impl("lstm_layer_backward", &lstm_backward);
  m.impl("gru_layer_forward", &gru_forward);
  m.impl("gru_layer_backward", &gru_backward);
  m.impl("rnn_layer_forward", &rnn_forward);
  m.impl("rnn_layer_backward", &rnn_backward);
}

}  // namespace fusedrnn::cuda
