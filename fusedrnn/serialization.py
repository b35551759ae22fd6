"""Whole-model checkpoints: torch.save(model) and a plain torch.load(path).

torch.load defaults to weights_only=True (torch >= 2.6), whose unpickler
rebuilds only tensors, plain Python data and the classes on its allowlist.
fusedrnn's layers and cells hold nothing else (their layer functions are
looked up by mode in cell_table.py), so allowlisting the classes
themselves is enough: a fusedrnn module is rebuilt from its attributes
without running any code of ours beyond its class's own construction.

Importing fusedrnn registers them. torch's own classes (nn.Sequential,
nn.Linear, ...) and a model's own classes are not on torch's allowlist;
add them with torch.serialization.add_safe_globals, or load a state_dict.
"""
import torch

from .cells import GRUCell, LSTMCell, RNNCell
from .layernorm import LayerNormGRU, LayerNormLSTM
from .modules import GRU, LSTM, RNN

SAFE_CLASSES = (LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell, LayerNormLSTM, LayerNormGRU)

torch.serialization.add_safe_globals(list(SAFE_CLASSES))
