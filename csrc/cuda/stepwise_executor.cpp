#include "stepwise_executor.h"

namespace fusedrnn::cuda {

void check_cuda_input(const at::Tensor& input) {
  TORCH_CHECK(input.device().is_cuda(), "fusedrnn: CUDA kernel got ",
              input.device());
}

}  // namespace fusedrnn::cuda
