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

}  // namespace fusedrnn::cuda
