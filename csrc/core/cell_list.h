// The one list of recurrent cells. Each row is _(name, Cell): `name` names
// the cell's ops (fusedrnn::<name>_layer_forward and _backward) and its row
// in build_info; `Cell` is its math header's struct (cells/README.md), which
// holds every other fact (gates, saved values, cell state, ...). The op
// schemas (schemas.cpp), the op wrappers of every back end (layer_ops.h),
// the CUDA kernel instantiations and build_info all follow from this list;
// Python reads the same facts from build_info (fusedrnn/cell_table.py).
//
// Adding a cell: its math header in cells/, one row here, one row in
// fusedrnn/cell_table.py, and its module.
#pragma once

#include "../cells/gru_cell.h"
#include "../cells/layernorm_gru_cell.h"
#include "../cells/layernorm_lstm_cell.h"
#include "../cells/lstm_cell.h"
#include "../cells/rnn_cell.h"

// Any arguments after the callback are handed to it after each row's two
// (for a nested list: FUSEDRNN_FOR_EACH_CELL(_, T) inside a loop over T).
#define FUSEDRNN_FOR_EACH_CELL(_, ...) \
  FUSEDRNN_FOR_EACH_PLAIN_CELL(_, __VA_ARGS__)       \
  _(layernorm_lstm, LayerNormLstmCell, __VA_ARGS__) \
  _(layernorm_gru, LayerNormGruCell, __VA_ARGS__)

// The cells whose math is per unit (no row stage): torch.nn's, which also
// have one-step cell ops (cell_schemas.cpp) for nn's LSTMCell, GRUCell
// and RNNCell.
#define FUSEDRNN_FOR_EACH_PLAIN_CELL(_, ...) \
  _(lstm, LstmCell, __VA_ARGS__)              \
  _(gru, GruCell, __VA_ARGS__)                \
  _(rnn_tanh, RnnTanhCell, __VA_ARGS__)       \
  _(rnn_relu, RnnReluCell, __VA_ARGS__)
