"""The machinery shared by fusedrnn.LSTM, GRU and RNN.

They subclass nn.RNNBase (not nn.LSTM & co.) so that they inherit the
constructor checks, parameters, state_dict layout and helpers of torch.nn,
while torch.compile treats them as ordinary modules (dynamo refuses nn.LSTM,
nn.GRU and nn.RNN instances unless `allow_rnn` is set). Python keeps the
nn contract (validation, layouts, dtypes); where a fused kernel covers the
input, the cell's stack op (csrc/core/stack_op.cpp) runs every layer and
direction in one call. Otherwise (the reference, the regularization options,
the layer-normalized subclasses) stack.py's run_stack loops over them here,
each (layer, direction) on a fused kernel when one covers the input, else on
the reference implementation.
"""
import functools
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _ops, regularization
from .cell_table import cell_of_mode
from .onnx_export import exporting_to_onnx, nn_forward
from .stack import run_stack


class FusedRNNBase(nn.RNNBase):
    """Subclasses set the error texts of their nn twin; the cell follows from `mode`.

    Beyond torch.nn's arguments, the keyword argument `residual=True` gives
    the stack residual connections: every layer after the first adds its
    input to its output, and that sum is what the next layer receives and,
    for the last layer, what forward returns. The first layer gets none (its
    input has input_size features, not the layer's output size). Dropout
    stays where torch.nn puts it, on every layer's output but the last, and
    that output is the sum: the add comes first, then the dropout, so the
    input a layer adds is the one it received, after the previous layer's
    dropout. Parameters and state_dict are those of torch.nn's twin; the
    default, residual=False, is torch.nn's stack.

    Regularization inside the recurrence, also off by default
    (regularization.py and reference.Regularization say what each does):
    `recurrent_dropout` (one mask per sequence on the h entering W_hh),
    `zoneout` (of h) and `cell_zoneout` (of the LSTM's c), `weight_drop`
    (DropConnect on W_hh, one mask per forward). Each acts in training;
    zoneout also in eval, as its expectation.
    """

    # True on an instance runs the reference even where a kernel covers the
    # input (the benchmark's reference column).
    _force_reference = False
    # Class defaults as well as instance attributes: checkpoints saved
    # before these options existed load without them and mean "off".
    residual = False
    recurrent_dropout = zoneout = cell_zoneout = weight_drop = 0.0
    # Starts torch.nn's "Expected input to be 2D or 3D" error.
    _input_error = "{}: Expected input to be 2D or 3D, got {}D instead"

    def __init__(self, mode, *args, residual=False, recurrent_dropout=0.0, zoneout=0.0,
                 cell_zoneout=0.0, weight_drop=0.0, **kwargs):
        super().__init__(mode, *args, **kwargs)
        self.residual = bool(residual)
        if self.residual:
            self._check_residual_sizes()
        settings = regularization.Settings(recurrent_dropout, zoneout, cell_zoneout, weight_drop)
        regularization.check_settings(settings, has_cell_state=mode == "LSTM")
        # Plain float attributes, as torch.nn keeps `dropout`.
        for name, p in settings._asdict().items():
            setattr(self, name, float(p))

    @property
    def _regularization(self):
        return regularization.Settings(self.recurrent_dropout, self.zoneout, self.cell_zoneout,
                                       self.weight_drop)

    def _check_residual_sizes(self):
        """Layer k > 0 adds its input to its output, so the two must have the
        same number of features. They always do in torch.nn's layout (both
        are D * P: the previous layer's output and this one's); checked on
        the weights anyway, so a mismatch reads as an error, not a
        broadcasting failure in forward."""
        if self.num_layers == 1:
            warnings.warn("residual=True adds each layer's input to its output from the "
                          "second layer on, so with num_layers=1 it changes nothing")
        directions = 2 if self.bidirectional else 1
        for layer in range(1, self.num_layers):
            input_size = getattr(self, f"weight_ih_l{layer}").shape[1]
            output_size = directions * getattr(self, f"weight_hh_l{layer}").shape[1]
            if input_size != output_size:
                raise ValueError(
                    f"residual=True: layer {layer} takes {input_size} input features but "
                    f"returns {output_size} ({directions} direction(s) of "
                    f"{output_size // directions}); a residual connection needs them equal")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The stack ops take torch.nn's weights and run torch.nn's cells; a
        # subclass whose layers take more (the layer norms of layernorm.py)
        # or run otherwise goes through run_stack.
        cls._stack_op_fits = (cls._layer_weights is FusedRNNBase._layer_weights
                              and cls._layer_function is FusedRNNBase._layer_function)

    def extra_repr(self):
        extra = ", residual=True" if self.residual else ""
        for name, p in self._regularization._asdict().items():
            if p > 0:
                extra += f", {name}={p}"
        return super().extra_repr() + extra

    # ---- states: a tuple, h first; LSTM overrides these for (h, c) ----
    def _state_sizes(self):
        return (self.hidden_size,)

    def _states(self, hx):
        return (hx,)

    def _hx(self, states):
        return states[0]

    def _check_state_dims(self, states, dim):
        (h,) = states
        if h.dim() != dim:
            kind = "batched 3-D" if dim == 3 else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx should also be {dim}-D "
                               f"but got {h.dim()}-D tensor")

    # ---- forward ----
    def forward(self, input, hx=None):
        if exporting_to_onnx():
            # ONNX knows torch.nn's recurrent ops, not fusedrnn's (onnx_export.py).
            return nn_forward(self, input, hx)
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = input
            states = self._initial_states(hx, batched=True)
            self._check_forward_args(data, states, batch_sizes)
            if states is not None and sorted_indices is not None:
                states = tuple(s.index_select(1, sorted_indices) for s in states)
            output, final = self._run(data, states, batch_sizes)
            if unsorted_indices is not None:
                final = tuple(s.index_select(1, unsorted_indices) for s in final)
            return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                    self._hx(final))

        if input.dim() not in (2, 3):
            raise ValueError(self._input_error.format(self._error_name(), input.dim()))
        batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not batched:
            input = input.unsqueeze(batch_dim)
        states = self._initial_states(hx, batched)
        self._check_forward_args(input, states, None)
        if input.size(1 - batch_dim) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

        # The kernels and the stack work time-major.
        time_major = input.transpose(0, 1) if self.batch_first else input
        output, final = self._run(time_major, states, None)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(batch_dim)
            final = tuple(s.squeeze(1) for s in final)
        return output, self._hx(final)

    def _error_name(self):
        return self.mode.split("_")[0]  # LSTM, GRU, RNN

    def _initial_states(self, hx, batched):
        """The states as 3-D tensors, or None when hx is not given (zeros:
        the stack op makes its own, _zero_states those of run_stack)."""
        if hx is None:
            return None
        states = self._states(hx)
        self._check_state_dims(states, 3 if batched else 2)
        return states if batched else tuple(s.unsqueeze(1) for s in states)

    def _check_forward_args(self, input, states, batch_sizes):
        """torch.nn's checks of the input and of the given states (states made
        as zeros need none)."""
        if states is None:
            self.check_input(input, batch_sizes)
        else:
            self.check_forward_args(input, self._hx(states), batch_sizes)

    def _zero_states(self, x, batch_sizes):
        """torch.nn's initial states when hx is not given: zeros like x."""
        batch = x.size(1) if batch_sizes is None else int(batch_sizes[0])
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return tuple(torch.zeros(layers, batch, size, dtype=x.dtype, device=x.device)
                     for size in self._state_sizes())

    def _flat_parameters(self):
        """torch.nn's weights in its order, read on every call so that
        torch.func.functional_call and swapped parameters take effect: from
        the parameter dict (nn.Module.__getattr__ costs about a microsecond
        a name, which a batch-1 stream pays per call), through the
        attributes where they are not plain parameters (parametrized,
        weight-normed)."""
        params = self._parameters
        try:
            return [params[name] for name in self._flat_weights_names]
        except KeyError:
            return [getattr(self, name) for name in self._flat_weights_names]

    def _layer_weights(self):
        """Per (layer, direction): (w_ih, w_hh, b_ih, b_hh, w_hr), absent ones None."""
        weights = self._flat_parameters()
        per_layer = 2 + 2 * self.bias + (self.proj_size > 0)
        groups = []
        for start in range(0, len(weights), per_layer):
            group = weights[start:start + per_layer]
            w_ih, w_hh = group[:2]
            b_ih, b_hh = group[2:4] if self.bias else (None, None)
            w_hr = group[-1] if self.proj_size > 0 else None
            groups.append((w_ih, w_hh, b_ih, b_hh, w_hr))
        return groups

    def _layer_function(self, plan):
        """What runs one layer in one direction: the kernel of the module's
        cell, or the reference where none covers the input."""
        cell = cell_of_mode(self.mode)
        if plan.compute is None or self._force_reference:
            return cell.reference_layer
        return functools.partial(_ops.kernel_layer, cell)

    def _regularizer(self, batch_sizes):
        """The stack's per-layer mask drawer (run_stack's `regularize`), or
        None when no regularization acts."""
        settings = self._regularization
        if not settings.any():
            return None
        has_cell_state = self.mode == "LSTM"
        out_size = self.proj_size or self.hidden_size

        def regularize(layer_input):
            return regularization.draw(settings, self.training, layer_input, batch_sizes,
                                       out_size, self.hidden_size, has_cell_state)

        return regularize

    def _run(self, x, states, batch_sizes):
        """The stack on time-major x (or packed data) and the 3-D initial
        states (None: zeros); returns the output and the final states in
        the dtypes torch.nn returns."""
        if self._plain_stack_op(x):
            # The common case without building the dtype plan (a few
            # microseconds of a batch-1 call): a kernel dtype without
            # autocast, computed and returned in x's dtype.
            return self._run_stack_op(x, states, batch_sizes, None, None)
        plan = _ops.dtypes(x, self.mode, packed=batch_sizes is not None,
                           projected=self.proj_size > 0)
        # The dtype to cast the weights to, where the kernels compute in
        # another dtype than the input's or the module casts for autocast.
        cast = plan.compute if plan.autocast_off or plan.compute not in (None, x.dtype) \
            else None
        if cast is not None:
            x = x.to(cast)
            if states is not None:
                states = tuple(s.to(cast) for s in states)
        if self._stack_op_serves() and plan.compute is not None:
            run = self._run_stack_op
        else:
            run = self._run_layers
        if plan.autocast_off:
            with torch.autocast(x.device.type, enabled=False):
                output, final = run(x, states, batch_sizes, plan, cast)
        else:
            output, final = run(x, states, batch_sizes, plan, cast)
        # final is (h_n,) or (h_n, c_n).
        result = (plan.output, plan.cell_state)
        return _as(output, plan.output), tuple(_as(s, d) for s, d in zip(final, result))

    def _stack_op_serves(self):
        """Whether the stack op can run this module's layers: torch.nn's
        cells and weights, the kernels, and no regularization (read from
        the attributes: building the settings tuple costs a microsecond)."""
        return (self._stack_op_fits and not self._force_reference
                and not (self.recurrent_dropout or self.zoneout or self.cell_zoneout
                         or self.weight_drop))

    def _plain_stack_op(self, x):
        """Whether the stack op runs x as it is: what _run decides for a
        kernel dtype without autocast. (Asked in the cheapest terms, which a
        batch-1 call notices: x.device.type builds a torch.device, and
        autocast off on every device is enough to know it is off on x's.)"""
        device = "cpu" if x.is_cpu else x.device.type
        return (x.dtype in _ops._KERNEL_DTYPES.get(device, ())
                and not torch._C._is_any_autocast_enabled() and self._stack_op_serves())

    def _run_stack_op(self, x, states, batch_sizes, plan, cast):
        """Every layer and direction in one call of the cell's stack op."""
        weights = self._flat_parameters()
        if cast is not None:
            weights = [w.to(cast) for w in weights]
        return _ops.STACK_OPS[self.mode](x, states or (), weights, self.bias, self.num_layers,
                                         self.dropout, self.training, self.bidirectional,
                                         self.residual, batch_sizes)

    def _run_layers(self, x, states, batch_sizes, plan, cast):
        """run_stack: each (layer, direction) from Python, on the function
        _layer_function picks, with the regularization masks drawn here."""
        if states is None:
            states = self._zero_states(x, batch_sizes)
        layer = self._layer_function(plan)
        weights = self._layer_weights()
        if self._regularization.weight_drop > 0 and self.training:
            weights = [(w_ih, regularization.drop_weight(w_hh, self._regularization.weight_drop,
                                                         True), *rest)
                       for w_ih, w_hh, *rest in weights]
        if cast is not None:
            weights = [tuple(None if w is None else w.to(cast) for w in group)
                       for group in weights]
        return run_stack(x, states, weights, layer, num_layers=self.num_layers,
                         bidirectional=self.bidirectional, dropout=self.dropout,
                         training=self.training, batch_sizes=batch_sizes,
                         residual=self.residual, regularize=self._regularizer(batch_sizes))


def _as(t, dtype):
    """t in dtype: t itself where it is already (without the call of .to,
    a few microseconds each at batch 1, most calls)."""
    return t if t.dtype == dtype else t.to(dtype)
