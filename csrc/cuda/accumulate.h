// The type the CUDA kernels compute in, for each storage type.
//
// float16 and bfloat16 tensors are stored in 16 bits, but the cell math,
// the cell state and every multiply's accumulation run in float32: a cell
// state rounded to 16 bits at every step would drift over long sequences.
// float32 and float64 compute in their own type.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace fusedrnn::cuda {

template <typename T>
struct Accumulate {
  using type = T;
};
template <>
struct Accumulate<c10::Half> {
  using type = float;
};
template <>
struct Accumulate<c10::BFloat16> {
  using type = float;
};

template <typename T>
using accumulate_t = typename Accumulate<T>::type;

}  // namespace fusedrnn::cuda
