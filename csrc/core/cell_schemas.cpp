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
// compute type. No projection: torch.nn's cells have none.
//
//   fusedrnn::<name>_cell_step_inference(the same arguments)
//     -> h (B, H) for cells without a cell state, (h, c) for those with one
//
// The same step where no gradient will be taken (the cells under no_grad,
// or with nothing that requires grad): the same h and c, without saved
// and cells. Returning fewer tensors is what it is for: at batch 1 each
// tensor that reaches Python is a visible part of a step's cost. Not
// differentiable: its autograd kernel (below) refuses inputs that require
// grad while grad mode is on, and otherwise goes straight to the kernel,
// so that callers need no guard of their own.
//
//   fusedrnn::<name>_cell_step_backward(grad_h (B, H), grad_c (B, H) (both
//       optional: missing is zero; grad_c only with a cell state), input,
//       h0, c0, w_ih, w_hh as above, h (B, H), saved (1, B, S*H), cells
//       (1, B, H) given exactly for cells with a cell state, output_mask)
//     -> (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih,
//         grad_b_hh)
//
// The step's backward (fusedrnn/_cell_ops.py), from the step's h, saved and
// cells. output_mask says which gradients are wanted: input, h0, c0, w_ih,
// w_hh, and the biases (which the step does not take: their gradients are
// the gate gradients summed over the batch). An unwanted gradient is empty
// (size 0), and so are grad_c0 without a cell state and grad_b_hh where
// both biases get the same gradient (grad_b_ih), as in the layer ops. For
// small batches the CPU kernel (cpu/cell_step_backward.h) reads W in place
// too; for the others it runs <name>_layer_backward with one step.
//
// Only the CPU has kernels; on other devices the cells run the layer op
// with one step.
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <string>
#include <string_view>

#include "cell_list.h"

namespace {

std::string cell_step_schema(const std::string& name) {
  return name +
         "_cell_step(Tensor input, Tensor h0, Tensor? c0, Tensor w_ih, "
         "Tensor w_hh, Tensor? b_ih, Tensor? b_hh) -> (Tensor h, Tensor c, "
         "Tensor saved, Tensor cells)";
}

std::string cell_step_inference_schema(const std::string& name,
                                      bool has_cell_state) {
  return name +
         "_cell_step_inference(Tensor input, Tensor h0, Tensor? c0, "
         "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) -> " +
         (has_cell_state ? "(Tensor h, Tensor c)" : "Tensor h");
}

std::string cell_step_backward_schema(const std::string& name) {
  return name +
         "_cell_step_backward(Tensor? grad_h, Tensor? grad_c, Tensor input, "
         "Tensor h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor h, "
         "Tensor saved, Tensor? cells, bool[6] output_mask) -> (Tensor "
         "grad_input, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, "
         "Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)";
}

constexpr std::string_view kInferenceSuffix = "_inference";

// The autograd kernel of the inference ops (boxed: one for every cell).
void inference_autograd(const c10::OperatorHandle& op,
                        torch::jit::Stack* stack) {
  if (c10::GradMode::is_enabled()) {
    const std::string& name = op.schema().name();
    const size_t count = op.schema().arguments().size();
    for (const c10::IValue& argument : torch::jit::last(*stack, count)) {
      TORCH_CHECK(!argument.isTensor() || !argument.toTensor().requires_grad(),
                  "fusedrnn: ", name,
                  " has no backward: call it under torch.no_grad() or on "
                  "inputs that do not require grad (",
                  name.substr(0, name.size() - kInferenceSuffix.size()),
                  " is the same step with one)");
    }
  }
  // The same exclusion torch.no_grad's callers get from
  // torch._C._AutoDispatchBelowADInplaceOrView: on to the backend kernel.
  c10::impl::ExcludeDispatchKeyGuard below_autograd(
      c10::autograd_dispatch_keyset_with_ADInplaceOrView);
  op.callBoxed(stack);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fusedrnn, m) {
#define FUSEDRNN_DEFINE_CELL_STEP(name, Cell, ...)                         \
  m.def(cell_step_schema(#name).c_str());                                  \
  m.def(cell_step_inference_schema(#name, fusedrnn::Cell::kHasCellState)   \
            .c_str());                                                     \
  m.def(cell_step_backward_schema(#name).c_str());
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_DEFINE_CELL_STEP)
#undef FUSEDRNN_DEFINE_CELL_STEP
}

TORCH_LIBRARY_IMPL(fusedrnn, Autograd, m) {
#define FUSEDRNN_INFERENCE_AUTOGRAD(name, Cell, ...) \
  m.impl(#name "_cell_step_inference",              \
         torch::CppFunction::makeFromBoxedFunction<&inference_autograd>());
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_INFERENCE_AUTOGRAD)
#undef FUSEDRNN_INFERENCE_AUTOGRAD
}
