// The launch function of the CUDA random_mask kernel (random_mask.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusedrnn::cuda {

// out[i] = core/random_mask.h's mask_unit(*seed, threshold, i), i < n; the
// seed stays on the device.
void launch_random_mask(const int64_t* seed, uint64_t threshold, bool* out,
                        int64_t n, cudaStream_t stream);

}  // namespace fusedrnn::cuda
