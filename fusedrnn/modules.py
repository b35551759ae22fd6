"""fusedrnn.LSTM, GRU and RNN: drop-in replacements for their torch.nn twins.

Same constructors, parameters, inputs, outputs and errors; the shared
machinery is in rnn_base.py. Keyword arguments beyond torch.nn's, all off
by default (FusedRNNBase's docstring): `residual`, residual connections
between stacked layers, and `recurrent_dropout`, `zoneout`, `cell_zoneout`
(LSTM) and `weight_drop`, regularization inside the recurrence.
"""
from .rnn_base import FusedRNNBase

_NO_PROJECTION = "proj_size argument is only supported for LSTM, not RNN or GRU"


class LstmStates:
    """The LSTM's two states (h, c): their sizes, checks and torch.nn's
    messages, for fusedrnn.LSTM and LayerNormLSTM (mixed in before
    FusedRNNBase, whose single-state versions these replace)."""

    def _state_sizes(self):
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def _states(self, hx):
        return tuple(hx)

    def _hx(self, states):
        return tuple(states)

    def _check_state_dims(self, states, dim):
        h, c = states
        if h.dim() != dim or c.dim() != dim:
            kind = "batched 3-D" if dim == 3 else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx and cx should also be {dim}-D "
                               f"but got ({h.dim()}-D, {c.dim()}-D) tensors")

    def get_expected_cell_size(self, input, batch_sizes):
        hidden = self.get_expected_hidden_size(input, batch_sizes)
        return hidden[:2] + (self.hidden_size,)

    def check_forward_args(self, input, hidden, batch_sizes):
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")

    def permute_hidden(self, hx, permutation):
        if permutation is None:
            return hx
        return tuple(state.index_select(1, permutation) for state in hx)


class LSTM(LstmStates, FusedRNNBase):
    """Drop-in for torch.nn.LSTM, plus `residual=True`: every layer but the
    first adds its input to its output (see FusedRNNBase)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 residual=False, recurrent_dropout=0.0, zoneout=0.0, cell_zoneout=0.0,
                 weight_drop=0.0):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype, residual=residual,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         cell_zoneout=cell_zoneout, weight_drop=weight_drop)


class GRU(FusedRNNBase):
    """Drop-in for torch.nn.GRU, plus `residual=True`: every layer but the
    first adds its input to its output (see FusedRNNBase)."""

    def __init__(self, *args, **kwargs):
        # As nn.GRU: the arguments of nn.LSTM without proj_size.
        if "proj_size" in kwargs:
            raise ValueError(_NO_PROJECTION)
        super().__init__("GRU", *args, **kwargs)


class RNN(FusedRNNBase):
    """Drop-in for torch.nn.RNN: h' = tanh or relu (W_ih x + b_ih + W_hh h + b_hh).
    Plus `residual=True`: every layer but the first adds its input to its
    output (see FusedRNNBase)."""

    _input_error = "{}: Expected input to be 2D or 3D, got {}D tensor instead"

    def __init__(self, *args, **kwargs):
        # As nn.RNN: `nonlinearity` is the 4th positional argument.
        if "proj_size" in kwargs:
            raise ValueError(_NO_PROJECTION)
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, **kwargs)
