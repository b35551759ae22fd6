// The arguments and results of one layer in one direction, shared by the
// CPU and CUDA back ends, and the checks that do not depend on the device.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "sequence_layout.h"

namespace fusedrnn {

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;

// Recurrent dropout and zoneout of one layer call (core/regularization.h):
// bool masks drawn in Python, absent when not drawn; zoneout with a
// probability and no mask is eval.
struct RegularizationInputs {
  const OptionalTensor& recurrent_keep;     // (B, P)
  double recurrent_dropout;
  const OptionalTensor& zoneout_keep;       // (T, B, P) dense, (rows, P) packed
  double zoneout;
  const OptionalTensor& cell_zoneout_keep;  // (T, B, H) dense, (rows, H) packed
  double cell_zoneout;
};

// Neither recurrent dropout nor zoneout: torch.nn's layer.
inline const RegularizationInputs& no_regularization() {
  static const OptionalTensor kNone;
  static const RegularizationInputs kNoRegularization{kNone, 0, kNone,
                                                      0,     kNone, 0};
  return kNoRegularization;
}

// The arguments every layer op takes; c0 only where the cell has a cell
// state, w_hr only with a projection (LSTM).
struct LayerInputs {
  const Tensor& input;                // (T, B, I) dense or (rows, I) packed
  const Tensor& h0;                   // (B, P)
  const OptionalTensor& c0;           // (B, H)
  const Tensor& w_ih;                 // (G*H, I)
  const Tensor& w_hh;                 // (G*H, P)
  const OptionalTensor& w_hr;         // (P, H)
  const OptionalTensor& b_ih;         // (G*H), with b_hh or not at all
  const OptionalTensor& b_hh;         // (G*H)
  const OptionalTensor& batch_sizes;  // (T,) int64 CPU, packed input only
  bool reverse;
  const RegularizationInputs& regularization;
  // Normalized cells (cells/row_stage.h): one 1-D tensor of, per
  // normalization (LN_ih, LN_hh, then LN_c where the cell has it), its gain
  // and bias, (G*H) each, (H) for LN_c; absent for the other cells. eps:
  // inside layer norm's square root.
  OptionalTensor norms = std::nullopt;
  double eps = 1e-5;
};

struct LayerOutputs {
  Tensor output, h_n, c_n, saved, cells;  // c_n, cells empty without c
};

struct LayerGradients {
  // c0, b_hh and w_hr are empty where the cell or the call has none (see
  // schemas.cpp).
  Tensor input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr;
  Tensor norms;  // laid out as LayerInputs::norms; empty for other cells
};

// The layer's sizes and step layout.
struct LayerShape {
  SequenceLayout layout;
  int64_t input_size, hidden, out_size;  // I, H, P (P = H without projection)
  bool packed;

  // Shapes of the per-row buffers: (T, B, width) dense, (rows, width) packed.
  std::vector<int64_t> rows_of(int64_t width) const {
    if (packed) return {layout.rows(), width};
    return {layout.steps(), layout.batch(), width};
  }
};

void check_same(const Tensor& t, const Tensor& ref, const char* name);
void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name);

// 16-bit inputs are computed in float32 on every back end; float32 and
// float64 in their own type. The options of the buffers kept in that
// compute type.
at::TensorOptions compute_options(const Tensor& like);
// A per-step buffer from the forward (`saved`, `cells`): the input's
// device, the compute type.
void check_saved(const Tensor& t, const Tensor& input, const char* name);
// A contiguous buffer in the compute type that the backward updates in
// place, starting from `grad` or 0. (Not *_like: those would copy the
// strides of `like`.)
Tensor state_gradient(const OptionalTensor& grad, const Tensor& like);
// Every check of the arguments but the input's device and dtype (the back
// end checks those), before any memory is touched.
LayerShape check_layer_inputs(const LayerInputs& in, int64_t gates,
                              bool has_cell_state);

// The layer norms' parameters: for `norms` normalizations (none for cells
// without a row stage) a 1-D tensor like the input, 4 G*H long plus 2 H for
// a third (LN_c); eps positive and finite.
void check_norms(const LayerInputs& in, const LayerShape& shape, int norms);

// The masks' dtype, device and shapes and the probabilities' range, for a
// layer of this shape.
void check_regularization(const RegularizationInputs& reg,
                          const LayerShape& shape, const Tensor& input,
                          bool has_cell_state);

// fusedrnn::random_mask's checks (a one-element int64 seed on a device of
// `device_type`, named `device_name` in the message; p in [0, 1]) and its
// uninitialised bool result of `size` on the seed's device, for a back end
// to fill (core/random_mask.h).
Tensor checked_random_mask(const Tensor& seed, c10::SymIntArrayRef size,
                           double p, c10::DeviceType device_type,
                           const char* device_name);

// The data of an optional tensor, or null.
template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace fusedrnn
