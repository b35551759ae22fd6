// The stack ops (schemas in schemas.cpp): a whole torch.nn layer stack in
// one call, so that a module call does no Python work per layer. At batch 1
// that work (selecting states, grouping weights, concatenating directions,
// stacking final states, one Python autograd wrapper per layer) cost more
// than the layers themselves.
//
// Registered as CompositeImplicitAutograd, for every device: the op is only
// the loop over layers and directions, calling each cell's layer op through
// the dispatcher. Autograd, torch.compile and torch.export see those layer
// ops (with their Python-registered autograd and fake kernels) and
// at::dropout, exactly what fusedrnn/stack.py's run_stack calls, in the same
// order: the results, the random numbers dropout draws from torch's
// generator and the gradients are the same bits as run_stack's.
#include <ATen/ATen.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "cell_list.h"
#include "layer_args.h"

namespace fusedrnn {
namespace {

// The schema of every <cell>_layer_forward (schemas.cpp).
using LayerForward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, const OptionalTensor& w_hr,
    const OptionalTensor& batch_sizes, bool reverse,
    const OptionalTensor& recurrent_keep, double recurrent_dropout,
    const OptionalTensor& zoneout_keep, double zoneout,
    const OptionalTensor& cell_zoneout_keep, double cell_zoneout,
    const OptionalTensor& norms, double eps);

// The defaults of the layer op's schema: no regularization, no layer norm.
constexpr double kDefaultEps = 1e-5;

bool any_requires_grad(const Tensor& input, at::TensorList hx,
                       at::TensorList weights) {
  if (input.requires_grad()) return true;
  for (const Tensor& t : hx) {
    if (t.requires_grad()) return true;
  }
  for (const Tensor& t : weights) {
    if (t.requires_grad()) return true;
  }
  return false;
}

// Cell: its math header's struct (cell_list.h); kLayerOp: its layer op.
template <class Cell, const char* kLayerOp>
std::tuple<Tensor, std::vector<Tensor>> stack_forward(
    const Tensor& input, at::TensorList hx, at::TensorList weights,
    bool has_biases, int64_t num_layers, double dropout, bool train,
    bool bidirectional, bool residual, const OptionalTensor& batch_sizes) {
  static const auto layer_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow(kLayerOp, "")
          .typed<LayerForward>();
  constexpr size_t kStates = Cell::kHasCellState ? 2 : 1;
  const int64_t directions = bidirectional ? 2 : 1;
  const int64_t layers = num_layers * directions;
  TORCH_CHECK(num_layers > 0, "fusedrnn: num_layers must be positive, got ",
              num_layers);
  TORCH_CHECK(hx.empty() || hx.size() == kStates, "fusedrnn: ", kLayerOp,
              " takes ", kStates, " initial state(s) or none, got ", hx.size());
  // torch.nn's parameter order: w_ih, w_hh [, b_ih, b_hh] [, w_hr].
  const int64_t plain = has_biases ? 4 : 2;
  const int64_t per_layer = static_cast<int64_t>(weights.size()) / layers;
  TORCH_CHECK(per_layer * layers == static_cast<int64_t>(weights.size()) &&
                  (per_layer == plain || per_layer == plain + 1),
              "fusedrnn: ", weights.size(), " weights do not make ", layers,
              " (layer, direction) groups of ", plain, " or ", plain + 1);
  const bool projected = per_layer == plain + 1;

  // Where no gradient is recorded, the layer ops run below autograd: their
  // autograd (Python, _ops.py) would only redispatch, and at batch 1 that
  // round trip through Python costs as much as a short layer.
  std::optional<at::AutoDispatchBelowAutograd> below_autograd;
  if (!at::GradMode::is_enabled() || !any_requires_grad(input, hx, weights)) {
    below_autograd.emplace();
  }

  // Without hx, every layer starts from the same zeros (the ops do not
  // write their inputs): h (B, P), and the LSTM's c (B, H).
  std::array<Tensor, kStates> zeros;
  if (hx.empty()) {
    const c10::SymInt batch =
        batch_sizes.has_value()
            ? batch_sizes->select(0, 0).item().toSymInt()
            : input.sym_size(1);
    const Tensor& w_hh = weights[1];
    zeros[0] = at::zeros_symint({batch, w_hh.sym_size(1)}, input.options());
    if constexpr (kStates == 2) {
      const Tensor& cell_width = projected ? weights[per_layer - 1] : w_hh;
      zeros[1] =
          at::zeros_symint({batch, cell_width.sym_size(1)}, input.options());
    }
  }

  std::array<std::vector<Tensor>, kStates> finals;
  for (auto& kind : finals) kind.reserve(layers);
  Tensor layer_input = input;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    if (layer > 0) {
      // Dropout on every layer's output but the last is dropout on every
      // layer's input but the first (torch.nn's place for it).
      layer_input = at::dropout(layer_input, dropout, train);
    }
    std::vector<Tensor> outputs;
    outputs.reserve(directions);
    for (int64_t direction = 0; direction < directions; ++direction) {
      const int64_t index = layer * directions + direction;
      const Tensor* w = weights.data() + index * per_layer;
      const OptionalTensor b_ih = has_biases ? OptionalTensor(w[2]) : std::nullopt;
      const OptionalTensor b_hh = has_biases ? OptionalTensor(w[3]) : std::nullopt;
      const OptionalTensor w_hr =
          projected ? OptionalTensor(w[per_layer - 1]) : std::nullopt;
      const Tensor h0 = hx.empty() ? zeros[0] : hx[0].select(0, index);
      OptionalTensor c0;
      if constexpr (kStates == 2) {
        c0 = hx.empty() ? zeros[1] : hx[1].select(0, index);
      }
      auto [y, h_n, c_n, saved, cells] = layer_op.call(
          layer_input, h0, c0, w[0], w[1], b_ih, b_hh, w_hr, batch_sizes,
          direction == 1, std::nullopt, 0.0, std::nullopt, 0.0, std::nullopt,
          0.0, std::nullopt, kDefaultEps);
      outputs.push_back(std::move(y));
      finals[0].push_back(std::move(h_n));
      if constexpr (kStates == 2) finals[1].push_back(std::move(c_n));
    }
    // The feature dim is last, dense (T, B, P) and packed (rows, P) alike.
    Tensor output = directions == 1 ? outputs[0] : at::cat(outputs, -1);
    if (residual && layer > 0) {
      // The sum is this layer's output, on which the next layer's dropout
      // acts (FusedRNNBase in rnn_base.py).
      output = output + layer_input;
    }
    layer_input = std::move(output);
  }
  // One (layer, direction): its state as a view with the stack's leading
  // dim. The layer op's outputs are its own, and at batch 1 a copy's
  // dispatch and allocation per state are a visible part of the call.
  std::vector<Tensor> final_states;
  for (const auto& kind : finals) {
    final_states.push_back(kind.size() == 1 ? kind[0].unsqueeze(0)
                                            : at::stack(kind));
  }
  return {layer_input, final_states};
}

#define FUSEDRNN_STACK_OP(name, Cell, ...)                               \
  constexpr char name##_layer_op[] = "fusedrnn::" #name "_layer_forward";
FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_STACK_OP)
#undef FUSEDRNN_STACK_OP

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CompositeImplicitAutograd, m) {
#define FUSEDRNN_REGISTER_STACK_OP(name, Cell, ...) \
  m.impl(#name "_stack_forward", &stack_forward<Cell, name##_layer_op>);
  FUSEDRNN_FOR_EACH_PLAIN_CELL(FUSEDRNN_REGISTER_STACK_OP)
#undef FUSEDRNN_REGISTER_STACK_OP
}

}  // namespace fusedrnn
