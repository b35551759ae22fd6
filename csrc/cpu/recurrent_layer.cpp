#include "recurrent_layer.h"

namespace fusedrnn::cpu {

void check_cpu_input(const Tensor& input) {
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: CPU kernel got ",
              input.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat ||
                  input.scalar_type() == at::kDouble,
              "fusedrnn: the CPU kernels support float32 and float64, got ",
              input.scalar_type());
}

Tensor state_gradient(const OptionalTensor& grad, const Tensor& like) {
  if (!grad.has_value()) return at::zeros(like.sizes(), like.options());
  check_same(*grad, like, "final-state gradient");
  check_shape(*grad, like.sizes(), "final-state gradient");
  return at::empty(like.sizes(), like.options()).copy_(*grad);
}

}  // namespace fusedrnn::cpu
