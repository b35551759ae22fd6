// The CPU kernels of the one-step cell ops (schemas: core/cell_schemas.cpp):
// argument checks, then cell_step.h for small batches, the layer function
// with one step for large ones.
#include "cell_step.h"

#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "../core/cell_list.h"
#include "../core/dispatch.h"
#include "../core/layer_args.h"
#include "../core/recurrent_layer.h"
#include "fused_step_executor.h"

namespace fusedrnn::cpu {

// The messages follow the layer ops' (layer_args.cpp).
int64_t check_cell_step_inputs(const Tensor& input, const Tensor& h0,
                               const OptionalTensor& c0, const Tensor& w_ih,
                               const Tensor& w_hh, const OptionalTensor& b_ih,
                               const OptionalTensor& b_hh, int64_t gates,
                               bool has_cell_state) {
  TORCH_CHECK(input.dim() == 2, "fusedrnn: expected a 2-D (batch, input) ",
              "input for one cell step, got ", input.dim(), "-D");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % gates == 0 && w_hh.size(0) > 0,
              "fusedrnn: expected w_hh of size (", gates, "H, H), got ",
              w_hh.sizes());
  const int64_t H = w_hh.size(0) / gates;
  const int64_t B = input.size(0), I = input.size(1);
  check_same(h0, input, "h0");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {gates * H, H}, "w_hh");
  check_shape(w_ih, {gates * H, I}, "w_ih");
  check_shape(h0, {B, H}, "h0");
  TORCH_CHECK(c0.has_value() == has_cell_state, "fusedrnn: c0 is ",
              has_cell_state ? "required" : "not taken", " by this cell");
  if (has_cell_state) {
    check_same(*c0, input, "c0");
    check_shape(*c0, {B, H}, "c0");
  }
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(),
              "fusedrnn: give both biases or neither");
  if (b_ih.has_value()) {
    check_same(*b_ih, input, "b_ih");
    check_same(*b_hh, input, "b_hh");
    check_shape(*b_ih, {gates * H}, "b_ih");
    check_shape(*b_hh, {gates * H}, "b_hh");
  }
  return H;
}

namespace {

// Which batches run the dot products of cell_step.h; the others run the
// layer function with one step. From 16 rows on the layer function packs
// W_ih and W_hh for its tile kernels (matmul/packed_multiply.h:
// kMinRowsToPack), which then reuse each loaded weight across 6 rows
// instead of the dot products' kMaxDotVectors, with no lane sums; the
// packing costs two more passes over the weights. Measured on the 2-core
// test machine (Zen 4, one thread, LSTM and RNN, H = I = 256, 512, 1024;
// float32, bfloat16 and float64; time of the dot products over the layer
// function's): below 16 rows 0.3-0.8 everywhere; from 16 to 64 rows
// 0.4-0.95 where the weights are 4 MiB or more (the packing passes then
// come from L3), but up to 1.1-1.3 at 24-64 rows with 1-2 MiB of weights.
constexpr int64_t kMaxDotBatch = 16;
constexpr int64_t kMaxDotBatchLargeWeights = 64;
constexpr int64_t kLargeWeightBytes = int64_t(4) << 20;

}  // namespace

bool runs_cell_step(int64_t batch, const Tensor& w_ih, const Tensor& w_hh) {
  if (batch <= kMaxDotBatch) return true;
  const int64_t weight_bytes = (w_ih.numel() + w_hh.numel()) * w_ih.element_size();
  return batch <= kMaxDotBatchLargeWeights && weight_bytes >= kLargeWeightBytes;
}

namespace {

// h, c, saved and cells of one step, as cell_step_into returns them (the
// layer function's, which always keeps saved and cells, for large batches).
template <class Cell>
std::tuple<Tensor, Tensor, Tensor, Tensor> checked_step(
    const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, bool keep_for_backward) {
  using Result = std::tuple<Tensor, Tensor, Tensor, Tensor>;
  return dispatch_storage_type<FusedStepExecutor>(
      input, [&]<typename T>() -> Result {
        const int64_t H =
            check_cell_step_inputs(input, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                   Cell::kGates, Cell::kHasCellState);
        const int64_t B = input.size(0);
        if (!runs_cell_step(B, w_ih, w_hh)) {
          const Tensor steps = input.unsqueeze(0);
          static const OptionalTensor kNone;
          LayerOutputs out = layer_forward<FusedStepExecutor, Cell>(
              {steps, h0, c0, w_ih, w_hh, kNone, b_ih, b_hh, kNone, false,
               no_regularization()});
          return {out.h_n, out.c_n, out.saved, out.cells};
        }
        Tensor h = at::empty({B, H}, input.options());
        auto [c, saved, cells] = cell_step_into<Cell, T>(
            input, h0, c0, w_ih, w_hh, b_ih, b_hh, h, keep_for_backward);
        return {h, c, saved, cells};
      });
}

template <class Cell>
std::tuple<Tensor, Tensor, Tensor, Tensor> cell_step_op(
    const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh) {
  return checked_step<Cell>(input, h0, c0, w_ih, w_hh, b_ih, b_hh,
                            /*keep_for_backward=*/true);
}

// The inference op returns h, and c for cells with a cell state.
template <class Cell>
using InferenceResult =
    std::conditional_t<Cell::kHasCellState, std::tuple<Tensor, Tensor>, Tensor>;

template <class Cell>
InferenceResult<Cell> cell_step_inference_op(
    const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh) {
  auto [h, c, saved, cells] =
      checked_step<Cell>(input, h0, c0, w_ih, w_hh, b_ih, b_hh,
                         /*keep_for_backward=*/false);
  if constexpr (Cell::kHasCellState) {
    return {h, c};
  } else {
    return h;
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
#define FUSEDRNN_REGISTER_CELL_STEP(name, Cell, ...) \
  m.impl(#name "_cell_step", &cell_step_op<Cell>);   \
  m.impl(#name "_cell_step_inference", &cell_step_inference_op<Cell>);
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_REGISTER_CELL_STEP)
#undef FUSEDRNN_REGISTER_CELL_STEP
}

}  // namespace fusedrnn::cpu
