// The schemas of every fusedrnn op, in one place. Back ends register their
// kernels for these names (cpu/, cuda/); Python registers the fake kernels
// and autograd (fusedrnn/_ops.py).
#include <torch/library.h>

TORCH_LIBRARY(fusedrnn, m) {
  // One LSTM layer in one direction.
  //   input: dense time-major (T, B, I), or packed (rows, I) with
  //          batch_sizes (T,) int64 on the CPU, non-increasing;
  //   h0 (B, P), c0 (B, H); w_ih (4H, I), w_hh (4H, P), biases (4H);
  //   w_hr (P, H) projects h when given (P = H without it).
  // Returns the outputs (T, B, P) or (rows, P), each sequence's final h and
  // c, and what the backward needs: the activated gates (.., 4H) and the
  // cell states (.., H) of every step.
  m.def(
      "lstm_layer_forward(Tensor input, Tensor h0, Tensor c0, Tensor w_ih, "
      "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, "
      "Tensor? batch_sizes, bool reverse) -> "
      "(Tensor output, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  // Exact backpropagation through time for lstm_layer_forward. Missing
  // gradients count as zeros. grad_bias is the gradient of b_ih and of b_hh
  // (they are summed in the forward, so both get the same gradient);
  // grad_w_hr is empty without a projection.
  m.def(
      "lstm_layer_backward(Tensor? grad_output, Tensor? grad_h_n, "
      "Tensor? grad_c_n, Tensor input, Tensor h0, Tensor c0, Tensor w_ih, "
      "Tensor w_hh, Tensor? w_hr, Tensor? batch_sizes, Tensor output, "
      "Tensor gates, Tensor cells, bool reverse) -> (Tensor grad_input, "
      "Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
      "Tensor grad_bias, Tensor grad_w_hr)");

  // One GRU layer in one direction: as the LSTM ops without c and
  // projection; gates (r, z, n). `saved` (.., 4H) holds r, z, n and the
  // recurrent part of n. b_ih and b_hh get different gradients.
  m.def(
      "gru_layer_forward(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, Tensor? batch_sizes, bool reverse) -> "
      "(Tensor output, Tensor h_n, Tensor saved)");
  m.def(
      "gru_layer_backward(Tensor? grad_output, Tensor? grad_h_n, "
      "Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? batch_sizes, Tensor output, Tensor saved, bool reverse) -> "
      "(Tensor grad_input, Tensor grad_h0, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)");

  // One Elman RNN layer in one direction, h' = tanh or relu (relu=True) of
  // the two projections plus biases. `saved` (.., H) holds h'.
  m.def(
      "rnn_layer_forward(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, Tensor? batch_sizes, bool relu, "
      "bool reverse) -> (Tensor output, Tensor h_n, Tensor saved)");
  m.def(
      "rnn_layer_backward(Tensor? grad_output, Tensor? grad_h_n, "
      "Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? batch_sizes, Tensor output, Tensor saved, bool relu, "
      "bool reverse) -> (Tensor grad_input, Tensor grad_h0, "
      "Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias)");
}
