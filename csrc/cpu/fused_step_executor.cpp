#include "fused_step_executor.h"

#include "matmul/packed_multiply.h"

namespace fusedrnn::cpu {

void check_cpu_input(const at::Tensor& input) {
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: CPU kernel got ",
              input.device());
  TORCH_CHECK(input.scalar_type() != at::kBFloat16 ||
                  packed_multiply_available<c10::BFloat16>(),
              "fusedrnn: the bfloat16 CPU kernels need a CPU with "
              "AVX512_BF16, which this one lacks");
}

}  // namespace fusedrnn::cpu
