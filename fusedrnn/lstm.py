"""fusedrnn.LSTM: a drop-in replacement for torch.nn.LSTM.

It subclasses nn.RNNBase (not nn.LSTM) so that it inherits the constructor,
parameters, state_dict layout and helpers of torch.nn, while torch.compile
treats it as an ordinary module (dynamo refuses nn.LSTM instances unless
`allow_rnn` is set). Python does the orchestration (validation, layouts,
layers, directions, dropout); each (layer, direction) runs in the fused
kernel when one covers the input, else in the reference implementation.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _ops, reference
from .stack import run_stack


class LSTM(nn.RNNBase):
    """Same constructor, parameters, inputs, outputs and errors as torch.nn.LSTM."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)

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

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = input
            batch = int(batch_sizes[0])
            hx = self._initial_state(data, batch, hx, batched=True)
            self.check_forward_args(data, hx, batch_sizes)
            output, hidden = self._run(data, self.permute_hidden(hx, sorted_indices), batch_sizes)
            return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                    self.permute_hidden(hidden, unsorted_indices))

        if input.dim() not in (2, 3):
            raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
        batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not batched:
            input = input.unsqueeze(batch_dim)
        hx = self._initial_state(input, input.size(batch_dim), hx, batched)
        self.check_forward_args(input, hx, None)
        if input.size(1 - batch_dim) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

        # The kernels and the stack work time-major.
        time_major = input.transpose(0, 1) if self.batch_first else input
        output, hidden = self._run(time_major, hx, None)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(batch_dim)
            hidden = tuple(state.squeeze(1) for state in hidden)
        return output, hidden

    def _initial_state(self, input, batch, hx, batched):
        """The (h0, c0) pair as 3-D tensors: zeros when not given."""
        directions = 2 if self.bidirectional else 1
        if hx is None:
            hidden_size = self.proj_size if self.proj_size > 0 else self.hidden_size
            zeros = dict(dtype=input.dtype, device=input.device)
            return (torch.zeros(self.num_layers * directions, batch, hidden_size, **zeros),
                    torch.zeros(self.num_layers * directions, batch, self.hidden_size, **zeros))
        h0, c0 = hx
        if batched and (h0.dim() != 3 or c0.dim() != 3):
            raise RuntimeError("For batched 3-D input, hx and cx should also be 3-D "
                               f"but got ({h0.dim()}-D, {c0.dim()}-D) tensors")
        if not batched:
            if h0.dim() != 2 or c0.dim() != 2:
                raise RuntimeError("For unbatched 2-D input, hx and cx should also be 2-D "
                                   f"but got ({h0.dim()}-D, {c0.dim()}-D) tensors")
            return h0.unsqueeze(1), c0.unsqueeze(1)
        return h0, c0

    def _layer_weights(self):
        """Per (layer, direction): (w_ih, w_hh, b_ih, b_hh, w_hr), absent ones None.

        Read through getattr on every call so that torch.func.functional_call
        and swapped parameters take effect.
        """
        weights = [getattr(self, name) for name in self._flat_weights_names]
        per_layer = 2 + 2 * self.bias + (self.proj_size > 0)
        groups = []
        for start in range(0, len(weights), per_layer):
            group = weights[start:start + per_layer]
            w_ih, w_hh = group[:2]
            b_ih, b_hh = group[2:4] if self.bias else (None, None)
            w_hr = group[-1] if self.proj_size > 0 else None
            groups.append((w_ih, w_hh, b_ih, b_hh, w_hr))
        return groups

    def _run(self, x, hx, batch_sizes):
        covered = _ops.lstm_kernel_covers(x)
        output, hidden = run_stack(
            x, hx, self._layer_weights(),
            _ops.lstm_layer if covered else reference.lstm_layer,
            num_layers=self.num_layers, bidirectional=self.bidirectional,
            dropout=self.dropout, training=self.training, batch_sizes=batch_sizes)
        if torch.is_autocast_enabled(x.device.type):
            # nn.LSTM returns the autocast dtype; the kernels computed in fp32.
            dtype = torch.get_autocast_dtype(x.device.type)
            output, hidden = output.to(dtype), tuple(state.to(dtype) for state in hidden)
        return output, hidden
