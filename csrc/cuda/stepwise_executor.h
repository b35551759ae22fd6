// The CUDA executor of the layer function (core/recurrent_layer.h): each
// step is the recurrent multiply of the live rows on cuBLAS (gemm.h), then
// one pointwise kernel over the step's units that applies the cell's math
// (cell_kernels.h), then with a projection one more multiply. batch_sizes
// lives on the CPU, so the host knows every step's rows without asking the
// GPU: the loop only enqueues work on the current stream, never waits for
// it, and allocates nothing. It serves float32, float64, float16 and
// bfloat16.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include "../core/layer_args.h"
#include "../core/step.h"
#include "cell_kernels.h"
#include "gemm.h"

namespace fusedrnn::cuda {

// Throws unless `input` is a CUDA tensor.
void check_cuda_input(const at::Tensor& input);

template <typename T>
class StepwiseExecutor {
 public:
  using Acc = compute_t<T>;
  using Weight = RightOperand<T>;
  static constexpr bool kServes = true;
  static constexpr const char* kDeviceName = "CUDA";
  static constexpr bool kRowScratch = false;
  static constexpr bool kTeamLoops = false;
  static constexpr bool kCellSteps = false;

  static void check_input(const at::Tensor& input) { check_cuda_input(input); }

  // The device guard comes first: the handle, the stream and every buffer
  // belong to the input's device.
  StepwiseExecutor(const at::Tensor& input, const LayerShape& /*shape*/)
      : device_guard_(input.device()),
        stream_(at::cuda::getCurrentCUDAStream()) {}

  at::Tensor empty(at::IntArrayRef sizes,
                   const at::TensorOptions& options) const {
    return at::empty(sizes, options);
  }

  // x W_ih^T + b_ih in the compute type: one multiply into a buffer that
  // already holds b_ih (beta = 1).
  at::Tensor input_projection(const at::Tensor& input, const at::Tensor& w_ih,
                              const OptionalTensor& b_ih) const {
    const at::Tensor x = input_rows(input);
    const int64_t rows = x.size(0), width = w_ih.size(0);
    at::Tensor out = at::empty({rows, width}, compute_options(x));
    if (b_ih.has_value()) out.copy_(b_ih->expand({rows, width}));
    const at::Tensor w = w_ih.contiguous();
    blas_.multiply(rows, x.data_ptr<T>(), x.size(1),
                   Weight(w.data_ptr<T>(), width, w.size(1), /*transpose=*/true),
                   Acc(b_ih.has_value() ? 1 : 0), out.data_ptr<Acc>(), width);
    return out;
  }

  // The multiplies take the rows with one leading dimension.
  at::Tensor input_rows(const at::Tensor& input) const {
    return input.contiguous().view({-1, input.size(-1)});
  }

  // cuBLAS through ATen; 16-bit products accumulate in float32.
  at::Tensor product(const at::Tensor& a, const at::Tensor& b) const {
    return at::mm(a, b);
  }

  Weight weight(const at::Tensor& w, bool transpose, int64_t /*groups*/) const {
    return Weight(w.data_ptr<T>(), w.size(0), w.size(1), transpose);
  }

  template <class Cell>
  void forward_step(const ForwardStep<T>& step, const Weight& w_hh) const {
    const StepRows<T>& rows = step.rows;
    const int64_t width = Cell::kGates * step.hidden, P = step.out_size;
    if (step.h_multiplied != nullptr) {
      blas_.multiply(rows.live, step.h_multiplied, P, w_hh, Acc(0),
                     step.recurrent, width);
    } else {
      blas_.multiply(rows.continuing, rows.h_previous_step, P, w_hh, Acc(0),
                     step.recurrent, width);
      blas_.multiply(rows.live - rows.continuing,
                     rows.h0 + rows.continuing * P, P, w_hh, Acc(0),
                     step.recurrent + rows.continuing * width, width);
    }
    launch_forward_step<Cell, T>(step, stream_);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class Cell>
  void backward_step(const BackwardStep<T>& step) const {
    launch_backward_step<Cell, T>(step, stream_);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  void multiply(int64_t m, const T* a, int64_t lda, const Weight& w, Acc beta,
                Acc* c, int64_t ldc) const {
    blas_.multiply(m, a, lda, w, beta, c, ldc);
  }

  void project(int64_t m, const T* a, int64_t lda, const Weight& w, T* c,
               int64_t ldc, Acc* /*scratch*/) const {
    blas_.multiply(m, a, lda, w, Acc(0), c, ldc);
  }

  void add_output_gradient(int64_t n, const Acc* dh, const T* dy,
                           T* out) const {
    launch_add_output_gradient(n, dh, dy, out, stream_);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // Stream-ordered copy of n elements between device buffers.
  template <typename U>
  void copy(U* dst, const U* src, int64_t n) const {
    if (n == 0) return;
    C10_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(U),
                                   cudaMemcpyDeviceToDevice, stream_));
  }

  // op(b, j) for every unit of `rows` rows (regularization.h's passes).
  template <class Op>
  void for_each_unit(int64_t rows, int64_t width, const Op& op) const {
    launch_for_each_unit(rows, width, op, stream_);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // op(row, r) over rows, one block per row (normalization.h's passes).
  // Compiled, not yet run on a GPU.
  template <class Op>
  void for_each_row(int64_t rows, int64_t width, const Op& op) const {
    launch_for_each_row(rows, width, op, stream_);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class Cell>
  void recompute_hidden(int64_t rows, int64_t H, const Acc* saved,
                        const Acc* cells, T* out) const {
    launch_recompute_hidden<Cell, T>(rows, H, saved, cells, out, stream_);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

 private:
  c10::cuda::CUDAGuard device_guard_;
  cudaStream_t stream_;
  Blas blas_;  // after the guard: it takes the device's cuBLAS handle
};

}  // namespace fusedrnn::cuda
