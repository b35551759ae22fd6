// The storage types of the kernels and the type each computes in: the one
// dtype table of both back ends.
//
// float16 and bfloat16 tensors are stored in 16 bits, but the cell math,
// the cell state, the values kept for the backward and every multiply's
// sums run in float32: a cell state rounded to 16 bits at every step would
// drift over long sequences. float32 and float64 compute in their own type.
//
// This header includes no ATen header, so the CUDA kernel sources (which
// nvcc parses once per architecture) can include it cheaply.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace fusedrnn {

// Every storage type a back end may serve, as _(C++ type, c10::ScalarType
// name, torch's name). A back end says which of them it serves (its
// executor's kServes); a new dtype is a row here, its compute type below,
// and the executors that serve it.
#define FUSEDRNN_FOR_EACH_STORAGE_TYPE(_) \
  _(float, Float, float32)                \
  _(double, Double, float64)              \
  _(c10::Half, Half, float16)             \
  _(c10::BFloat16, BFloat16, bfloat16)

template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<c10::Half> {
  using type = float;
};
template <>
struct ComputeType<c10::BFloat16> {
  using type = float;
};

// The type the kernels compute storage type T in.
template <typename T>
using compute_t = typename ComputeType<T>::type;

}  // namespace fusedrnn
