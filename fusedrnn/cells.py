"""fusedrnn.LSTMCell, GRUCell and RNNCell: one-step drop-ins for the nn cells.

For decoding loops that call one step at a time from Python. On the CPU a
step runs its own kernel, which reads the weights once in place and applies
the cell's math as each unit's gates are summed (_cell_ops.py); on other
devices the layer kernel with a single time step. Either way the gate math
is the sequence layers' own (csrc/cells/). They subclass their nn twins,
inheriting the constructor, parameters and initialisation.
"""
import torch
from torch import nn

from . import _cell_ops, _ops
from .cell_table import CELLS
from .onnx_export import exporting_to_onnx, nn_forward


# torch's names of the dtypes in its "must have the same dtype" message.
_DTYPE_NAMES = {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half",
                torch.bfloat16: "BFloat16"}


def _check_step(input, states, weight, input_size, hidden_size):
    """torch.nn's own checks of one cell step, with its messages."""
    if input.dtype != weight.dtype and not _ops.autocast_enabled(input.device.type):
        # nn's cells fail in their first matmul.
        names = [_DTYPE_NAMES.get(t.dtype, str(t.dtype)) for t in (input, weight)]
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {names[0]} "
                           f"and {names[1]}")
    if input.size(1) != input_size:
        raise RuntimeError(
            f"input has inconsistent input_size: got {input.size(1)} expected {input_size}")
    for index, state in enumerate(states):
        if state.size(0) != input.size(0):
            raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{index} "
                               f"batch size {state.size(0)}")
        if state.size(1) != hidden_size:
            raise RuntimeError(f"hidden{index} has inconsistent hidden_size: "
                               f"got {state.size(1)}, expected {hidden_size}")


def _step(cell, input, hx, name, kind):
    """One step of the nn cell module `cell`, whose row in the cell table is
    `kind`: batching, default state, checks, then the kernel (or the
    reference where no kernel covers the input)."""
    if exporting_to_onnx():
        # ONNX knows torch.nn's cell ops, not fusedrnn's (onnx_export.py).
        return nn_forward(cell, input, hx)
    state_count = 2 if kind.cell_state else 1
    if input.dim() not in (1, 2):
        raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
    states = None if hx is None else (tuple(hx) if state_count == 2 else (hx,))
    if states is not None:
        for index, state in enumerate(states):
            if state.dim() not in (1, 2):
                what = f"hx[{index}]" if state_count == 2 else "hidden"
                raise ValueError(f"{name}: Expected {what} to be 1D or 2D, "
                                 f"got {state.dim()}D instead")
    batched = input.dim() == 2
    if not batched:
        input = input.unsqueeze(0)
    if states is None:
        zeros = torch.zeros(input.size(0), cell.hidden_size, dtype=input.dtype,
                            device=input.device)
        states = (zeros,) * state_count
    elif not batched:
        states = tuple(state.unsqueeze(0) for state in states)
    weights = _parameters(cell)
    expected = (input.shape[0], cell.hidden_size)
    if not (input.dtype == weights[0].dtype and input.shape[1] == cell.input_size
            and states[0].shape == expected
            and (state_count == 1 or states[1].shape == expected)):
        # (The checks one by one, for nn's message, only when one fails:
        # they cost a few microseconds per token.)
        _check_step(input, states, weights[0], cell.input_size, cell.hidden_size)

    if (input.is_cpu and input.dtype in _ops._KERNEL_DTYPES.get("cpu", ())
            and not torch._C._is_any_autocast_enabled()):
        # What _ops.dtypes plans without autocast on a kernel dtype, without
        # building the plan: the kernel computes in the input's dtype and
        # returns its results in it. (Autocast off on every device is the
        # cheaper question to ask per token.)
        new_states = _cell_ops.step(kind, input, states, weights)
    else:
        new_states = _step_in(kind, input, states, weights, name)
    if not batched:
        new_states = tuple(state.squeeze(0) for state in new_states)
    return new_states if state_count == 2 else new_states[0]


def _step_in(kind, input, states, weights, name):
    """_step's kernel or reference call for every dtype plan (_ops.dtypes):
    the casts, autocast, and the results in torch.nn's dtype."""
    compute_dtype, result_dtype, _, autocast_off = _ops.dtypes(input, name)
    if compute_dtype is None:
        new_states = kind.reference_cell(input, states, weights)
    else:
        if autocast_off or compute_dtype != input.dtype:
            # (Only then: a decoding loop calls this per token, and even a
            # no-op .to() costs about a microsecond.)
            def cast(t):
                return None if t is None else t.to(compute_dtype)

            input = cast(input)
            states, weights = tuple(map(cast, states)), tuple(map(cast, weights))
        if autocast_off:
            with torch.autocast(input.device.type, enabled=False):
                new_states = _cell_ops.step(kind, input, states, weights)
        else:
            new_states = _cell_ops.step(kind, input, states, weights)
    if any(state.dtype != result_dtype for state in new_states):
        new_states = tuple(state.to(result_dtype) for state in new_states)
    return new_states


def _parameters(cell):
    """(weight_ih, weight_hh, bias_ih, bias_hh, None) of the cell, from its
    parameter dict: nn.Module.__getattr__ would find them there at about a
    microsecond a name (on the test machine). Through the attributes where
    they are not plain parameters (parametrized, weight-normed)."""
    params = cell._parameters
    try:
        return (params["weight_ih"], params["weight_hh"], params["bias_ih"],
                params["bias_hh"], None)
    except KeyError:
        return (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, None)


class LSTMCell(nn.LSTMCell):
    """Drop-in for torch.nn.LSTMCell: returns (h', c')."""

    def forward(self, input, hx=None):
        return _step(self, input, hx, "LSTMCell", CELLS["lstm"])


class GRUCell(nn.GRUCell):
    """Drop-in for torch.nn.GRUCell: returns h'."""

    def forward(self, input, hx=None):
        return _step(self, input, hx, "GRUCell", CELLS["gru"])


class RNNCell(nn.RNNCell):
    """Drop-in for torch.nn.RNNCell: returns h' = tanh or relu of the sum."""

    def forward(self, input, hx=None):
        return _step(self, input, hx, "RNNCell", CELLS[f"rnn_{self.nonlinearity}"])
