// The op wrappers of every back end: they unpack each op's arguments into
// the cell-independent layer forward/backward of a back end and register
// them. A back end is a struct with
//   template <class Cell> static LayerOutputs forward(const LayerInputs&,
//       const OptionalTensor& b_ih, const OptionalTensor& b_hh);
//   template <class Cell> static LayerGradients backward(const LayerInputs&,
//       grad_output, grad_h_n, grad_c_n, output, saved, cells);
// and registers with TORCH_LIBRARY_IMPL(fusedrnn, KEY, m) {
//   register_layer_kernels<Backend>(m); }.
#pragma once

#include <torch/library.h>

#include "../cells/gru_cell.h"
#include "../cells/lstm_cell.h"
#include "../cells/rnn_cell.h"
#include "layer_args.h"

namespace fusedrnn {

template <class Backend>
struct LayerKernels {
  static inline const OptionalTensor kNone{};

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
      const Tensor& input, const Tensor& h0, const Tensor& c0,
      const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
      const OptionalTensor& b_hh, const OptionalTensor& w_hr,
      const OptionalTensor& batch_sizes, bool reverse) {
    const OptionalTensor cell(c0);
    auto out = Backend::template forward<LstmCell>(
        {input, h0, cell, w_ih, w_hh, w_hr, batch_sizes, reverse}, b_ih, b_hh);
    return {out.output, out.h_n, out.c_n, out.saved, out.cells};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
  lstm_backward(const OptionalTensor& grad_output,
                const OptionalTensor& grad_h_n, const OptionalTensor& grad_c_n,
                const Tensor& input, const Tensor& h0, const Tensor& c0,
                const Tensor& w_ih, const Tensor& w_hh,
                const OptionalTensor& w_hr, const OptionalTensor& batch_sizes,
                const Tensor& output, const Tensor& gates, const Tensor& cells,
                bool reverse) {
    const OptionalTensor cell(c0), cell_states(cells);
    auto g = Backend::template backward<LstmCell>(
        {input, h0, cell, w_ih, w_hh, w_hr, batch_sizes, reverse}, grad_output,
        grad_h_n, grad_c_n, output, gates, cell_states);
    // Both LSTM biases get the same gradient.
    return {g.input, g.h0, g.c0, g.w_ih, g.w_hh, g.b_ih,
            g.w_hr.defined() ? g.w_hr : at::empty({0}, input.options())};
  }

  static std::tuple<Tensor, Tensor, Tensor> gru_forward(
      const Tensor& input, const Tensor& h0, const Tensor& w_ih,
      const Tensor& w_hh, const OptionalTensor& b_ih,
      const OptionalTensor& b_hh, const OptionalTensor& batch_sizes,
      bool reverse) {
    auto out = Backend::template forward<GruCell>(
        {input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse}, b_ih, b_hh);
    return {out.output, out.h_n, out.saved};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
  gru_backward(const OptionalTensor& grad_output,
               const OptionalTensor& grad_h_n, const Tensor& input,
               const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
               const OptionalTensor& batch_sizes, const Tensor& output,
               const Tensor& saved, bool reverse) {
    auto g = Backend::template backward<GruCell>(
        {input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse},
        grad_output, grad_h_n, kNone, output, saved, kNone);
    return {g.input, g.h0, g.w_ih, g.w_hh, g.b_ih, g.b_hh};
  }

  static std::tuple<Tensor, Tensor, Tensor> rnn_forward(
      const Tensor& input, const Tensor& h0, const Tensor& w_ih,
      const Tensor& w_hh, const OptionalTensor& b_ih,
      const OptionalTensor& b_hh, const OptionalTensor& batch_sizes, bool relu,
      bool reverse) {
    const LayerInputs in{input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse};
    auto out = relu ? Backend::template forward<RnnReluCell>(in, b_ih, b_hh)
                    : Backend::template forward<RnnTanhCell>(in, b_ih, b_hh);
    return {out.output, out.h_n, out.saved};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
      const OptionalTensor& grad_output, const OptionalTensor& grad_h_n,
      const Tensor& input, const Tensor& h0, const Tensor& w_ih,
      const Tensor& w_hh, const OptionalTensor& batch_sizes,
      const Tensor& output, const Tensor& saved, bool relu, bool reverse) {
    const LayerInputs in{input, h0, kNone, w_ih, w_hh, kNone, batch_sizes, reverse};
    auto g = relu ? Backend::template backward<RnnReluCell>(
                        in, grad_output, grad_h_n, kNone, output, saved, kNone)
                  : Backend::template backward<RnnTanhCell>(
                        in, grad_output, grad_h_n, kNone, output, saved, kNone);
    // Both RNN biases get the same gradient.
    return {g.input, g.h0, g.w_ih, g.w_hh, g.b_ih};
  }
};

template <class Backend>
void register_layer_kernels(torch::Library& m) {
  using K = LayerKernels<Backend>;
  m.impl("lstm_layer_forward", &K::lstm_forward);
  m.impl("lstm_layer_backward", &K::lstm_backward);
  m.impl("gru_layer_forward", &K::gru_forward);
  m.impl("gru_layer_backward", &K::gru_backward);
  m.impl("rnn_layer_forward", &K::rnn_forward);
  m.impl("rnn_layer_backward", &K::rnn_backward);
}

}  // namespace fusedrnn
