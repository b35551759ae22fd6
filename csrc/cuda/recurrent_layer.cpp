#include "recurrent_layer.h"

namespace fusedrnn::cuda {

void check_cuda_input(const Tensor& input) {
  TORCH_CHECK(input.device().is_cuda(), "fusedrnn: CUDA kernel got ",
              input.device());
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              "fusedrnn: the CUDA kernels support float32, float64, float16 "
              "and bfloat16, got ", dtype);
}

at::TensorOptions compute_options(const Tensor& like) {
  return like.options().dtype(at::toOpMathType(like.scalar_type()));
}

Tensor state_gradient(const OptionalTensor& grad, const Tensor& like) {
  if (!grad.has_value()) return at::zeros(like.sizes(), compute_options(like));
  check_same(*grad, like, "final-state gradient");
  check_shape(*grad, like.sizes(), "final-state gradient");
  return at::empty(like.sizes(), compute_options(like)).copy_(*grad);
}

void check_saved(const Tensor& t, const Tensor& input, const char* name) {
  const auto expected = at::toOpMathType(input.scalar_type());
  TORCH_CHECK(t.device() == input.device() && t.scalar_type() == expected,
              "fusedrnn: expected ", name, " of dtype ", expected, " on ",
              input.device(), " (as the forward returns it), got ",
              t.scalar_type(), " on ", t.device());
}

}  // namespace fusedrnn::cuda
