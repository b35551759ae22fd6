"""The one Python table of recurrent cells.

Each row is a cell of csrc/core/cell_list.h, under the same name: its ops are
torch.ops.fusedrnn.<name>_layer_forward and _backward. The C++ facts of a
cell (gates, saved values per unit, cell state, whether the recurrent side
gets its own gradient) come from `build_info()["cells"]`; this table adds
only what Python alone knows, and is checked against build_info at import.
The ops' fake kernels and autograd (_ops.py), the modules, the cells and the
benchmark all read it.
"""
import functools
from typing import Callable, NamedTuple

from . import _C, reference


class Cell(NamedTuple):
    name: str                  # the ops' prefix, as in csrc/core/cell_list.h
    mode: str                  # torch.nn.RNNBase.mode of the layer
    reference_cell: Callable   # one step in fusedrnn.reference
    # The saved values per unit are h' itself (the Elman RNN): the autograd
    # context keeps the output only, not a second copy.
    saved_is_output: bool = False
    # Facts from build_info()["cells"][name], filled in below.
    gates: int = 0             # W_ih and W_hh are gates * H rows tall
    saved: int = 0             # values per unit kept for the backward
    cell_state: bool = False   # carries c (LSTM): takes c0, returns c_n
    split_recurrent_grad: bool = False  # b_hh gets its own gradient
    # Layer norms (cells with a row stage): normalizations, each with a gain
    # and a bias that the ops take in `norms` (0: a plain cell); per-row
    # statistics kept after the saved values (saved rows are
    # saved * H + row_stats wide).
    norms: int = 0
    row_stats: int = 0

    def reference_layer(self, x, state, weights, reverse=False, batch_sizes=None,
                        regularization=None, eps=None):
        """One layer in one direction in fusedrnn.reference (its layer interface).
        A normalized cell's weights are the plain five, then its norms' gains
        and biases (reference.layernorm_lstm_cell's 11-tuple), and it takes
        layer norm's eps."""
        cell = self.reference_cell
        if self.norms:
            cell = functools.partial(cell, eps=eps)
        return reference.recurrent_layer(cell, x, state, weights, reverse, batch_sizes,
                                         regularization)


_ROWS = (
    Cell("lstm", "LSTM", reference.lstm_cell),
    Cell("gru", "GRU", reference.gru_cell),
    Cell("rnn_tanh", "RNN_TANH", reference.rnn_tanh_cell, saved_is_output=True),
    Cell("rnn_relu", "RNN_RELU", reference.rnn_relu_cell, saved_is_output=True),
    # fusedrnn.LayerNormLSTM / LayerNormGRU (layernorm.py); their mode is
    # the plain cell's, so BY_MODE leaves them out.
    Cell("layernorm_lstm", "LSTM", reference.layernorm_lstm_cell),
    Cell("layernorm_gru", "GRU", reference.layernorm_gru_cell),
)


def _with_build_facts(rows, built):
    if {row.name for row in rows} != set(built):
        raise ImportError(f"fusedrnn: the Python cell table {[row.name for row in rows]} does "
                          f"not match the compiled one {list(built)}; rebuild the extension")
    return {row.name: row._replace(**built[row.name]) for row in rows}


# name -> Cell, and nn mode -> Cell.
CELLS = _with_build_facts(_ROWS, _C.build_info()["cells"])
BY_MODE = {cell.mode: cell for cell in CELLS.values() if not cell.norms}


def cell_of_mode(mode):
    """The Cell of an nn.RNNBase mode ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")."""
    return BY_MODE[mode]
