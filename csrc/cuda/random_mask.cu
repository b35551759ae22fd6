// The CUDA kernel of fusedrnn::random_mask: core/random_mask.h per unit,
// the seed read on the device (no host synchronisation).
#include "random_mask.h"

#include "../core/random_mask.h"

namespace fusedrnn::cuda {
namespace {

__global__ void random_mask_kernel(const int64_t* seed, uint64_t threshold,
                                   bool* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = mask_unit(static_cast<uint64_t>(*seed), threshold,
                     static_cast<uint64_t>(i));
}

}  // namespace

void launch_random_mask(const int64_t* seed, uint64_t threshold, bool* out,
                        int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  random_mask_kernel<<<static_cast<unsigned int>((n + kThreads - 1) / kThreads),
                       kThreads, 0, stream>>>(seed, threshold, out, n);
}

}  // namespace fusedrnn::cuda
