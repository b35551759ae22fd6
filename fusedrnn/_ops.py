"""Python side of the compiled ops: fake kernels, autograd, layer functions.

The schemas and the CPU kernels live in C++ (csrc/ops/schemas.cpp,
csrc/cpu/). Here each op gets
- a fake kernel, which gives output shapes without computing, so that
  torch.compile and torch.export can trace through the op;
- its autograd formula, which calls the matching backward op.
"""
import functools

import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

_ops = torch.ops.fusedrnn


def _saved_dtype(input):
    """The dtype of the per-step values a forward op keeps for its backward
    (gates, cells, saved): the CUDA kernels compute float16 and bfloat16 in
    float32 and keep these values in float32; otherwise the input's dtype."""
    if input.device.type == "cuda" and input.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return input.dtype


@torch.library.register_fake("fusedrnn::lstm_layer_forward")
def _lstm_layer_forward_fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes,
                             reverse):
    hidden, out_size = w_hh.shape[0] // 4, w_hh.shape[1]
    rows = input.shape[:-1]  # (T, B) dense, (rows,) packed
    return (
        input.new_empty(*rows, out_size),
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
        input.new_empty(*rows, 4 * hidden, dtype=_saved_dtype(input)),
        input.new_empty(*rows, hidden, dtype=_saved_dtype(input)),
    )


@torch.library.register_fake("fusedrnn::lstm_layer_backward")
def _lstm_layer_backward_fake(grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh,
                              w_hr, batch_sizes, output, gates, cells, reverse):
    # The kernel returns contiguous gradients whatever the inputs' strides.
    return tuple(t.new_empty(t.shape) for t in (input, h0, c0, w_ih, w_hh)) + (
        w_hh.new_empty(w_hh.shape[0]),
        w_hh.new_empty(w_hr.shape if w_hr is not None else (0,)),
    )


def _lstm_layer_setup_context(ctx, inputs, output):
    input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse = inputs
    y, _, _, gates, cells = output
    # Saved: the activated gates and cell states of every step plus the
    # outputs (which are the next steps' previous hidden states). The
    # backward recomputes only tanh(c).
    ctx.save_for_backward(input, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, gates, cells)
    ctx.reverse = reverse
    ctx.has_bias = b_ih is not None
    ctx.mark_non_differentiable(gates, cells)


def _lstm_layer_backward(ctx, grad_y, grad_h_n, grad_c_n, _grad_gates, _grad_cells):
    input, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, gates, cells = ctx.saved_tensors
    grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr = (
        _ops.lstm_layer_backward(grad_y, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh,
                                 w_hr, batch_sizes, y, gates, cells, ctx.reverse))
    grad_b = grad_bias if ctx.has_bias else None
    grad_w_hr = grad_w_hr if w_hr is not None else None
    return (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b, grad_b, grad_w_hr,
            None, None)


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        "fusedrnn: double backward through the recurrent kernels is not supported; "
        "use fusedrnn.reference for higher-order gradients")


def _no_double_backward_setup(ctx, inputs, output):
    pass


torch.library.register_autograd(
    "fusedrnn::lstm_layer_forward", _lstm_layer_backward,
    setup_context=_lstm_layer_setup_context)
torch.library.register_autograd(
    "fusedrnn::lstm_layer_backward", _no_double_backward,
    setup_context=_no_double_backward_setup)



# GRU and Elman RNN ops: the same shape as the LSTM ops without c and
# projection, so one registration serves both. Their trailing flags are
# (reverse,) for the GRU and (relu, reverse) for the RNN.
def _register_single_state_op(name, saved_per_unit):
    forward_op = getattr(_ops, f"{name}_layer_forward")
    backward_op = getattr(_ops, f"{name}_layer_backward")

    @torch.library.register_fake(f"fusedrnn::{name}_layer_forward")
    def _forward_fake(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, *flags):
        hidden = w_hh.shape[1]
        rows = input.shape[:-1]
        return (input.new_empty(*rows, hidden), h0.new_empty(h0.shape),
                input.new_empty(*rows, saved_per_unit * hidden, dtype=_saved_dtype(input)))

    @torch.library.register_fake(f"fusedrnn::{name}_layer_backward")
    def _backward_fake(grad_output, grad_h_n, input, h0, w_ih, w_hh, batch_sizes, output,
                       saved, *flags):
        biases = 2 if name == "gru" else 1  # the RNN's two biases share one gradient
        return tuple(t.new_empty(t.shape) for t in (input, h0, w_ih, w_hh)) + tuple(
            w_hh.new_empty(w_hh.shape[0]) for _ in range(biases))

    def setup_context(ctx, inputs, output):
        input, h0, w_ih, w_hh, b_ih, _, batch_sizes, *flags = inputs
        y, _, saved = output
        ctx.save_for_backward(input, h0, w_ih, w_hh, batch_sizes, y, saved)
        ctx.flags = flags
        ctx.has_bias = b_ih is not None
        ctx.mark_non_differentiable(saved)

    def backward(ctx, grad_y, grad_h_n, _grad_saved):
        input, h0, w_ih, w_hh, batch_sizes, y, saved = ctx.saved_tensors
        grads = backward_op(grad_y, grad_h_n, input, h0, w_ih, w_hh, batch_sizes, y, saved,
                            *ctx.flags)
        grad_b_ih, grad_b_hh = (grads[4], grads[-1]) if ctx.has_bias else (None, None)
        return (*grads[:4], grad_b_ih, grad_b_hh, None) + (None,) * len(ctx.flags)

    torch.library.register_autograd(f"fusedrnn::{name}_layer_forward", backward,
                                    setup_context=setup_context)
    torch.library.register_autograd(f"fusedrnn::{name}_layer_backward", _no_double_backward,
                                    setup_context=_no_double_backward_setup)
    return forward_op


_gru_forward = _register_single_state_op("gru", saved_per_unit=4)
_rnn_forward = _register_single_state_op("rnn", saved_per_unit=1)

# Under CPU or CUDA autocast the kernels compute in float32 (with autocast
# off inside, so their own multiplies stay float32); the modules then cast
# their results to the autocast dtype, as torch.nn returns them.
for _cell in ("lstm", "gru", "rnn"):
    for _direction in ("forward", "backward"):
        for _device in ("cpu", "cuda"):
            torch.library.register_autocast(f"fusedrnn::{_cell}_layer_{_direction}",
                                            _device, torch.float32)


def lstm_layer(x, state, weights, reverse=False, batch_sizes=None):
    """The fused LSTM kernel behind the layer interface of `reference.lstm_layer`."""
    h0, c0 = state
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    y, h_n, c_n, _, _ = _ops.lstm_layer_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                                batch_sizes, reverse)
    return y, (h_n, c_n)


def gru_layer(x, state, weights, reverse=False, batch_sizes=None):
    """The fused GRU kernel behind the layer interface of `reference.gru_layer`."""
    w_ih, w_hh, b_ih, b_hh, _ = weights
    y, h_n, _ = _gru_forward(x, state[0], w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse)
    return y, (h_n,)


def _rnn_layer(relu, x, state, weights, reverse=False, batch_sizes=None):
    w_ih, w_hh, b_ih, b_hh, _ = weights
    y, h_n, _ = _rnn_forward(x, state[0], w_ih, w_hh, b_ih, b_hh, batch_sizes, relu, reverse)
    return y, (h_n,)


rnn_tanh_layer = functools.partial(_rnn_layer, False)
rnn_relu_layer = functools.partial(_rnn_layer, True)

# Devices and dtypes with compiled kernels (the same for every cell).
_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64),
                  **({"cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16)}
                     if _C.build_info()["cuda"] else {})}
# Dtypes the kernels of a device compute in float32 instead (CPU float16
# and bfloat16: no 16-bit CPU kernel yet): results come back in the input's
# dtype, as torch.nn returns them.
_FLOAT32_DTYPES = {"cpu": (torch.float16, torch.bfloat16)}


def kernel_dtype(x):
    """The dtype a fused kernel computes `x` in, or None where only the
    reference runs."""
    if x.dtype in _KERNEL_DTYPES.get(x.device.type, ()):
        return x.dtype
    if x.dtype in _FLOAT32_DTYPES.get(x.device.type, ()):
        return torch.float32
    return None


def result_dtype(x):
    """The dtype torch.nn returns for input `x`: the autocast dtype under
    autocast (the kernels compute in float32 there), else x's own."""
    device = x.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype
