// The CUDA kernels of the layer ops (schemas: ops/schemas.cpp).
#include "../ops/layer_kernels.h"
#include "recurrent_layer.h"

namespace fusedrnn::cuda {
namespace {

struct CudaBackend {
  template <class Cell>
  static LayerOutputs forward(const LayerInputs& in, const OptionalTensor& b_ih,
                              const OptionalTensor& b_hh) {
    return cuda::layer_forward<Cell>(in, b_ih, b_hh);
  }
  template <class Cell, class... Args>
  static LayerGradients backward(const LayerInputs& in, const Args&... args) {
    return cuda::layer_backward<Cell>(in, args...);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) { register_layer_kernels<CudaBackend>(m); }

}  // namespace fusedrnn::cuda
