"""Swap torch.nn recurrent layers for their fused twins, and back.

The twin shares the very Parameter objects of the module it replaces, so
an optimizer built before the swap keeps updating the live weights, and
nothing is copied or re-initialised.
"""
import warnings

from torch import nn

from .cells import GRUCell, LSTMCell, RNNCell
from .modules import GRU, LSTM, RNN

# nn class -> fused class.
_FUSED_TWIN = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN,
               nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell, nn.RNNCell: RNNCell}
_NN_TWIN = {fused: original for original, fused in _FUSED_TWIN.items()}


def convert(model):
    """Replace every nn.LSTM, nn.GRU and nn.RNN in `model` (or `model` itself)
    by its fusedrnn twin.

    Returns the converted model: the same object, modified in place, unless
    `model` is itself one of those layers. Training mode, device, dtype and parameters
    are kept; a model with nothing to convert comes back unchanged.
    """
    return _swap(model, _FUSED_TWIN)


def revert(model):
    """The inverse of `convert`: fusedrnn layers back to torch.nn ones, e.g.
    for tools that only know torch.nn (TorchScript). (torch.onnx.export
    needs no revert: see onnx_export.py.) A layer with residual=True, or
    with recurrent dropout, zoneout or weight drop, has no torch.nn twin and
    raises a ValueError rather than silently losing them."""
    return _swap(model, _NN_TWIN)


def _swap(module, twins):
    twin_class = twins.get(type(module))
    if twin_class is not None:
        return _twin(module, twin_class)
    for name, child in module.named_children():
        replacement = _swap(child, twins)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


def _twin(module, twin_class):
    """A `twin_class` layer with `module`'s configuration and Parameters."""
    if isinstance(module, nn.RNNCellBase):
        return _cell_twin(module, twin_class)
    if getattr(module, "residual", False):
        raise ValueError(f"fusedrnn.revert: {type(module).__name__}(residual=True) has no "
                         "torch.nn equivalent (torch.nn's stacks have no residual connections)")
    active = [name for name in ("recurrent_dropout", "zoneout", "cell_zoneout", "weight_drop")
              if getattr(module, name, 0) > 0]
    if active:
        raise ValueError(f"fusedrnn.revert: {type(module).__name__}({active[0]}=...) has no "
                         "torch.nn equivalent (torch.nn's layers have no regularization "
                         "inside the recurrence)")
    kwargs = dict(bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                  bidirectional=module.bidirectional, device="meta")
    if module.mode == "LSTM":
        kwargs["proj_size"] = module.proj_size
    if module.mode.startswith("RNN"):
        kwargs["nonlinearity"] = module.nonlinearity
    with warnings.catch_warnings():
        # The constructor repeats the dropout warning the original gave.
        warnings.simplefilter("ignore", UserWarning)
        # Built on the meta device: its own weights are discarded at once.
        twin = twin_class(module.input_size, module.hidden_size, module.num_layers, **kwargs)
    for name in module._flat_weights_names:
        setattr(twin, name, getattr(module, name))
    twin._init_flat_weights()
    twin.train(module.training)
    return twin


def _cell_twin(cell, twin_class):
    """A `twin_class` cell sharing `cell`'s Parameters."""
    kwargs = dict(bias=cell.bias, device="meta")
    if isinstance(cell, nn.RNNCell):
        kwargs["nonlinearity"] = cell.nonlinearity
    twin = twin_class(cell.input_size, cell.hidden_size, **kwargs)
    for name, parameter in cell.named_parameters(recurse=False):
        setattr(twin, name, parameter)
    twin.train(cell.training)
    return twin
