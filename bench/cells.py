"""The recurrent cells under benchmark: one entry of CELLS per cell.

An entry names the torch.nn module, its one-step twin (nn.LSTMCell...) and
its row of fusedrnn's cell table (whose gate count sets the FLOP count);
fusedrnn.convert gives the fused twin of either. The rest of the suite reads
this table only.
"""
import copy
from dataclasses import dataclass

from torch import nn

import fusedrnn
from fusedrnn.cell_table import CELLS as CELL_TABLE


@dataclass(frozen=True)
class Cell:
    name: str
    torch_cls: type            # e.g. nn.LSTM
    step_cls: type             # its one-step module, e.g. nn.LSTMCell
    gates: int                 # gate blocks per step: 4 LSTM, 3 GRU, 1 RNN
    has_proj: bool             # whether the cell takes proj_size (LSTM only)
    # Sizes of the default grid, None for all: the GRU and RNN run where
    # their targets are set, to keep the default grid near ten minutes.
    grid_sizes: tuple = None


CELLS = {
    "lstm": Cell("lstm", nn.LSTM, nn.LSTMCell, CELL_TABLE["lstm"].gates, has_proj=True),
    "gru": Cell("gru", nn.GRU, nn.GRUCell, CELL_TABLE["gru"].gates, has_proj=False,
                grid_sizes=("medium", "fastrnns")),
    "rnn": Cell("rnn", nn.RNN, nn.RNNCell, CELL_TABLE["rnn_tanh"].gates, has_proj=False,
                grid_sizes=("medium", "fastrnns")),
}


def fused_twin(module):
    """The fusedrnn replacement of a torch.nn recurrent module, with a copy
    of its weights (so that the two train independently)."""
    return fusedrnn.convert(copy.deepcopy(module))


def reference_twin(module):
    """The fusedrnn module with its kernel bypassed: every input runs the
    pure-PyTorch reference, through the module's own input handling."""
    fused = fused_twin(module)
    fused._force_reference = True
    return fused
