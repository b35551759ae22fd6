// The pointwise kernels declared in cell_kernels.h.
#include "cell_kernels.h"

#include "../core/cell_list.h"
#include "row_context.cuh"

namespace fusedrnn::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks covering n threads. Callers skip n == 0: a grid of zero blocks is
// a launch error.
unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

__device__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Unit j of row b's previous h (in the compute type) and c, as core/step.h
// picks them; zero for what the cell does not have.
template <typename Cell, typename T>
__device__ compute_t<T> previous_h(const StepRows<T>& rows, int64_t b,
                                   int64_t j, int64_t P) {
  const T* h = previous_hidden<Cell>(rows, b, P);
  return h != nullptr ? static_cast<compute_t<T>>(h[j]) : compute_t<T>(0);
}

template <typename Cell, typename T>
__device__ compute_t<T> previous_c(const StepRows<T>& rows, int64_t b,
                                   int64_t j, int64_t H) {
  const compute_t<T>* c = previous_cells<Cell>(rows, b, H);
  return c != nullptr ? c[j] : compute_t<T>(0);
}

// Thread u handles hidden unit j of row b (u = b * H + j): neighbouring
// threads read neighbouring units of the same gate, so every load and store
// is coalesced.
template <typename Cell, typename T>
__global__ void forward_step_kernel(ForwardStep<T> s) {
  using Acc = compute_t<T>;
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const int64_t H = s.hidden, u = thread_index();
  if (u >= s.rows.live * H) return;
  const int64_t b = u / H, j = u - b * H;
  const int64_t gate = b * G * H + j;
  Acc h_new, c_new = 0;
  Cell::forward(s.gates + gate, s.recurrent + gate, s.bias_h + j, H,
                previous_h<Cell>(s.rows, b, j, s.out_size),
                previous_c<Cell>(s.rows, b, j, H), s.saved + b * S * H + j,
                h_new, c_new);
  s.hidden_out[u] = static_cast<T>(h_new);
  if constexpr (Cell::kHasCellState) s.cells[u] = c_new;
}

// A cell reads its saved values and writes its gradients with one stride,
// but here they sit in buffers of different types (Acc and T); so both go
// through registers, with stride 1.
template <typename Cell, bool kHasOutputGrad, typename T>
__global__ void backward_step_kernel(BackwardStep<T> s) {
  using Acc = compute_t<T>;
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const int64_t H = s.hidden, u = thread_index();
  if (u >= s.rows.live * H) return;
  const int64_t b = u / H, j = u - b * H;
  Acc saved[S], dpre_x[G], dpre_h[G];
#pragma unroll
  for (int k = 0; k < S; ++k) saved[k] = s.saved[b * S * H + k * H + j];
  Acc dh = s.dh[u];
  if constexpr (kHasOutputGrad) dh += static_cast<Acc>(s.dy[u]);
  Acc c_new = 0, dc = 0;
  if constexpr (Cell::kHasCellState) {
    c_new = s.cells[u];
    dc = s.dc[u];
  }
  Acc dh_prev = 0, dc_prev = 0;
  Cell::backward(saved, 1, previous_h<Cell>(s.rows, b, j, s.out_size),
                 previous_c<Cell>(s.rows, b, j, H), c_new, dh, dc, dpre_x,
                 dpre_h, dh_prev, dc_prev);
  const int64_t gate = b * G * H + j;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    s.dgates_x[gate + g * H] = static_cast<T>(dpre_x[g]);
    if constexpr (Cell::kSplitRecurrentGrad) {
      s.dgates_h[gate + g * H] = static_cast<T>(dpre_h[g]);
    }
  }
  if constexpr (Cell::kReadsPreviousHidden) s.dh[u] = dh_prev;
  if constexpr (Cell::kHasCellState) s.dc[u] = dc_prev;
}

template <typename T>
__global__ void add_output_gradient_kernel(int64_t n, const compute_t<T>* dh,
                                           const T* dy, T* out) {
  using Acc = compute_t<T>;
  const int64_t i = thread_index();
  if (i >= n) return;
  const Acc sum = dy == nullptr ? dh[i] : dh[i] + static_cast<Acc>(dy[i]);
  out[i] = static_cast<T>(sum);
}

template <class Op>
__global__ void for_each_unit_kernel(int64_t rows, int64_t width, Op op) {
  const int64_t u = thread_index();
  if (u >= rows * width) return;
  const int64_t b = u / width;
  op(b, u - b * width);
}

template <class Op>
__global__ void for_each_row_kernel(Op op) {
  op(BlockRow{}, static_cast<int64_t>(blockIdx.x));
}

template <typename Cell, typename T>
__global__ void recompute_hidden_kernel(int64_t rows, int64_t H,
                                        const compute_t<T>* saved,
                                        const compute_t<T>* cells, T* out) {
  const int64_t u = thread_index();
  if (u >= rows * H) return;
  const int64_t r = u / H, j = u - r * H;
  out[u] = static_cast<T>(
      Cell::hidden_from_saved(saved + r * Cell::kSaved * H + j, H, cells[u]));
}

}  // namespace

template <typename Cell, typename T>
void launch_forward_step(const ForwardStep<T>& step, cudaStream_t stream) {
  // Normalized cells run row passes instead (launch_for_each_row).
  if constexpr (!Cell::kNormalized) {
    const int64_t n = step.rows.live * step.hidden;
    if (n == 0) return;
    forward_step_kernel<Cell, T><<<blocks_for(n), kThreads, 0, stream>>>(step);
  }
}

template <typename Cell, typename T>
void launch_backward_step(const BackwardStep<T>& step, cudaStream_t stream) {
  if constexpr (!Cell::kNormalized) {
    const int64_t n = step.rows.live * step.hidden;
    if (n == 0) return;
    if (step.dy != nullptr) {
      backward_step_kernel<Cell, true, T>
          <<<blocks_for(n), kThreads, 0, stream>>>(step);
    } else {
      backward_step_kernel<Cell, false, T>
          <<<blocks_for(n), kThreads, 0, stream>>>(step);
    }
  }
}

template <typename T>
void launch_add_output_gradient(int64_t n, const compute_t<T>* dh,
                                const T* dy, T* out, cudaStream_t stream) {
  if (n == 0) return;
  add_output_gradient_kernel<T>
      <<<blocks_for(n), kThreads, 0, stream>>>(n, dh, dy, out);
}

template <class Op>
void launch_for_each_unit(int64_t rows, int64_t width, const Op& op,
                          cudaStream_t stream) {
  const int64_t n = rows * width;
  if (n == 0) return;
  for_each_unit_kernel<Op><<<blocks_for(n), kThreads, 0, stream>>>(rows, width,
                                                                   op);
}

template <class Op>
void launch_for_each_row(int64_t rows, int64_t width, const Op& op,
                         cudaStream_t stream) {
  if (rows == 0) return;
  // A block of 256 threads per row, fewer for narrow rows (whole warps).
  const int64_t warps = (width + 31) / 32;
  const unsigned int threads =
      static_cast<unsigned int>(32 * (warps < 8 ? (warps < 1 ? 1 : warps) : 8));
  for_each_row_kernel<Op>
      <<<static_cast<unsigned int>(rows), threads, 0, stream>>>(op);
}

template <typename Cell, typename T>
void launch_recompute_hidden(int64_t rows, int64_t hidden,
                             const compute_t<T>* saved,
                             const compute_t<T>* cells, T* out,
                             cudaStream_t stream) {
  const int64_t n = rows * hidden;
  if constexpr (Cell::kHasCellState && !Cell::kNormalized) {
    if (n == 0) return;
    recompute_hidden_kernel<Cell, T><<<blocks_for(n), kThreads, 0, stream>>>(
        rows, hidden, saved, cells, out);
  }
}

// Every cell of core/cell_list.h in every storage type.
#define FUSEDRNN_INSTANTIATE_CELL(name, Cell, T)                              \
  template void launch_forward_step<Cell, T>(const ForwardStep<T>&,           \
                                             cudaStream_t);                   \
  template void launch_backward_step<Cell, T>(const BackwardStep<T>&,         \
                                              cudaStream_t);                  \
  template void launch_recompute_hidden<Cell, T>(                             \
      int64_t, int64_t, const compute_t<T>*, const compute_t<T>*, T*,         \
      cudaStream_t);                                                          \
  FUSEDRNN_INSTANTIATE_ROWS(InputNormForward<Cell, T>)                        \
  FUSEDRNN_INSTANTIATE_ROWS(InputNormBackward<Cell, T>)                       \
  FUSEDRNN_INSTANTIATE_ROWS(NormalizedForwardStep<Cell, T>)                   \
  FUSEDRNN_INSTANTIATE_ROWS(NormalizedBackwardStep<Cell, T>)                  \
  FUSEDRNN_INSTANTIATE_ROWS(NormalizedHidden<Cell, T>)
#define FUSEDRNN_INSTANTIATE_ROWS(...)                                        \
  template void launch_for_each_row<__VA_ARGS__>(                             \
      int64_t, int64_t, const __VA_ARGS__&, cudaStream_t);
#define FUSEDRNN_INSTANTIATE_PASS(...)                                        \
  template void launch_for_each_unit<__VA_ARGS__>(                            \
      int64_t, int64_t, const __VA_ARGS__&, cudaStream_t);
#define FUSEDRNN_INSTANTIATE_TYPE(T, Name, name)                              \
  template void launch_add_output_gradient<T>(                                \
      int64_t, const compute_t<T>*, const T*, T*, cudaStream_t);              \
  FUSEDRNN_INSTANTIATE_PASS(ZoneoutForward<T, compute_t<T>>)                  \
  FUSEDRNN_INSTANTIATE_PASS(ZoneoutBackward<T, compute_t<T>>)                 \
  FUSEDRNN_INSTANTIATE_PASS(RecurrentDropoutForward<T>)                       \
  FUSEDRNN_INSTANTIATE_PASS(RecurrentDropoutRows<T>)                          \
  FUSEDRNN_FOR_EACH_CELL(FUSEDRNN_INSTANTIATE_CELL, T)
FUSEDRNN_FOR_EACH_STORAGE_TYPE(FUSEDRNN_INSTANTIATE_TYPE)
// The passes over compute-type state (zoneout of c, gradients) are the
// (T, T) ones of float and double above, plus these.
FUSEDRNN_INSTANTIATE_PASS(AddGradient<float>)
FUSEDRNN_INSTANTIATE_PASS(AddGradient<double>)
#undef FUSEDRNN_INSTANTIATE_TYPE
#undef FUSEDRNN_INSTANTIATE_PASS
#undef FUSEDRNN_INSTANTIATE_ROWS
#undef FUSEDRNN_INSTANTIATE_CELL

}  // namespace fusedrnn::cuda
