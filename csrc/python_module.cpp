// The Python extension module fusedrnn._C. The kernels are torch ops,
// registered when this library loads; the module itself only reports how it
// was built and what this CPU can run, so Python can say what is available.
#include <torch/extension.h>

#include "cpu/matmul/tile_kernels.h"

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = TORCH_VERSION;
  info["cpu_kernels"] =
      pybind11::make_tuple("lstm_layer", "gru_layer", "rnn_layer");
  // Whether this CPU runs the bfloat16 kernels (it needs AVX512_BF16);
  // without them the modules compute bfloat16 in float32.
  info["cpu_bfloat16"] =
      fusedrnn::cpu::has_avx512_kernels<c10::BFloat16>();
  // Whether the CUDA kernels (csrc/cuda/) were compiled in, and which.
#if defined(FUSEDRNN_WITH_CUDA)
  info["cuda"] = true;
  info["cuda_kernels"] =
      pybind11::make_tuple("lstm_layer", "gru_layer", "rnn_layer");
#else
  info["cuda"] = false;
  info["cuda_kernels"] = pybind11::make_tuple();
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusedrnn's compiled ops library (kernels are torch.ops.fusedrnn)";
  m.def("build_info", &build_info, "How this extension was built");
}
