// The schemas of the one-step cell ops, one per cell of cell_list.h:
//
//   fusedrnn::<name>_cell_step(input (B, I), h0 (B, H), c0 (B, H) given
//       exactly for cells with a cell state, w_ih (G*H, I), w_hh (G*H, H),
//       b_ih, b_hh (G*H) both or neither)
//     -> (h (B, H), c (B, H) or empty, saved (1, B, S*H), cells (1, B, H)
//         or empty)
//
// One step of the cell without the layer's machinery (sequence layout,
// buffers, an input-projection multiply, then a recurrent one): the CPU
// kernel (cpu/cell_step.h) reads W_ih and W_hh once, where they lie, and
// applies the cell's math to each unit as soon as its gates are summed.
// h and c are in the input's dtype; saved and cells are exactly what
// <name>_layer_forward returns for a one-step input (1, B, I), in the
// compute type, so <name>_layer_backward, given that input and h as the
// output (1, B, H), is this op's backward (fusedrnn/_cell_ops.py). No
// projection: torch.nn's cells have none.
//
// Only the CPU has a kernel; on other devices the cells run the layer op
// with one step.
#include <torch/library.h>

#include <string>

#include "cell_list.h"

namespace {

std::string cell_step_schema(const std::string& name) {
  return name +
         "_cell_step(Tensor input, Tensor h0, Tensor? c0, Tensor w_ih, "
         "Tensor w_hh, Tensor? b_ih, Tensor? b_hh) -> (Tensor h, Tensor c, "
         "Tensor saved, Tensor cells)";
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fusedrnn, m) {
#define FUSEDRNN_DEFINE_CELL_STEP(name, Cell, ...) \
  m.def(cell_step_schema(#name).c_str());
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_DEFINE_CELL_STEP)
#undef FUSEDRNN_DEFINE_CELL_STEP
}
