// Runs a function template for the storage type of a tensor, on a back
// end's executor (recurrent_layer.h): the one place that turns a dtype into
// a C++ type.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "storage_types.h"

namespace fusedrnn {

// torch's names of the storage types Executor serves ("float32", ...).
template <template <class> class Executor>
std::vector<std::string> served_dtype_list() {
  std::vector<std::string> names;
#define FUSEDRNN_NAME(T, Name, name) \
  if (Executor<T>::kServes) names.push_back(#name);
  FUSEDRNN_FOR_EACH_STORAGE_TYPE(FUSEDRNN_NAME)
#undef FUSEDRNN_NAME
  return names;
}

// "float32, float64 and bfloat16": the storage types Executor serves.
template <template <class> class Executor>
std::string served_dtypes() {
  const std::vector<std::string> names = served_dtype_list<Executor>();
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    text += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  return text;
}

// f.template operator()<T>() for the storage type T of `input`, after
// Executor<T>::check_input(input) (its device, what this machine can run);
// a clear error for a dtype the executor does not serve.
template <template <class> class Executor, class F>
auto dispatch_storage_type(const at::Tensor& input, F&& f) {
  switch (input.scalar_type()) {
#define FUSEDRNN_CASE(T, Name, name)             \
  case at::ScalarType::Name:                     \
    if constexpr (Executor<T>::kServes) {        \
      Executor<T>::check_input(input);           \
      return f.template operator()<T>();         \
    }                                            \
    break;
    FUSEDRNN_FOR_EACH_STORAGE_TYPE(FUSEDRNN_CASE)
#undef FUSEDRNN_CASE
    default:
      break;
  }
  TORCH_CHECK(false, "fusedrnn: the ", Executor<float>::kDeviceName,
              " kernels support ", served_dtypes<Executor>(), ", got ",
              input.scalar_type());
}

}  // namespace fusedrnn
