#include "layer_args.h"

#include <ATen/OpMathType.h>

#include <cmath>

namespace fusedrnn {

void check_same(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), "fusedrnn: ", name, " is on ",
              t.device(), " but input is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "fusedrnn: ", name,
              " has dtype ", t.scalar_type(), " but input has ",
              ref.scalar_type());
}

at::TensorOptions compute_options(const Tensor& like) {
  return like.options().dtype(at::toOpMathType(like.scalar_type()));
}

void check_saved(const Tensor& t, const Tensor& input, const char* name) {
  const auto expected = at::toOpMathType(input.scalar_type());
  TORCH_CHECK(t.device() == input.device() && t.scalar_type() == expected,
              "fusedrnn: expected ", name, " of dtype ", expected, " on ",
              input.device(), " (as the forward returns it), got ",
              t.scalar_type(), " on ", t.device());
}

Tensor state_gradient(const OptionalTensor& grad, const Tensor& like) {
  if (!grad.has_value()) return at::zeros(like.sizes(), compute_options(like));
  check_same(*grad, like, "final-state gradient");
  check_shape(*grad, like.sizes(), "final-state gradient");
  return at::empty(like.sizes(), compute_options(like)).copy_(*grad);
}

void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "fusedrnn: expected ", name, " of size ",
              expected, ", got ", t.sizes());
}

LayerShape check_layer_inputs(const LayerInputs& in, int64_t gates,
                              bool has_cell_state) {
  const Tensor& input = in.input;
  const bool packed = in.batch_sizes.has_value();
  TORCH_CHECK(input.dim() == (packed ? 2 : 3), "fusedrnn: expected a ",
              packed ? "2-D packed" : "3-D time-major", " input, got ",
              input.dim(), "-D");
  TORCH_CHECK(input.size(0) > 0,
              "Expected sequence length to be larger than 0 in RNN");
  const Tensor& w_hh = in.w_hh;
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % gates == 0 && w_hh.size(0) > 0,
              "fusedrnn: expected w_hh of size (", gates, "H, P), got ",
              w_hh.sizes());
  const int64_t H = w_hh.size(0) / gates, P = w_hh.size(1);
  const int64_t I = input.size(-1);
  check_same(in.h0, input, "h0");
  check_same(in.w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  TORCH_CHECK(in.c0.has_value() == has_cell_state, "fusedrnn: c0 is ",
              has_cell_state ? "required" : "not taken", " by this cell");
  if (in.w_hr.has_value()) {
    check_same(*in.w_hr, input, "w_hr");
    check_shape(*in.w_hr, {P, H}, "w_hr");
    // A step's projected rows fit in its (B, G*H) scratch block, which
    // executors may use for them; torch.nn wants P < H anyway.
    TORCH_CHECK(P <= H, "fusedrnn: the projection size ", P,
                " exceeds the hidden size ", H);
  } else {
    TORCH_CHECK(P == H, "fusedrnn: expected w_hh of size (", gates,
                "H, H) without a projection, got ", w_hh.sizes());
  }
  SequenceLayout layout =
      packed ? SequenceLayout(*in.batch_sizes, in.reverse)
             : SequenceLayout(input.size(0), input.size(1), in.reverse);
  if (packed) {
    TORCH_CHECK(layout.rows() == input.size(0), "fusedrnn: batch_sizes sum to ",
                layout.rows(), " but the packed input has ", input.size(0),
                " rows");
  }
  const int64_t B = layout.batch();
  check_shape(in.h0, {B, P}, "h0");
  if (has_cell_state) {
    check_same(*in.c0, input, "c0");
    check_shape(*in.c0, {B, H}, "c0");
  }
  check_shape(in.w_ih, {gates * H, I}, "w_ih");
  TORCH_CHECK(in.b_ih.has_value() == in.b_hh.has_value(),
              "fusedrnn: give both biases or neither");
  if (in.b_ih.has_value()) {
    check_same(*in.b_ih, input, "b_ih");
    check_same(*in.b_hh, input, "b_hh");
    check_shape(*in.b_ih, {gates * H}, "b_ih");
    check_shape(*in.b_hh, {gates * H}, "b_hh");
  }
  LayerShape shape{std::move(layout), I, H, P, packed};
  check_regularization(in.regularization, shape, input, has_cell_state);
  return shape;
}

void check_norms(const LayerInputs& in, const LayerShape& shape, int norms) {
  TORCH_CHECK(in.norms.has_value() == (norms > 0),
              "fusedrnn: layer-norm parameters (norms) are ",
              norms > 0 ? "required by" : "not taken by", " this cell");
  if (norms == 0) return;
  TORCH_CHECK(in.eps > 0 && std::isfinite(in.eps),
              "fusedrnn: eps must be positive and finite, got ", in.eps);
  const int64_t H = shape.hidden, width = in.w_hh.size(0);
  check_same(*in.norms, in.input, "norms");
  check_shape(*in.norms, {4 * width + 2 * (norms - 2) * H}, "norms");
}

Tensor checked_random_mask(const Tensor& seed, c10::SymIntArrayRef size,
                           double p, c10::DeviceType device_type,
                           const char* device_name) {
  TORCH_CHECK(seed.device().type() == device_type &&
                  seed.scalar_type() == at::kLong && seed.numel() == 1,
              "fusedrnn.random_mask: expected a one-element int64 seed on the ",
              device_name, ", got ", seed.scalar_type(), " of size ",
              seed.sizes(), " on ", seed.device());
  TORCH_CHECK(p >= 0 && p <= 1,
              "fusedrnn.random_mask: p must be in [0, 1], got ", p);
  return at::empty(C10_AS_INTARRAYREF_SLOW(size),
                   seed.options().dtype(at::kBool));
}

namespace {

void check_mask(const OptionalTensor& mask, at::IntArrayRef expected,
                const Tensor& input, const char* name) {
  if (!mask.has_value()) return;
  TORCH_CHECK(mask->scalar_type() == at::kBool &&
                  mask->device() == input.device() && mask->is_contiguous(),
              "fusedrnn: expected ", name, " to be a contiguous bool tensor on ",
              input.device(), ", got ", mask->scalar_type(), " on ",
              mask->device());
  check_shape(*mask, expected, name);
}

void check_probability(double p, bool one_allowed, const char* name) {
  TORCH_CHECK(p >= 0 && (one_allowed ? p <= 1 : p < 1), "fusedrnn: ", name,
              " must be in [0, 1", one_allowed ? "]" : ")", ", got ", p);
}

}  // namespace

void check_regularization(const RegularizationInputs& reg,
                          const LayerShape& shape, const Tensor& input,
                          bool has_cell_state) {
  const int64_t H = shape.hidden, P = shape.out_size;
  check_mask(reg.recurrent_keep, {shape.layout.batch(), P}, input,
             "recurrent_keep");
  check_mask(reg.zoneout_keep, shape.rows_of(P), input, "zoneout_keep");
  check_mask(reg.cell_zoneout_keep, shape.rows_of(H), input,
             "cell_zoneout_keep");
  check_probability(reg.recurrent_dropout, false, "recurrent_dropout");
  check_probability(reg.zoneout, true, "zoneout");
  check_probability(reg.cell_zoneout, true, "cell_zoneout");
  TORCH_CHECK(has_cell_state || (!reg.cell_zoneout_keep.has_value() &&
                                 reg.cell_zoneout == 0),
              "fusedrnn: cell_zoneout needs a cell with a cell state");
}

}  // namespace fusedrnn
