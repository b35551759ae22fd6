// The Python extension module fusedrnn._C. The kernels are torch ops,
// registered when this library loads; the module itself only reports how it
// was built, which cells and dtypes its kernels serve and what this CPU can
// run, so Python can check its cell table and say what is available.
#include <torch/extension.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/cell_list.h"

namespace fusedrnn {
namespace cpu {
std::vector<std::string> kernel_dtypes();  // cpu/layer_ops.cpp
}
#if defined(FUSEDRNN_WITH_CUDA)
namespace cuda {
std::vector<std::string> kernel_dtypes();  // cuda/layer_ops.cpp
}
#endif
}  // namespace fusedrnn

namespace {

// The facts of one cell of core/cell_list.h.
template <class Cell>
pybind11::dict cell_facts() {
  pybind11::dict facts;
  facts["gates"] = Cell::kGates;
  facts["saved"] = Cell::kSaved;
  facts["cell_state"] = Cell::kHasCellState;
  facts["split_recurrent_grad"] = Cell::kSplitRecurrentGrad;
  // Cells with a row stage (layer norm): normalizations, per-row statistics
  // kept after the saved values (saved rows are saved * H + row_stats wide).
  facts["norms"] = Cell::kNorms;
  facts["row_stats"] = Cell::kRowStats;
  return facts;
}

pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = TORCH_VERSION;
  pybind11::dict cells;
  std::vector<std::string> layer_ops;
#define FUSEDRNN_CELL_FACTS(name, Cell, ...)      \
  cells[#name] = cell_facts<fusedrnn::Cell>(); \
  layer_ops.push_back(#name "_layer");
  FUSEDRNN_FOR_EACH_CELL(FUSEDRNN_CELL_FACTS)
#undef FUSEDRNN_CELL_FACTS
  info["cells"] = cells;
  const pybind11::tuple ops = pybind11::cast(layer_ops);
  info["cpu_kernels"] = ops;
  // The dtypes the CPU kernels run here: bfloat16 needs AVX512_BF16;
  // without it the modules compute bfloat16 in float32.
  const auto cpu_dtypes = fusedrnn::cpu::kernel_dtypes();
  info["cpu_dtypes"] = pybind11::cast(cpu_dtypes);
  info["cpu_bfloat16"] =
      std::find(cpu_dtypes.begin(), cpu_dtypes.end(), "bfloat16") !=
      cpu_dtypes.end();
  // Whether the CUDA kernels (csrc/cuda/) were compiled in, and which.
#if defined(FUSEDRNN_WITH_CUDA)
  info["cuda"] = true;
  info["cuda_kernels"] = ops;
  info["cuda_dtypes"] = pybind11::cast(fusedrnn::cuda::kernel_dtypes());
#else
  info["cuda"] = false;
  info["cuda_kernels"] = pybind11::tuple();
  info["cuda_dtypes"] = pybind11::list();
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusedrnn's compiled ops library (kernels are torch.ops.fusedrnn)";
  m.def("build_info", &build_info, "How this extension was built");
}
