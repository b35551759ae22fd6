"""Python side of the one-step cell ops: fake kernels, autograd, and the step
the cell modules run.

`fusedrnn::<cell>_cell_step` (csrc/core/cell_schemas.cpp) runs one step of
a cell on the CPU without the layer function: it reads W_ih and W_hh once,
in place, and applies the cell's math to each unit as soon as its gates are
summed (csrc/cpu/cell_step.h). It returns what the layer op would for a
one-step input: h, c, and the values the backward needs (saved, cells).
Its backward is `fusedrnn::<cell>_cell_step_backward`, which for the same
small batches reads W in place too and computes every wanted gradient in one
call (csrc/cpu/cell_step_backward.h), and for larger ones runs the layer's
backward op with one step; under create_graph=True it is the layer's
differentiable backward (_ops._differentiable_backward), which
differentiates fusedrnn.reference.

Where no gradient will be taken, the cells run
`fusedrnn::<cell>_cell_step_inference` instead: the same kernel without
saved and cells, returning only h (and c), since at batch 1 every tensor an
op hands back to Python costs a visible share of the step.

Other devices have no cell-step kernel: there the cells run the layer op
with one step (`step` below).
"""
import torch

from . import _ops
from .cell_table import CELLS

_fusedrnn = torch.ops.fusedrnn


class _LayerContext:
    """A cell step's autograd context as _ops._differentiable_backward reads
    a layer op's: the layer's inputs (a one-step sequence, no projection, no
    packing), which of them need a gradient, and the direction."""

    reverse = False
    probabilities = (0.0, 0.0, 0.0)
    eps = 1e-5  # read only for layer-normalized cells

    def __init__(self, ctx):
        input, h0, c0, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors[:7]
        # In the layer op's order (_ops.py's setup_context): the inputs, then
        # (y, saved, cells), which the differentiable backward does not read,
        # no layer norms and no regularization masks.
        self.saved_tensors = (input.unsqueeze(0), h0, c0, w_ih, w_hh, b_ih, b_hh, None, None,
                              None, None, None, None, None, None, None)
        # (w_hr, which the step does not take, needs none)
        self.needs_input_grad = (*ctx.needs_input_grad[:7], False)


def _register(cell):
    """Fake kernel, autograd and autocast of the cell-step op of `cell` (a row
    of cell_table.CELLS)."""
    name = f"fusedrnn::{cell.name}_cell_step"
    backward_name = f"{name}_backward"
    inference_name = f"{name}_inference"
    backward_op = getattr(_fusedrnn, f"{cell.name}_cell_step_backward")

    @torch.library.register_fake(name)
    def _fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh):
        batch, hidden = input.shape[0], w_hh.shape[0] // cell.gates
        saved_dtype = _ops._saved_dtype(input)
        if cell.cell_state:
            c = input.new_empty(batch, hidden)
            cells = input.new_empty(1, batch, hidden, dtype=saved_dtype)
        else:
            c, cells = input.new_empty(0), input.new_empty(0, dtype=saved_dtype)
        return (input.new_empty(batch, hidden), c,
                input.new_empty(1, batch, cell.saved * hidden, dtype=saved_dtype), cells)

    def setup_context(ctx, inputs, output):
        input, h0, c0, w_ih, w_hh, b_ih, b_hh = inputs
        h, c, saved, cells = output
        # As the layer op's autograd (_ops.py): h is the output (and, for
        # the Elman RNN, the saved values); the biases only for a
        # differentiable backward, which re-runs the step in the reference.
        ctx.save_for_backward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, h,
                              None if cell.saved_is_output else saved,
                              cells if cell.cell_state else None)
        ctx.has_bias = b_ih is not None
        ctx.mark_non_differentiable(saved, cells)
        if not cell.cell_state:
            ctx.mark_non_differentiable(c)
        ctx.set_materialize_grads(False)

    def backward(ctx, grad_h, grad_c, _grad_saved, _grad_cells):
        grad_c = grad_c if cell.cell_state else None
        # Grad mode is on inside a backward only under create_graph=True.
        if torch.is_grad_enabled():
            # (the plain inputs' gradients; a plain cell has no norms)
            grads, _ = _ops._differentiable_backward(cell, _LayerContext(ctx),
                                                     (None, grad_h, grad_c))
            grads = grads[:7]
            input = ctx.saved_tensors[0]
            grad_input = None if grads[0] is None else grads[0].reshape(input.shape)
            return (grad_input, *grads[1:])
        input, h0, c0, w_ih, w_hh, _, _, h, saved, cells = ctx.saved_tensors
        if cell.saved_is_output:
            saved = h.unsqueeze(0).to(_ops._saved_dtype(input))
        needs = ctx.needs_input_grad
        mask = (*needs[:5], ctx.has_bias and (needs[5] or needs[6]))
        # Below autograd: grad mode is off here, and the backward op's own
        # autograd kernel (register_autograd's, in Python) would only
        # redispatch, at about 20 us a call on the test machine.
        with torch._C._AutoDispatchBelowADInplaceOrView():
            grads = backward_op(grad_h, grad_c, input, h0, c0, w_ih, w_hh, h, saved, cells,
                                mask)
        grad_b_ih = grads[5]
        # The two biases are summed in the forward unless the cell splits
        # their gradients.
        grad_b_hh = grads[6] if cell.split_recurrent_grad else grad_b_ih
        return tuple(grad if need else None
                     for grad, need in zip((*grads[:6], grad_b_hh), needs))

    @torch.library.register_fake(inference_name)
    def _inference_fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh):
        h, c, _, _ = _fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return (h, c) if cell.cell_state else h

    @torch.library.register_fake(backward_name)
    def _backward_fake(grad_h, grad_c, input, h0, c0, w_ih, w_hh, h, saved, cells,
                       output_mask):
        # The kernel returns contiguous gradients whatever the inputs' strides.
        def like(t, wanted):
            return t.new_empty(t.shape) if wanted and t is not None else input.new_empty(0)

        width = w_hh.shape[0] if output_mask[5] else 0
        return (like(input, output_mask[0]), like(h0, output_mask[1]), like(c0, output_mask[2]),
                like(w_ih, output_mask[3]), like(w_hh, output_mask[4]), w_hh.new_empty(width),
                w_hh.new_empty(width if cell.split_recurrent_grad else 0))

    torch.library.register_autograd(name, backward, setup_context=setup_context)
    torch.library.register_autograd(backward_name, _ops._not_differentiable(backward_name),
                                    setup_context=_ops._no_setup)
    # (The inference op's autograd kernel is in C++: cell_schemas.cpp.)
    # The layer ops' rule (_ops.py): under CPU autocast the ops compute in
    # float32. (The cells cast their inputs themselves and call the step with
    # autocast off.)
    for op_name in (name, backward_name, inference_name):
        torch.library.register_autocast(op_name, "cpu", torch.float32)

    # The same autograd formula as a plain autograd.Function, for the cells'
    # eager steps that need a gradient: the generic wrapper register_autograd
    # installs re-reads the op's schema on every call (filling in defaults),
    # about 20 us per step on the test machine, and so would a Function with
    # a setup_context of its own (it binds its arguments with inspect); one
    # whose forward takes ctx costs about 4. torch.compile, torch.export,
    # torch.func and direct calls of the op use the registered formula.
    op = getattr(_fusedrnn, f"{cell.name}_cell_step").default

    def forward(ctx, *args):
        with torch._C._AutoDispatchBelowADInplaceOrView():
            output = op(*args)
        setup_context(ctx, args, output)
        return output

    return op, type(f"{cell.name}_cell_step_function", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})


# Each cell's step op and its eager autograd.Function, looked up once: a
# decoding loop calls them per token.
# (The plain cells: layer-normalized ones have no nn cell and no step op.)
_STEP_OPS, _STEP_FUNCTIONS, _INFERENCE_OPS = {}, {}, {}
for _cell in CELLS.values():
    if not _cell.norms:
        _STEP_OPS[_cell.name], _STEP_FUNCTIONS[_cell.name] = _register(_cell)
        _INFERENCE_OPS[_cell.name] = getattr(_fusedrnn,
                                             f"{_cell.name}_cell_step_inference").default


def step(cell, input, states, weights):
    """One step of `cell` (a row of cell_table.CELLS) on the kernels, for a
    batched input (B, I) in a dtype the kernels compute, states (h,) or (h, c)
    and weights (w_ih, w_hh, b_ih, b_hh, w_hr) with w_hr None. Returns the new
    states, (h',) or (h', c')."""
    if not input.is_cpu:
        _, new_states = _ops.kernel_layer(cell, input.unsqueeze(0), states, weights)
        return new_states
    h0 = states[0]
    c0 = states[1] if cell.cell_state else None
    w_ih, w_hh, b_ih, b_hh, _ = weights
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        # The op as registered: its fake kernel and autograd formula.
        h, c, _, _ = _STEP_OPS[cell.name](input, h0, c0, w_ih, w_hh, b_ih, b_hh)
    elif torch.is_grad_enabled() and _any_requires_grad(input, h0, c0, w_ih, w_hh, b_ih, b_hh):
        h, c, _, _ = _STEP_FUNCTIONS[cell.name].apply(input, h0, c0, w_ih, w_hh, b_ih, b_hh)
    else:
        # Nothing to differentiate: the inference op, whose autograd kernel
        # (C++) goes straight on to the CPU kernel.
        new_states = _INFERENCE_OPS[cell.name](input, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return new_states if cell.cell_state else (new_states,)
    return (h, c) if cell.cell_state else (h,)


def _any_requires_grad(input, h0, c0, w_ih, w_hh, b_ih, b_hh):
    return (input.requires_grad or h0.requires_grad or w_ih.requires_grad
            or w_hh.requires_grad or (c0 is not None and c0.requires_grad)
            or (b_ih is not None and (b_ih.requires_grad or b_hh.requires_grad)))
