// The CUDA kernels of the layer ops (schemas: core/schemas.cpp).
#include "../core/layer_ops.h"
#include "../core/random_mask.h"
#include "random_mask.h"
#include "stepwise_executor.h"

namespace fusedrnn::cuda {

std::vector<std::string> kernel_dtypes() {
  return served_dtype_list<StepwiseExecutor>();
}

namespace {

at::Tensor random_mask(const at::Tensor& seed, c10::SymIntArrayRef sym_size,
                       double p) {
  const c10::cuda::CUDAGuard guard(seed.device());
  at::Tensor mask =
      checked_random_mask(seed, sym_size, p, c10::DeviceType::CUDA, "GPU");
  launch_random_mask(seed.contiguous().data_ptr<int64_t>(), mask_threshold(p),
                     mask.data_ptr<bool>(), mask.numel(),
                     at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return mask;
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  register_layer_ops<StepwiseExecutor>(m);
  m.impl("random_mask", &random_mask);
}

}  // namespace fusedrnn::cuda
