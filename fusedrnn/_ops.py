"""Python side of the compiled ops: fake kernels, autograd, layer functions.

The schemas and the CPU kernels live in C++ (csrc/ops/schemas.cpp,
csrc/cpu/). Here each op gets
- a fake kernel, which gives output shapes without computing, so that
  torch.compile and torch.export can trace through the op;
- its autograd formula, which calls the matching backward op.
"""
import functools
from typing import NamedTuple

import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

_ops = torch.ops.fusedrnn


def _saved_dtype(input):
    """The dtype of the per-step values a forward op keeps for its backward
    (gates, cells, saved): the kernels compute float16 and bfloat16 in
    float32 and keep these values in float32; otherwise the input's dtype."""
    if input.dtype in (torch.float16, torch.bfloat16):
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
    # Outputs nothing depends on (y of a many-to-one model, often h_n and
    # c_n) reach the backward as None, not as zero tensors to allocate,
    # fill and add: the backward op takes each gradient as optional.
    ctx.set_materialize_grads(False)


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
#
# The Elman RNN's saved value per unit is h' itself, which is also its
# output (it has no projection): `saved_is_output` keeps only the output for
# the backward and hands it to the backward op as `saved` (in float32 for
# 16-bit input, as the op expects), so the layer keeps what torch.nn keeps
# instead of two copies of h'.
def _register_single_state_op(name, saved_per_unit, saved_is_output=False):
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
        ctx.save_for_backward(input, h0, w_ih, w_hh, batch_sizes, y,
                              None if saved_is_output else saved)
        ctx.flags = flags
        ctx.has_bias = b_ih is not None
        ctx.mark_non_differentiable(saved)
        ctx.set_materialize_grads(False)  # as for the LSTM

    def backward(ctx, grad_y, grad_h_n, _grad_saved):
        input, h0, w_ih, w_hh, batch_sizes, y, saved = ctx.saved_tensors
        if saved_is_output:
            saved = y.to(_saved_dtype(input))
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
_rnn_forward = _register_single_state_op("rnn", saved_per_unit=1, saved_is_output=True)

# Under CPU or CUDA autocast the ops compute in float32 (with autocast off
# inside, so their own multiplies stay float32). The modules use this rule
# on CUDA, casting the results to the autocast dtype as torch.nn returns
# them; on the CPU they cast the inputs to what torch.nn computes in
# themselves and call the ops with autocast off (`dtypes` below).
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

# Devices and dtypes with compiled kernels (the same for every cell). The
# CPU's bfloat16 kernels need AVX512_BF16.
_BUILD = _C.build_info()
_CPU_BFLOAT16 = (torch.bfloat16,) if _BUILD["cpu_bfloat16"] else ()
_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64, *_CPU_BFLOAT16),
                  **({"cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16)}
                     if _BUILD["cuda"] else {})}
# Dtypes the kernels of a device compute in float32 instead (CPU float16,
# and bfloat16 without AVX512_BF16): results come back in the input's
# dtype, as torch.nn returns them.
_FLOAT32_DTYPES = {"cpu": tuple(d for d in (torch.float16, torch.bfloat16)
                                if d not in _CPU_BFLOAT16)}


def kernel_dtype(x, dtype=None):
    """The dtype a fused kernel computes `x` in (or `x` cast to `dtype`), or
    None where only the reference runs."""
    dtype = dtype or x.dtype
    if dtype in _KERNEL_DTYPES.get(x.device.type, ()):
        return dtype
    if dtype in _FLOAT32_DTYPES.get(x.device.type, ()):
        return torch.float32
    return None


# The device types autocast can be enabled on, asked once at import: dynamo
# cannot trace torch.amp.is_autocast_available (torch 2.11), and
# torch.is_autocast_enabled raises for the others (meta).
_AUTOCAST_DEVICES = frozenset(device for device in ("cpu", "cuda", "xpu", "mps", "hpu")
                              if torch.amp.is_autocast_available(device))


def autocast_enabled(device):
    """Whether autocast is on for the device type `device`."""
    return device in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device)


def _follows_cpu_autocast(name, packed, projected):
    """Whether torch.nn computes the layer or cell `name` (its mode, or the
    cell's class name) in the autocast dtype under CPU autocast. It does
    where its ops are on autocast's CPU list: the oneDNN LSTM layer, the
    multiplies of a projected LSTM, of the Elman RNN and of RNNCell. The GRU,
    LSTMCell, GRUCell and a packed LSTM without projection stay in float32;
    so does a projected LSTM's cell state. (torch 2.14;
    test_cpu_autocast_dtype_like_nn compares every case.)"""
    if name == "LSTM":
        return projected or not packed
    return name in ("RNN_TANH", "RNN_RELU", "RNNCell")


class DtypePlan(NamedTuple):
    """How a module runs an input through the kernels (see `dtypes`)."""
    compute: torch.dtype | None  # what the kernels compute in; None: reference
    output: torch.dtype          # what torch.nn returns: output and h
    cell_state: torch.dtype      # what torch.nn returns as the LSTM's c
    autocast_off: bool           # the module casts, the ops run without autocast


def dtypes(x, name, packed=False, projected=False):
    """The DtypePlan of input `x` in the layer or cell `name`. Under CPU
    autocast the module casts every input to the compute dtype itself and
    calls the ops with autocast off, so that bfloat16 runs on the bfloat16
    kernels where torch.nn runs in bfloat16; under CUDA autocast the ops'
    own rule above computes in float32."""
    device = x.device.type
    if not autocast_enabled(device) or x.dtype == torch.float64:
        return DtypePlan(kernel_dtype(x), x.dtype, x.dtype, False)
    if device != "cpu":
        result = torch.get_autocast_dtype(device)
        return DtypePlan(kernel_dtype(x), result, result, False)
    if not _follows_cpu_autocast(name, packed, projected):
        return DtypePlan(kernel_dtype(x), x.dtype, x.dtype, True)
    result = torch.get_autocast_dtype(device)
    return DtypePlan(kernel_dtype(x, result), result,
                     x.dtype if projected else result, True)
