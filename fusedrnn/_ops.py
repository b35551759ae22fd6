"""Python side of the compiled ops: fake kernels, autograd, the layer function.

The schemas and the kernels live in C++ (csrc/core/schemas.cpp, csrc/cpu/,
csrc/cuda/), one pair of ops per cell of the cell table (cell_table.py).
Here each op gets
- a fake kernel, which gives output shapes without computing, so that
  torch.compile and torch.export can trace through the op;
- its autograd formula, which calls the matching backward op, or, for a
  backward that must itself be differentiable (create_graph=True),
  differentiates fusedrnn.reference instead;
- its autocast rule.
"""
from typing import NamedTuple

import torch

from . import _C  # noqa: F401  (loading the library registers the ops)
from .cell_table import CELLS
from .reference import Regularization

_ops = torch.ops.fusedrnn


def _saved_dtype(input):
    """The dtype of the per-step values a forward op keeps for its backward
    (saved, cells): the kernels compute float16 and bfloat16 in float32 and
    keep these values in float32; otherwise the input's dtype."""
    if input.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return input.dtype


def _not_differentiable(op_name):
    """The autograd formula of a backward op: an error. The forward ops'
    autograd never differentiates a backward op (with create_graph=True it
    differentiates the reference instead, _differentiable_backward), so only
    a direct call of a backward op on tensors that require grad gets here."""
    def backward(ctx, *grads):
        raise RuntimeError(
            f"fusedrnn: {op_name} is not differentiable; differentiate the forward op or "
            "the module instead (their backward supports create_graph=True, so double "
            "backward works there)")

    return backward


def _no_setup(ctx, inputs, output):
    pass


def _differentiable_backward(cell, ctx, grads):
    """The forward op's gradients as a graph autograd can differentiate again:
    the backward of a backward run with create_graph=True (gradient
    penalties, MAML, Hessian-vector products).

    The kernel backward is one opaque op, so instead the layer is run again
    in fusedrnn.reference on the saved inputs and differentiated with
    create_graph=True: the gradients it returns are functions of the inputs,
    the weights and the incoming gradients, built from ordinary torch ops.
    `grads` are the gradients of (y, h_n, c_n); None where nothing depends
    on that output. Returns the gradients of (input, h0, c0, w_ih, w_hh,
    b_ih, b_hh, w_hr) and of the layer norms' packed parameters (`norms`,
    normalized cells; None for the others)."""
    saved_tensors = ctx.saved_tensors
    input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes = saved_tensors[:9]
    norms = saved_tensors[12]
    regularization = _saved_regularization(ctx, saved_tensors)
    plain = 8
    inputs = (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, norms)
    # needs_input_grad covers the arguments the caller passed (a plain
    # cell's caller passes no norms).
    needs_norms = len(ctx.needs_input_grad) > _NORMS_ARG and ctx.needs_input_grad[_NORMS_ARG]
    needed = (*ctx.needs_input_grad[:plain], needs_norms and norms is not None)
    # Saved inputs come back as the very tensors the forward received, with
    # their place in the graph, so the graph built here reaches the user's
    # leaves. Each one that needs a gradient is used through a fresh alias:
    # autograd.grad then returns only the gradient through this layer, even
    # where two inputs share history (an input computed from the weights),
    # whose other paths the outer graph already covers.
    aliases = tuple(t.view_as(t) if need else t for t, need in zip(inputs, needed))
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = aliases[:plain]
    state = (h0, c0) if cell.cell_state else (h0,)
    # A normalized cell's reference takes its norms' gains and biases after
    # the plain weights (the GRU's missing LN_c as None, None): the pieces
    # of the packed `norms`.
    weights = (w_ih, w_hh, b_ih, b_hh, w_hr)
    if cell.norms:
        weights += _unpack_norms(aliases[plain], w_hh.shape[0], w_hh.shape[0] // cell.gates,
                                 cell.norms)
    # The op computed in exactly these dtypes (autocast casts before the
    # autograd node), so the reference runs with autocast off.
    with torch.enable_grad(), torch.autocast(input.device.type, enabled=False):
        y, final = cell.reference_layer(x, state, weights, ctx.reverse, batch_sizes,
                                        regularization, eps=ctx.eps)
    # Outputs whose gradient is None contribute nothing: left out.
    pairs = [(out, grad) for out, grad in zip((y, *final), grads) if grad is not None]
    wanted = [alias for alias, need in zip(aliases, needed) if need]
    if not pairs or not wanted:
        found = (None for _ in needed)
    else:
        found = iter(torch.autograd.grad([out for out, _ in pairs], wanted,
                                         [grad for _, grad in pairs], create_graph=True,
                                         allow_unused=True))
    result = [next(found) if need else None for need in needed]
    return tuple(result[:plain]), result[plain]


# The regularization arguments that follow `reverse` in the forward's
# schema, in order; then the layer norms' `norms` and `eps`.
_REGULARIZATION_ARGS = 6
_NORMS_ARG = 10 + _REGULARIZATION_ARGS


def pack_norms(parameters):
    """The ops' `norms`: the layer norms' gains and biases (LN_ih, LN_hh,
    then LN_c; absent ones None) in one 1-D tensor."""
    return torch.cat([p for p in parameters if p is not None])


def _unpack_norms(norms, width, hidden, count):
    """pack_norms undone, as views of `norms` (so differentiable), padded
    with None to the reference's six (the GRU has no LN_c)."""
    sizes = [width] * 4 + [hidden] * 2 * (count - 2)
    return (*torch.split(norms, sizes), *(None,) * (6 - len(sizes)))


def _regularization_args(reg):
    """A reference.Regularization (or None) as the ops' last arguments."""
    if reg is None:
        return (None, 0.0, None, 0.0, None, 0.0)
    return (reg.recurrent_mask, float(reg.recurrent_dropout), reg.zoneout_mask,
            float(reg.zoneout), reg.cell_zoneout_mask, float(reg.cell_zoneout))


def _saved_regularization(ctx, saved_tensors):
    """The Regularization of the forward, from the masks saved at the end of
    `saved_tensors` (ctx.saved_tensors, read once by the caller: each read
    unpacks every saved tensor again) and the probabilities on ctx; None
    where none acted."""
    masks = saved_tensors[-3:]
    args = (masks[0], ctx.probabilities[0], masks[1], ctx.probabilities[1], masks[2],
            ctx.probabilities[2])
    reg = Regularization(*args)
    return None if reg == Regularization() else reg


def _register(cell):
    """Fake kernels, autograd and autocast of the two ops of `cell` (a row of
    cell_table.CELLS). Every cell's ops share one schema (csrc/core/schemas.cpp):
    c0, c_n and cells are empty for cells without a cell state."""
    forward_name = f"fusedrnn::{cell.name}_layer_forward"
    backward_name = f"fusedrnn::{cell.name}_layer_backward"
    backward_op = getattr(_ops, f"{cell.name}_layer_backward")

    @torch.library.register_fake(forward_name)
    def _forward_fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse,
                      recurrent_keep=None, recurrent_dropout=0.0, zoneout_keep=None, zoneout=0.0,
                      cell_zoneout_keep=None, cell_zoneout=0.0, norms=None, eps=1e-5):
        hidden, out_size = w_hh.shape[0] // cell.gates, w_hh.shape[1]
        rows = input.shape[:-1]  # (T, B) dense, (rows,) packed
        saved_dtype = _saved_dtype(input)
        if cell.cell_state:
            c_n = c0.new_empty(c0.shape)
            cells = input.new_empty(*rows, hidden, dtype=saved_dtype)
        else:
            c_n, cells = input.new_empty(0), input.new_empty(0, dtype=saved_dtype)
        return (input.new_empty(*rows, out_size), h0.new_empty(h0.shape), c_n,
                input.new_empty(*rows, cell.saved * hidden + cell.row_stats, dtype=saved_dtype),
                cells)

    @torch.library.register_fake(backward_name)
    def _backward_fake(grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh, w_hr,
                       batch_sizes, output, saved, cells, reverse, input_grad=True,
                       state_grad=True, recurrent_keep=None, recurrent_dropout=0.0,
                       zoneout_keep=None, zoneout=0.0, cell_zoneout_keep=None,
                       cell_zoneout=0.0, norms=None, eps=1e-5):
        # The kernel returns contiguous gradients whatever the inputs' strides.
        def like(t):
            return t.new_empty(t.shape) if t is not None else input.new_empty(0)

        width = w_hh.shape[0]
        return (like(input if input_grad else None), like(h0 if state_grad else None),
                like(c0 if state_grad else None), like(w_ih), like(w_hh),
                w_hh.new_empty(width), w_hh.new_empty(width if cell.split_recurrent_grad else 0),
                like(w_hr), like(norms))

    def setup_context(ctx, inputs, output):
        input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse = inputs[:10]
        (recurrent_keep, recurrent_dropout, zoneout_keep, zoneout, cell_zoneout_keep,
         cell_zoneout) = inputs[10:_NORMS_ARG]
        norms, eps = inputs[_NORMS_ARG:]
        y, _, c_n, saved, cells = output
        # With zoneout of h the outputs are the zoned h, not the cell's own.
        ctx.saved_is_output = cell.saved_is_output and zoneout_keep is None and zoneout == 0
        # Saved: the outputs (which are the next steps' previous hidden
        # states), the cell's saved values and the cell states of every
        # step; where the saved values are the outputs, only those.
        # The biases only for a differentiable backward, which re-runs the
        # layer (the kernel's backward does not read them).
        # Then the layer norms' parameters (normalized cells), and last the
        # masks (bool: a byte per unit).
        ctx.save_for_backward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, y,
                              None if ctx.saved_is_output else saved,
                              cells if cell.cell_state else None, norms,
                              recurrent_keep, zoneout_keep, cell_zoneout_keep)
        ctx.eps = eps
        ctx.probabilities = (recurrent_dropout, zoneout, cell_zoneout)
        ctx.reverse = reverse
        ctx.has_bias = b_ih is not None
        ctx.mark_non_differentiable(saved, cells)
        if not cell.cell_state:
            ctx.mark_non_differentiable(c_n)
        # Outputs nothing depends on (y of a many-to-one model, often the
        # final states) reach the backward as None, not as zero tensors to
        # allocate, fill and add: the backward op takes each as optional.
        ctx.set_materialize_grads(False)

    def backward(ctx, grad_y, grad_h_n, grad_c_n, _grad_saved, _grad_cells):
        # Grad mode is on inside a backward only under create_graph=True.
        not_inputs = (None,) * (2 + _REGULARIZATION_ARGS)  # batch_sizes, reverse, ...
        if torch.is_grad_enabled():
            plain, norm_grads = _differentiable_backward(cell, ctx, (grad_y, grad_h_n, grad_c_n))
            return (*plain, *not_inputs, norm_grads, None)
        saved_tensors = ctx.saved_tensors
        (input, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes, y, saved, cells, norms,
         *_) = saved_tensors
        if ctx.saved_is_output:
            saved = y.to(_saved_dtype(input))
        needs = ctx.needs_input_grad
        state_grad = needs[1] or needs[2]
        # Below autograd: grad mode is off here, and the backward op's own
        # autograd kernel (register_autograd's, in Python) would only
        # redispatch, a round trip through Python per layer and direction.
        with torch._C._AutoDispatchBelowADInplaceOrView():
            (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
             grad_w_hr, grad_norms) = backward_op(
                grad_y, grad_h_n, grad_c_n if cell.cell_state else None, input, h0, c0, w_ih,
                w_hh, w_hr, batch_sizes, y, saved, cells, ctx.reverse, needs[0], state_grad,
                *_regularization_args(_saved_regularization(ctx, saved_tensors)), norms,
                ctx.eps)
        if not ctx.has_bias:
            grad_b_ih = grad_b_hh = None
        elif not cell.split_recurrent_grad:
            grad_b_hh = grad_b_ih  # the two biases are summed in the forward
        # The input's gradient is skipped where the input needs none (raw
        # features into the first layer), the initial states' where they
        # need none (zeros, or states carried over detached).
        return (grad_input if needs[0] else None, grad_h0 if state_grad else None,
                grad_c0 if cell.cell_state and state_grad else None, grad_w_ih,
                grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr if w_hr is not None else None,
                *not_inputs, grad_norms if cell.norms else None, None)

    torch.library.register_autograd(forward_name, backward, setup_context=setup_context)
    torch.library.register_autograd(backward_name, _not_differentiable(backward_name),
                                    setup_context=_no_setup)
    # Under CPU or CUDA autocast the ops compute in float32 (with autocast
    # off inside, so their own multiplies stay float32). The modules use this
    # rule on CUDA, casting the results to the autocast dtype as torch.nn
    # returns them; on the CPU they cast the inputs to what torch.nn computes
    # in themselves and call the ops with autocast off (`dtypes` below).
    for op_name in (forward_name, backward_name):
        for device in ("cpu", "cuda"):
            torch.library.register_autocast(op_name, device, torch.float32)


for _cell in CELLS.values():
    _register(_cell)


@torch.library.register_fake("fusedrnn::random_mask")
def _random_mask_fake(seed, size, p):
    return seed.new_empty(size, dtype=torch.bool)
# Each cell's forward op, looked up once: a decoding loop calls it per token.
_FORWARD_OPS = {name: getattr(_ops, f"{name}_layer_forward") for name in CELLS}


def kernel_layer(cell, x, state, weights, reverse=False, batch_sizes=None,
                 regularization=None, eps=None):
    """One layer in one direction on the fused kernel of `cell` (a row of
    cell_table.CELLS), behind the layer interface of fusedrnn.reference:
    returns (y, final_state) with final_state (h_n,) or (h_n, c_n). A
    normalized cell's weights are the plain five, then its norms' gains and
    biases (the GRU's absent LN_c None), and it takes layer norm's eps."""
    h0 = state[0]
    c0 = state[1] if cell.cell_state else None
    w_ih, w_hh, b_ih, b_hh, w_hr = weights[:5]
    extra = () if regularization is None else _regularization_args(regularization)
    if cell.norms:
        extra = (*(extra or _regularization_args(None)), pack_norms(weights[5:]), float(eps))
    y, h_n, c_n, _, _ = _FORWARD_OPS[cell.name](x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                                batch_sizes, reverse, *extra)
    return y, ((h_n, c_n) if cell.cell_state else (h_n,))


# nn mode -> the stack op of its cell (csrc/core/stack_op.cpp): a whole
# layer stack in one call, on the layer ops above. Its one overload, so
# that a call skips resolving the overload packet.
STACK_OPS = {cell.mode: getattr(_ops, f"{cell.name}_stack_forward").default
             for cell in CELLS.values() if not cell.norms}


# Devices and dtypes with compiled kernels (the same for every cell). The
# CPU's bfloat16 kernels need AVX512_BF16.
_BUILD = _C.build_info()
_KERNEL_DTYPES = {device: tuple(getattr(torch, name) for name in _BUILD[f"{device}_dtypes"])
                  for device in ("cpu", "cuda") if _BUILD[f"{device}_dtypes"]}
# Dtypes the kernels of a device compute in float32 instead (CPU float16,
# and bfloat16 without AVX512_BF16): results come back in the input's
# dtype, as torch.nn returns them.
_FLOAT32_DTYPES = {"cpu": tuple(d for d in (torch.float16, torch.bfloat16)
                                if d not in _KERNEL_DTYPES["cpu"])}


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
