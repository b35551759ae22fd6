// The CPU time loop shared by every recurrent cell.
//
// One (layer, direction) per call. The caller has already computed the input
// projection of all steps with one large multiply; this driver runs the part
// that cannot be batched over time. Per step: one recurrent multiply into a
// scratch row block, then one pass over the gates of each batch row, while
// they are still in cache, that applies the cell's math and writes the new
// state. No tensors are created and no ATen ops run inside the loop.
//
// Buffers are row-major, time-major and contiguous: gates (T, B, G*H),
// outputs and cell states (T, B, H). A cell contributes only kGates and its
// per-unit forward/backward (see cells/).
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>

#include "blas.h"

// Compile the per-row gate loops for AVX-512, AVX2 and baseline x86-64 and
// pick one when the library loads, so one binary vectorises the activations
// on every CPU it runs on.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FUSEDRNN_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FUSEDRNN_MULTIVERSION
#endif

namespace fusedrnn::cpu {

struct SequenceDims {
  int64_t steps;   // T
  int64_t batch;   // B
  int64_t hidden;  // H
  bool reverse;    // run from the last step to the first

  // Step index of the s-th step in processing order.
  int64_t step(int64_t s) const { return reverse ? steps - 1 - s : s; }
  // Step processed just before step t (only valid when t is not the first).
  int64_t previous(int64_t t) const { return reverse ? t + 1 : t - 1; }
};

// Rows per parallel task: enough gate elements to amortise waking a thread.
inline int64_t rows_per_task(int64_t row_elements) {
  constexpr int64_t kElementsPerTask = 32768;
  return row_elements >= kElementsPerTask ? 1 : kElementsPerTask / row_elements;
}

// Gate math of one step for batch rows [b0, b1). `gates` holds the input
// projections on entry and the cell's saved values on exit.
// The buffers never overlap; saying so (__restrict) is what lets the compiler
// turn the activations' clamps into vector selects and vectorise the loop.
template <typename Cell, typename T>
FUSEDRNN_MULTIVERSION void forward_rows(int64_t b0, int64_t b1, int64_t H,
                                        T* __restrict gates,
                                        const T* __restrict recurrent,
                                        const T* __restrict c_prev,
                                        T* __restrict c_out,
                                        T* __restrict h_out) {
  const int64_t row = Cell::kGates * H;
  for (int64_t b = b0; b < b1; ++b) {
    T* gate_row = gates + b * row;
    const T* rec_row = recurrent + b * row;
    for (int64_t j = 0; j < H; ++j) {
      Cell::forward(gate_row + j, rec_row + j, H, c_prev[b * H + j],
                    gate_row + j, c_out[b * H + j], h_out[b * H + j]);
    }
  }
}

// Gate derivatives of one step for batch rows [b0, b1). `dh` holds the
// gradient reaching h from the next step and is read only; `dc` is updated
// in place from the gradient at c' to the gradient at c. kHasOutputGrad says
// whether `dy` (the gradient at the layer's output) exists; as a template
// argument it keeps the test out of the vectorised loop.
template <typename Cell, bool kHasOutputGrad, typename T>
FUSEDRNN_MULTIVERSION void backward_rows(int64_t b0, int64_t b1, int64_t H,
                                         const T* __restrict saved,
                                         const T* __restrict c_prev,
                                         const T* __restrict c_new,
                                         const T* __restrict dy,
                                         const T* __restrict dh,
                                         T* __restrict dc,
                                         T* __restrict dgates) {
  const int64_t row = Cell::kGates * H;
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t j = 0; j < H; ++j) {
      const int64_t u = b * H + j;
      const T dh_total = kHasOutputGrad ? dh[u] + dy[u] : dh[u];
      Cell::backward(saved + b * row + j, H, c_prev[u], c_new[u], dh_total,
                     dc[u], dgates + b * row + j, dc[u]);
    }
  }
}

// Forward time loop. On entry `gates` holds x W_ih^T + biases for all steps;
// on exit the saved gate values. Writes outputs `y` and cell states `cells`
// for every step. `recurrent` is (B, G*H) scratch.
template <typename Cell, typename T>
void forward_sequence(const SequenceDims& d, const T* w_hh, const T* h0,
                      const T* c0, T* gates, T* y, T* cells, T* recurrent) {
  const int64_t B = d.batch, H = d.hidden, G = Cell::kGates;
  const int64_t grain = rows_per_task(G * H);
  for (int64_t s = 0; s < d.steps; ++s) {
    const int64_t t = d.step(s);
    const T* h_prev = s == 0 ? h0 : y + d.previous(t) * B * H;
    const T* c_prev = s == 0 ? c0 : cells + d.previous(t) * B * H;
    gemm(false, true, B, G * H, H, T(1), h_prev, H, w_hh, H, T(0), recurrent,
         G * H);
    T* gates_t = gates + t * B * G * H;
    T* cells_t = cells + t * B * H;
    T* y_t = y + t * B * H;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      forward_rows<Cell>(b0, b1, H, gates_t, recurrent, c_prev, cells_t, y_t);
    });
  }
}

// Backward time loop, steps in the reverse of processing order. On entry
// `dh`/`dc` (B, H) hold the gradients at the final state, on exit those at
// the initial state. `dy` (T, B, H) may be null (no output gradient).
// Writes the pre-activation gradients of every step to `dgates`.
template <typename Cell, typename T>
void backward_sequence(const SequenceDims& d, const T* w_hh, const T* c0,
                       const T* saved, const T* cells, const T* dy, T* dh,
                       T* dc, T* dgates) {
  const int64_t B = d.batch, H = d.hidden, G = Cell::kGates;
  const int64_t grain = rows_per_task(G * H);
  for (int64_t s = d.steps - 1; s >= 0; --s) {
    const int64_t t = d.step(s);
    const T* c_prev = s == 0 ? c0 : cells + d.previous(t) * B * H;
    const T* saved_t = saved + t * B * G * H;
    const T* cells_t = cells + t * B * H;
    const T* dy_t = dy == nullptr ? nullptr : dy + t * B * H;
    T* dgates_t = dgates + t * B * G * H;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      if (dy_t != nullptr) {
        backward_rows<Cell, true>(b0, b1, H, saved_t, c_prev, cells_t, dy_t,
                                  dh, dc, dgates_t);
      } else {
        backward_rows<Cell, false>(b0, b1, H, saved_t, c_prev, cells_t, dy_t,
                                   dh, dc, dgates_t);
      }
    });
    // dh for the step before: the pre-activation gradients through W_hh.
    // The row pass above has consumed dh, so it can be overwritten.
    gemm(false, false, B, H, G * H, T(1), dgates_t, G * H, w_hh, H, T(0), dh,
         H);
  }
}

}  // namespace fusedrnn::cpu
