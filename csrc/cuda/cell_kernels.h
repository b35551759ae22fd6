// The pointwise CUDA kernels of the stepwise executor
// (stepwise_executor.h), behind plain launch functions.
//
// The kernels live in cell_kernels.cu, which includes no ATen header: nvcc
// parses a .cu file once per target architecture, and the host code that
// needs ATen (buffers, checks, cuBLAS) compiles much faster as plain C++.
//
// Each step kernel runs one thread per (row, hidden unit) of a step and
// calls the cell's per-unit math (cells/README.md), the same functions the
// CPU executor runs, on the step structs of core/step.h. T is the storage
// type (float, double, c10::Half, c10::BFloat16). Launches go to `stream`
// and do not synchronise; the caller checks for launch errors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../core/normalization.h"
#include "../core/regularization.h"
#include "../core/step.h"

namespace fusedrnn::cuda {

template <typename Cell, typename T>
void launch_forward_step(const ForwardStep<T>& step, cudaStream_t stream);

template <typename Cell, typename T>
void launch_backward_step(const BackwardStep<T>& step, cudaStream_t stream);

// out = dh + dy (dy may be null) over n elements: the gradient at a step's
// projected output.
template <typename T>
void launch_add_output_gradient(int64_t n, const compute_t<T>* dh,
                                const T* dy, T* out, cudaStream_t stream);

// op(b, j) over rows x width units: the passes of core/regularization.h.
// Instantiated in cell_kernels.cu for each pass and storage type.
template <class Op>
void launch_for_each_unit(int64_t rows, int64_t width, const Op& op,
                          cudaStream_t stream);

// op(row, r) for rows [0, rows), one thread block per row with a BlockRow
// context (row_context.cuh): the row passes of core/normalization.h.
// Instantiated in cell_kernels.cu for each pass, cell and storage type.
// Compiled, not yet run on a GPU.
template <class Op>
void launch_for_each_row(int64_t rows, int64_t width, const Op& op,
                         cudaStream_t stream);

// The cell's output before the projection (cells with a cell state),
// recomputed for `rows` rows from the saved values and cell states.
template <typename Cell, typename T>
void launch_recompute_hidden(int64_t rows, int64_t hidden,
                             const compute_t<T>* saved,
                             const compute_t<T>* cells, T* out,
                             cudaStream_t stream);

}  // namespace fusedrnn::cuda
