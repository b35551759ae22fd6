// The pointwise CUDA kernels of the sequence driver (sequence_driver.h),
// behind plain launch functions.
//
// The kernels live in cell_kernels.cu, which includes no ATen header: nvcc
// parses a .cu file once per target architecture, and the host code that
// needs ATen (buffers, checks, cuBLAS) compiles much faster as plain C++.
//
// Each step kernel runs one thread per (row, hidden unit) of a step and
// calls the cell's per-unit math (cells/README.md), the same functions the
// CPU driver runs. T is the storage type (float, double, c10::Half,
// c10::BFloat16) and Acc = accumulate_t<T> the compute type; each pointer
// below says which of the two it holds. Launches go to `stream` and do not
// synchronise; the caller checks for launch errors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "accumulate.h"

namespace fusedrnn::cuda {

// Where one step's rows are, as in the CPU driver's StepRows: row b < live
// of the previous state comes from the previous step while b < continuing,
// from the initial state otherwise. Pointers a cell does not use are null:
// the h pointers unless it reads the previous h (kReadsPreviousHidden), the
// c pointers without a cell state.
template <typename T>
struct StepRows {
  using Acc = accumulate_t<T>;
  int64_t live, continuing;
  const T* h_previous_step;   // (.., P)
  const T* h0;                // (B, P)
  const Acc* c_previous_step; // (.., H)
  const Acc* c0;              // (B, H)
};

// One forward step. Rows b >= ending end their sequence here and also write
// their final c to c_n (the driver copies h_n once the output is final).
template <typename T>
struct ForwardStep {
  using Acc = accumulate_t<T>;
  StepRows<T> rows;
  int64_t hidden, out_size, ending;  // H, P
  Acc* gates;            // (live, G*H): input projections (with b_ih)
  Acc* saved;            // (live, S*H): saved values; == gates when S == G
  const Acc* recurrent;  // (live, G*H): h_prev W_hh^T
  const Acc* bias_h;     // (G*H): b_hh, zeros without bias
  T* hidden_out;         // (live, H): the output, or the unprojected h
  Acc* cells;            // (live, H), cell state only
  T* c_n;                // (B, H), cell state only
};

// One backward step. `dh` holds the gradient reaching h' (plus dy when dy
// is not null) and is overwritten with h's own share of the gradient at the
// previous h for cells that read h; `dc` goes from the gradient at c' to
// the one at c.
template <typename T>
struct BackwardStep {
  using Acc = accumulate_t<T>;
  StepRows<T> rows;
  int64_t hidden, out_size;  // H, P
  const Acc* saved;      // (live, S*H)
  const Acc* cells;      // (live, H): this step's cell states, or null
  const T* dy;           // (live, H): gradient at the output, or null
  Acc* dh;               // (live, H)
  Acc* dc;               // (live, H), cell state only
  T* dgates_x;           // (live, G*H): input pre-activation gradients
  T* dgates_h;           // (live, G*H): recurrent ones, == dgates_x unless split
};

template <typename Cell, typename T>
void launch_forward_step(const ForwardStep<T>& step, cudaStream_t stream);

template <typename Cell, typename T>
void launch_backward_step(const BackwardStep<T>& step, cudaStream_t stream);

// out = dh + dy (dy may be null) over n elements: the gradient at a step's
// projected output.
template <typename T>
void launch_add_output_gradient(int64_t n, const accumulate_t<T>* dh,
                                const T* dy, T* out, cudaStream_t stream);

// The cell's output before the projection (cells with a cell state),
// recomputed for `rows` rows from the saved values and cell states.
template <typename Cell, typename T>
void launch_recompute_hidden(int64_t rows, int64_t hidden,
                             const accumulate_t<T>* saved,
                             const accumulate_t<T>* cells, T* out,
                             cudaStream_t stream);

}  // namespace fusedrnn::cuda
