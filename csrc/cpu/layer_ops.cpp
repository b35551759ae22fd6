// The CPU kernels of the layer ops (schemas: ops/schemas.cpp).
#include "../ops/layer_kernels.h"
#include "recurrent_layer.h"

namespace fusedrnn::cpu {
namespace {

struct CpuBackend {
  template <class Cell>
  static LayerOutputs forward(const LayerInputs& in, const OptionalTensor& b_ih,
                              const OptionalTensor& b_hh) {
    return layer_forward<Cell>(in, b_ih, b_hh);
  }
  template <class Cell, class... Args>
  static LayerGradients backward(const LayerInputs& in, const Args&... args) {
    return layer_backward<Cell>(in, args...);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) { register_layer_kernels<CpuBackend>(m); }

}  // namespace fusedrnn::cpu
