#include "recurrent_layer.h"

#include "matmul/packed_multiply.h"

namespace fusedrnn::cpu {

void check_cpu_input(const Tensor& input) {
  TORCH_CHECK(input.device().is_cpu(), "fusedrnn: CPU kernel got ",
              input.device());
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kBFloat16,
              "fusedrnn: the CPU kernels support float32, float64 and "
              "bfloat16, got ", dtype);
  TORCH_CHECK(dtype != at::kBFloat16 ||
                  packed_multiply_available<c10::BFloat16>(),
              "fusedrnn: the bfloat16 CPU kernels need a CPU with "
              "AVX512_BF16, which this one lacks");
}

}  // namespace fusedrnn::cpu
