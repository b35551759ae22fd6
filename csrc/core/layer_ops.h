// The op wrappers of every back end: for each cell of cell_list.h, the
// kernels of its two ops (schemas.cpp) on a back end's executor. A back end
// registers them with
//   TORCH_LIBRARY_IMPL(fusedrnn, KEY, m) { register_layer_ops<Executor>(m); }
#pragma once

#include <torch/library.h>

#include <tuple>

#include "cell_list.h"
#include "recurrent_layer.h"

namespace fusedrnn {

template <template <class> class Executor, class Cell>
struct LayerOps {
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> forward(
      const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
      const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
      const OptionalTensor& b_hh, const OptionalTensor& w_hr,
      const OptionalTensor& batch_sizes, bool reverse,
      const OptionalTensor& recurrent_keep, double recurrent_dropout,
      const OptionalTensor& zoneout_keep, double zoneout,
      const OptionalTensor& cell_zoneout_keep, double cell_zoneout,
      const OptionalTensor& norms, double eps) {
    const RegularizationInputs reg{recurrent_keep, recurrent_dropout,
                                   zoneout_keep,   zoneout,
                                   cell_zoneout_keep, cell_zoneout};
    const LayerOutputs out = layer_forward<Executor, Cell>(
        {input, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, batch_sizes, reverse,
         reg, norms, eps});
    return {out.output, out.h_n, out.c_n, out.saved, out.cells};
  }

  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                    Tensor, Tensor>
  backward(const OptionalTensor& grad_output, const OptionalTensor& grad_h_n,
           const OptionalTensor& grad_c_n, const Tensor& input,
           const Tensor& h0, const OptionalTensor& c0, const Tensor& w_ih,
           const Tensor& w_hh, const OptionalTensor& w_hr,
           const OptionalTensor& batch_sizes, const Tensor& output,
           const Tensor& saved, const OptionalTensor& cells, bool reverse,
           bool input_grad, bool state_grad,
           const OptionalTensor& recurrent_keep,
           double recurrent_dropout, const OptionalTensor& zoneout_keep,
           double zoneout, const OptionalTensor& cell_zoneout_keep,
           double cell_zoneout, const OptionalTensor& norms, double eps) {
    static const OptionalTensor kNone;
    const RegularizationInputs reg{recurrent_keep, recurrent_dropout,
                                   zoneout_keep,   zoneout,
                                   cell_zoneout_keep, cell_zoneout};
    const LayerGradients g = layer_backward<Executor, Cell>(
        {input, h0, c0, w_ih, w_hh, w_hr, kNone, kNone, batch_sizes, reverse,
         reg, norms, eps},
        grad_output, grad_h_n, grad_c_n, output, saved, cells, input_grad,
        state_grad);
    return {g.input, g.h0, g.c0, g.w_ih, g.w_hh, g.b_ih, g.b_hh, g.w_hr,
            g.norms};
  }
};

template <template <class> class Executor>
void register_layer_ops(torch::Library& m) {
#define FUSEDRNN_REGISTER_OPS(name, Cell, ...)                                  \
  m.impl(#name "_layer_forward", &LayerOps<Executor, Cell>::forward);      \
  m.impl(#name "_layer_backward", &LayerOps<Executor, Cell>::backward);
  FUSEDRNN_FOR_EACH_CELL(FUSEDRNN_REGISTER_OPS)
#undef FUSEDRNN_REGISTER_OPS
}

}  // namespace fusedrnn
