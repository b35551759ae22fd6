// The schemas of every fusedrnn op, in one place, one pair per cell of
// cell_list.h. Back ends register their kernels for these names
// (layer_ops.h); Python registers the fake kernels and autograd
// (fusedrnn/_ops.py).
//
// Every cell's ops take the same arguments, so one schema serves all:
//   input: dense time-major (T, B, I), or packed (rows, I) with
//          batch_sizes (T,) int64 on the CPU, non-increasing;
//   h0 (B, P); c0 (B, H), given exactly for cells with a cell state (LSTM);
//   w_ih (G*H, I), w_hh (G*H, P), biases (G*H), both or neither;
//   w_hr (P, H) projects h when given (P = H without it; LSTM only).
// The forward returns the outputs (T, B, P) or (rows, P), each sequence's
// final h and c, and what the backward needs: the cell's saved values
// (.., S*H) and cell states (.., H) of every step. c_n and cells are empty
// (size 0) for cells without a cell state, which take no cells backward.
//
// Recurrent dropout and zoneout (core/regularization.h, and
// fusedrnn.reference.Regularization) come last, both ways: bool masks
// drawn in Python (recurrent_keep (B, P), zoneout_keep like the output,
// cell_zoneout_keep like the cell states, True where the unit keeps its
// previous value) and their probabilities; zoneout with a probability but
// no mask is eval's expectation. The defaults are torch.nn's layer.
//
// Layer norm (the normalized cells, cells/row_stage.h) comes after them:
// `norms` is one 1-D tensor holding per normalization (LN_ih, LN_hh, then
// the LSTM's LN_c) its gain and bias, G*H long each (LN_c: H), one after
// the other; `eps` is inside layer norm's square root. The other cells take
// no `norms` (the default), so their callers do not change; the backward
// returns the norms' gradient in `grad_norms`, laid out as `norms` (empty
// for the other cells).
//
// The backward is exact backpropagation through time; missing gradients
// count as zeros. With input_grad false it skips the input's gradient (one
// of the three large multiplies after the loop) and returns it empty: the
// first layer over raw features needs none. With state_grad false it skips
// the initial states' gradients and returns them empty: the states start
// as zeros, or are carried over detached, in most training; the last step
// then multiplies by W_hh only the rows that continue a sequence (none at
// a one-step call). grad_b_hh is empty for cells whose two biases get the
// same gradient (grad_b_ih); grad_c0 and grad_w_hr are empty where the
// cell has no c0 or no projection was given.
//
// The stack ops (core/stack_op.cpp), one per plain cell, run a whole
// torch.nn layer stack: every layer and direction on the cell's forward op,
// torch.nn's dropout between layers, and fusedrnn's residual connections.
//   hx: the initial states (D*L, B, P) (and the LSTM's (D*L, B, H)), or
//       empty for zeros;
//   weights: torch.nn's _flat_weights, per (layer, direction) w_ih, w_hh,
//       then b_ih, b_hh if has_biases, then w_hr if the count says so;
//   batch_sizes as the layer ops'.
// They return the last layer's output and the final states stacked in
// torch.nn's layer * D + direction order (h_n, then the LSTM's c_n).
#include <torch/library.h>

#include <string>

#include "cell_list.h"

namespace {

constexpr const char* kRegularization =
    "Tensor? recurrent_keep=None, float recurrent_dropout=0., "
    "Tensor? zoneout_keep=None, float zoneout=0., "
    "Tensor? cell_zoneout_keep=None, float cell_zoneout=0.";

constexpr const char* kNorms = ", Tensor? norms=None, float eps=1e-05";

std::string forward_schema(const std::string& name) {
  return name +
         "_layer_forward(Tensor input, Tensor h0, Tensor? c0, Tensor w_ih, "
         "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, "
         "Tensor? batch_sizes, bool reverse, " +
         kRegularization + kNorms +
         ") -> (Tensor output, Tensor h_n, Tensor c_n, Tensor saved, "
         "Tensor cells)";
}

std::string backward_schema(const std::string& name) {
  return name +
         "_layer_backward(Tensor? grad_output, Tensor? grad_h_n, "
         "Tensor? grad_c_n, Tensor input, Tensor h0, Tensor? c0, Tensor w_ih, "
         "Tensor w_hh, Tensor? w_hr, Tensor? batch_sizes, Tensor output, "
         "Tensor saved, Tensor? cells, bool reverse, bool input_grad=True, "
         "bool state_grad=True, " +
         kRegularization + kNorms +
         ") -> (Tensor grad_input, "
         "Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
         "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr, "
         "Tensor grad_norms)";
}

std::string stack_schema(const std::string& name) {
  return name +
         "_stack_forward(Tensor input, Tensor[] hx, Tensor[] weights, "
         "bool has_biases, int num_layers, float dropout, bool train, "
         "bool bidirectional, bool residual, Tensor? batch_sizes) -> "
         "(Tensor output, Tensor[] final_states)";
}

}  // namespace

TORCH_LIBRARY(fusedrnn, m) {
  // A bool mask of `size`, true with probability p, from a one-element
  // int64 seed on the mask's device (core/random_mask.h): the masks of
  // recurrent dropout, zoneout and weight drop.
  m.def("random_mask(Tensor seed, SymInt[] size, float p) -> Tensor");
#define FUSEDRNN_DEFINE_OPS(name, Cell, ...) \
  m.def(forward_schema(#name).c_str());       \
  m.def(backward_schema(#name).c_str());
  FUSEDRNN_FOR_EACH_CELL(FUSEDRNN_DEFINE_OPS)
#undef FUSEDRNN_DEFINE_OPS
#define FUSEDRNN_DEFINE_STACK_OP(name, Cell, ...) \
  m.def(stack_schema(#name).c_str());
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_DEFINE_STACK_OP)
#undef FUSEDRNN_DEFINE_STACK_OP
}
