"""fusedrnn.LayerNormLSTM and LayerNormGRU: layer-normalized recurrent layers
(Ba et al. 2016, the formulation of haste's LayerNormLSTM) with torch.nn's
constructors and forward contract.

    LSTM: pre = LN_ih(W_ih x + b_ih) + LN_hh(W_hh h + b_hh)     (each over the 4H row)
          c' = f * c + i * g;  h' = o * tanh(LN_c(c'))            (W_hr (.) with proj_size)
    GRU:  gx = LN_ih(W_ih x + b_ih), gh = LN_hh(W_hh h + b_hh)   (each over the 3H row)
          r, z = sigmoid(gx + gh);  n = tanh(gx_n + r * gh_n);  h' = (1 - z) * n + z * h

fusedrnn.reference.layernorm_lstm_cell / layernorm_gru_cell hold the exact
math. Where a fused kernel covers the input (fusedrnn's kernel dtypes: the
cell rows layernorm_lstm / layernorm_gru of cell_table.py), it runs, forward
and backward; the reference runs everywhere else, and where
`_force_reference` is set.

Parameters: torch.nn's, with its names, shapes, order and initialisation,
then per layer k and direction suffix s ('' or '_reverse'), in torch.nn's
(layer, direction) order:
    layernorm_ih_weight_l{k}{s}, layernorm_ih_bias_l{k}{s}      (G*H)
    layernorm_hh_weight_l{k}{s}, layernorm_hh_bias_l{k}{s}      (G*H)
    layernorm_cell_weight_l{k}{s}, layernorm_cell_bias_l{k}{s}  (H, LSTM only)
gains initialised to 1, biases to 0. They are ordinary Parameters, not in
nn.RNNBase's _flat_weights_names / _all_weights, so torch.nn's machinery
(flatten_parameters, _apply, pickling) sees exactly the layer it knows, and
a torch.nn state_dict loads with strict=False (and the other way round).
"""
import functools
import math
import numbers

import torch
from torch import nn

from . import _ops, reference
from .cell_table import CELLS
from .modules import LstmStates
from .onnx_export import exporting_to_onnx
from .rnn_base import FusedRNNBase

_DEFAULT_EPS = 1e-5
_NO_PROJECTION = "proj_size argument is only supported for LSTM, not RNN or GRU"


class _LayerNormRNNBase(FusedRNNBase):
    """What LayerNormLSTM and LayerNormGRU share: the layer-norm Parameters,
    their initialisation, and handing them to the reference layer."""

    # The normalizations of one (layer, direction), in parameter order.
    _norms = ("ih", "hh")
    # Class default as well as instance attribute.
    layernorm_eps = _DEFAULT_EPS

    def __init__(self, mode, *args, layernorm_eps=_DEFAULT_EPS, **kwargs):
        if (not isinstance(layernorm_eps, numbers.Real) or isinstance(layernorm_eps, bool)
                or not 0 < layernorm_eps < math.inf):
            raise ValueError(f"layernorm_eps must be a positive finite number, "
                             f"got {layernorm_eps!r}")
        super().__init__(mode, *args, **kwargs)
        if mode != "LSTM" and self.proj_size:
            # proj_size reached nn.RNNBase positionally, as it does in nn.GRU.
            raise ValueError(_NO_PROJECTION)
        self.layernorm_eps = float(layernorm_eps)
        # After nn.RNNBase's Parameters, so the state_dict holds torch.nn's
        # keys first, in torch.nn's order, then these.
        like = self.weight_ih_l0
        for group in self._layernorm_names():
            for name in group:
                size = self.hidden_size if name.startswith("layernorm_cell") else like.shape[0]
                fill = torch.ones if "_weight_" in name else torch.zeros
                setattr(self, name, nn.Parameter(fill(size, dtype=like.dtype,
                                                      device=like.device)))

    def _layernorm_names(self):
        """Per (layer, direction), index layer * D + direction: the names of its
        layer-norm Parameters (gain, bias per normalization)."""
        groups = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse") if self.bidirectional else ("",):
                groups.append([f"layernorm_{norm}_{kind}_l{layer}{suffix}"
                               for norm in self._norms for kind in ("weight", "bias")])
        return groups

    def reset_parameters(self):
        """torch.nn's initialisation for torch.nn's Parameters (uniform in
        +-1/sqrt(H), in torch.nn's order, so the same seed gives torch.nn's
        weights), gains 1 and biases 0 for the layer norms."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with torch.no_grad():
            for name in self._flat_weights_names:
                nn.init.uniform_(getattr(self, name), -stdv, stdv)
            # nn.RNNBase.__init__ calls this before the layer norms exist.
            for group in self._layernorm_names():
                for name in group:
                    parameter = getattr(self, name, None)
                    if parameter is not None:
                        parameter.fill_(1.0 if "_weight_" in name else 0.0)

    def _layer_weights(self):
        """Per (layer, direction): torch.nn's five weights, then
        (ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b), the GRU's last
        two None. Read through getattr on every call, as FusedRNNBase's."""
        padding = (None,) * (6 - 2 * len(self._norms))
        return [plain + tuple(getattr(self, name) for name in names) + padding
                for plain, names in zip(super()._layer_weights(), self._layernorm_names(),
                                        strict=True)]

    def _layer_function(self, plan):
        """The fused kernel where one covers the input (plan.compute), else,
        or with _force_reference, the reference; plan sets the dtypes either
        way (float16 on the CPU computed in float32, ...)."""
        if plan.compute is None or self._force_reference:
            return functools.partial(self._reference_layer, eps=self.layernorm_eps)
        return functools.partial(_ops.kernel_layer, CELLS[self._cell_name],
                                 eps=self.layernorm_eps)

    def forward(self, input, hx=None):
        if exporting_to_onnx():
            # FusedRNNBase would export torch.nn's forward, which has no layer norms.
            raise RuntimeError(
                f"fusedrnn: {type(self).__name__} cannot be exported to ONNX: ONNX has no "
                "layer-normalized recurrent operator and torch.nn no such layer to export "
                "it as")
        return super().forward(input, hx)

    def extra_repr(self):
        extra = super().extra_repr()
        if self.layernorm_eps != _DEFAULT_EPS:
            extra += f", layernorm_eps={self.layernorm_eps}"
        return extra


class LayerNormLSTM(LstmStates, _LayerNormRNNBase):
    """A layer-normalized LSTM with torch.nn.LSTM's arguments, inputs and
    outputs (proj_size included), plus keyword-only `layernorm_eps` (default
    1e-5) and FusedRNNBase's `residual`, `recurrent_dropout`, `zoneout`,
    `cell_zoneout` and `weight_drop`. The returned c_n is c itself, not
    normalized. See the top of this file for the math and the Parameters."""

    _norms = ("ih", "hh", "cell")
    _reference_layer = staticmethod(reference.layernorm_lstm_layer)
    _cell_name = "layernorm_lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 layernorm_eps=_DEFAULT_EPS, residual=False, recurrent_dropout=0.0,
                 zoneout=0.0, cell_zoneout=0.0, weight_drop=0.0):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype,
                         layernorm_eps=layernorm_eps, residual=residual,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         cell_zoneout=cell_zoneout, weight_drop=weight_drop)


class LayerNormGRU(_LayerNormRNNBase):
    """A layer-normalized GRU with torch.nn.GRU's arguments, inputs and
    outputs, plus keyword-only `layernorm_eps` (default 1e-5) and
    FusedRNNBase's `residual`, `recurrent_dropout`, `zoneout` and
    `weight_drop`. See the top of this file for the math and the Parameters."""

    _reference_layer = staticmethod(reference.layernorm_gru_layer)
    _cell_name = "layernorm_gru"

    def __init__(self, *args, layernorm_eps=_DEFAULT_EPS, **kwargs):
        # As nn.GRU: the arguments of nn.LSTM without proj_size.
        if "proj_size" in kwargs:
            raise ValueError(_NO_PROJECTION)
        super().__init__("GRU", *args, layernorm_eps=layernorm_eps, **kwargs)
