// The schemas of every fusedrnn op, in one place. Back ends register their
// kernels for these names (cpu/, cuda/); Python registers the fake kernels
// and autograd (fusedrnn/_ops.py).
#include <torch/library.h>

TORCH_LIBRARY(fusedrnn, m) {
  // One LSTM layer in one direction over a dense, time-major sequence.
  //   input (T, B, I), h0 and c0 (B, H), w_ih (4H, I), w_hh (4H, H), biases (4H).
  // Returns the outputs (T, B, H), the final h and c (B, H), and what the
  // backward needs: the activated gates (T, B, 4H) and cell states (T, B, H).
  m.def(
      "lstm_layer_forward(Tensor input, Tensor h0, Tensor c0, Tensor w_ih, "
      "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, bool reverse) -> "
      "(Tensor output, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  // Exact backpropagation through time for lstm_layer_forward. Missing
  // gradients count as zeros. grad_bias is the gradient of b_ih and of b_hh
  // (they are summed in the forward, so both get the same gradient).
  m.def(
      "lstm_layer_backward(Tensor? grad_output, Tensor? grad_h_n, "
      "Tensor? grad_c_n, Tensor input, Tensor h0, Tensor c0, Tensor w_ih, "
      "Tensor w_hh, Tensor output, Tensor gates, Tensor cells, bool reverse) "
      "-> (Tensor grad_input, Tensor grad_h0, Tensor grad_c0, "
      "Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias)");
}
