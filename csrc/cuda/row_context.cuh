// BlockRow: the row context of cells/row_stage.h on CUDA. One thread block
// runs one row: units are strided over the block's threads (unit j on
// thread j % blockDim.x, in every pass, so a thread reads back what it
// wrote), and every pass ends at a barrier, so the next pass may read any
// unit. Sums are block reductions in a fixed order (warp shuffles, then one
// warp over the warps' sums): deterministic, no atomics. Every thread of
// the block must call every member (uniform control flow).
//
// Compiled in CI; not yet run on a GPU.
#pragma once

#include <cstdint>

namespace fusedrnn::cuda {

template <typename Acc>
__device__ Acc block_sum(Acc v) {
  __shared__ Acc warp_sums[32];
  __shared__ Acc total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    Acc s = lane < warps ? warp_sums[lane] : Acc(0);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      s += __shfl_down_sync(0xffffffffu, s, offset);
    }
    if (lane == 0) total = s;
  }
  __syncthreads();
  const Acc result = total;
  // No thread may overwrite warp_sums or total (the next sum) before every
  // thread has read this one.
  __syncthreads();
  return result;
}

// Host-device so that the cells' host-device row stages may call it; its
// bodies exist on the device only (it is only ever run there).
struct BlockRow {
  template <class F>
  __host__ __device__ void units(int64_t n, F f) const {
#if defined(__CUDA_ARCH__)
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) f(j);
    __syncthreads();
#endif
  }

  template <typename Acc, class F>
  __host__ __device__ Acc sum(int64_t n, F f) const {
#if defined(__CUDA_ARCH__)
    Acc s = Acc(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += f(j);
    return block_sum(s);
#else
    return Acc(0);
#endif
  }
};

}  // namespace fusedrnn::cuda
