// The CUDA kernels of the layer ops (schemas: core/schemas.cpp).
#include "../core/layer_ops.h"
#include "stepwise_executor.h"

namespace fusedrnn::cuda {

std::vector<std::string> kernel_dtypes() {
  return served_dtype_list<StepwiseExecutor>();
}

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  register_layer_ops<StepwiseExecutor>(m);
}

}  // namespace fusedrnn::cuda
