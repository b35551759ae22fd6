"""fusedrnn: fused C++/CUDA recurrent layers as drop-in replacements for torch.nn.

    from fusedrnn import LSTM       # instead of torch.nn.LSTM (likewise GRU, RNN)
    model = fusedrnn.convert(model) # or swap every nn.LSTM of a model

`fusedrnn.reference` holds the pure-PyTorch implementation that every kernel
is tested against and that runs inputs no kernel covers yet.
`LayerNormLSTM` and `LayerNormGRU` are layer-normalized layers with torch.nn's
constructor and contract (for now they run on the reference).
"""
from . import _ops, reference
from ._C import build_info
from .cells import GRUCell, LSTMCell, RNNCell
from .convert import convert, revert
from .layernorm import LayerNormGRU, LayerNormLSTM
from .modules import GRU, LSTM, RNN
from .onnx_export import onnx_translations
# Importing it allowlists the classes above for torch.load(weights_only=True).
from . import serialization  # noqa: F401

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "LayerNormGRU", "LayerNormLSTM", "RNN",
           "RNNCell", "build_info", "convert", "onnx_translations", "reference", "revert"]
__version__ = "0.1.0"
