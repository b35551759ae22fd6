// The CPU kernels of the layer ops (schemas: core/schemas.cpp).
#include "../core/layer_ops.h"
#include "fused_step_executor.h"
#include "matmul/packed_multiply.h"

namespace fusedrnn::cpu {

std::vector<std::string> kernel_dtypes() {
  std::vector<std::string> names = served_dtype_list<FusedStepExecutor>();
  // bfloat16 needs AVX512_BF16 on this very CPU.
  if (!packed_multiply_available<c10::BFloat16>()) {
    std::erase(names, std::string("bfloat16"));
  }
  return names;
}

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  register_layer_ops<FusedStepExecutor>(m);
}

}  // namespace fusedrnn::cpu
