// The CPU kernels of the one-step cell ops' backward (schemas:
// core/cell_schemas.cpp): argument checks, then cell_step_backward.h for
// small batches, the layer backward with one step for the others.
#include "cell_step_backward.h"

#include <torch/library.h>

#include <array>
#include <tuple>

#include "../core/cell_list.h"
#include "../core/dispatch.h"
#include "../core/layer_args.h"
#include "../core/recurrent_layer.h"
#include "buffer_pool.h"
#include "cell_step.h"
#include "fused_step_executor.h"

namespace fusedrnn::cpu {
namespace {

// The batches the backward kernel takes; the others run the layer
// backward with one step. Each kGradVectors rows read W once more in the
// kernel (from L3 or memory at large H), where the layer backward's GEMMs
// read it about once: at 32 rows and H = 1024 (which the forward runs on
// its dot products) the step's forward and backward measured 1.1-1.6x
// torch.nn's time against 0.7-1.2x with the layer backward (bench latency
// --kind step, 2-core Zen 4, loaded). At batch 1 the kernel is what pays.
constexpr int64_t kMaxKernelBatch = 16;

}  // namespace

bool runs_cell_step_backward(int64_t batch) { return batch <= kMaxKernelBatch; }

namespace {

// A wanted gradient, or an empty tensor.
Tensor wanted(bool want, const Tensor& grad) {
  return want ? grad : at::empty({0}, grad.options());
}

template <class Cell>
CellStepGrads cell_step_backward_op(
    const OptionalTensor& grad_h, const OptionalTensor& grad_c,
    const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const Tensor& h,
    const Tensor& saved, const OptionalTensor& cells, GradMask mask) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  return dispatch_storage_type<FusedStepExecutor>(
      input, [&]<typename T>() -> CellStepGrads {
        static const OptionalTensor kNone;
        const int64_t H = check_cell_step_inputs(
            input, h0, c0, w_ih, w_hh, kNone, kNone, G, Cell::kHasCellState);
        const int64_t B = input.size(0), I = input.size(1);
        check_same(h, input, "h");
        check_shape(h, {B, H}, "h");
        check_saved(saved, input, "saved");
        check_shape(saved, {1, B, S * H}, "saved");
        TORCH_CHECK(cells.has_value() == Cell::kHasCellState, "fusedrnn: cells are ",
                    Cell::kHasCellState ? "required" : "not taken", " by this cell");
        if (Cell::kHasCellState) {
          check_saved(*cells, input, "cells");
          check_shape(*cells, {1, B, H}, "cells");
        }
        if (grad_h.has_value()) {
          check_same(*grad_h, input, "grad_h");
          check_shape(*grad_h, {B, H}, "grad_h");
        }
        TORCH_CHECK(!grad_c.has_value() || Cell::kHasCellState,
                    "fusedrnn: grad_c is not taken by this cell");
        if (grad_c.has_value()) {
          check_same(*grad_c, input, "grad_c");
          check_shape(*grad_c, {B, H}, "grad_c");
        }
        if (!runs_cell_step_backward(B)) {
          const bool want_c0 = Cell::kHasCellState && mask[2];
          const bool want_b_hh = Cell::kSplitRecurrentGrad && mask[5];
          LayerGradients g = layer_backward<FusedStepExecutor, Cell>(
              {input.unsqueeze(0), h0, c0, w_ih, w_hh, kNone, kNone, kNone,
               kNone, false, no_regularization()},
              kNone, grad_h, grad_c, h.unsqueeze(0), saved, cells, mask[0],
              mask[1] || want_c0);
          // (grad_input comes empty unless wanted, else (1, B, I).)
          return {mask[0] ? g.input.view({B, I}) : g.input, wanted(mask[1], g.h0),
                  wanted(want_c0, g.c0), wanted(mask[3], g.w_ih),
                  wanted(mask[4], g.w_hh), wanted(mask[5], g.b_ih),
                  wanted(want_b_hh, g.b_hh)};
        }
        return cell_step_backward_of<Cell, T>(grad_h, kNone, grad_c, input,
                                              h0, c0, w_ih, w_hh, saved,
                                              cells, mask);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
#define FUSEDRNN_REGISTER_CELL_STEP_BACKWARD(name, Cell, ...) \
  m.impl(#name "_cell_step_backward", &cell_step_backward_op<Cell>);
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_REGISTER_CELL_STEP_BACKWARD)
#undef FUSEDRNN_REGISTER_CELL_STEP_BACKWARD
}

}  // namespace fusedrnn::cpu
