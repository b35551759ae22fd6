// The per-row loops of the CPU executor's steps (fused_step_executor.h):
// the cell's math over a step's rows and units, forward and backward, in
// the form the compiler vectorises.
//
// T is the storage type and Acc = compute_t<T> the compute type (float for
// bfloat16): what the user sees and every multiply's left operand (outputs,
// h, gate gradients) is T; the cell math, the cell state, the per-step
// values the backward reads back and the state gradients are Acc.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../cells/row_stage.h"
#include "../core/step.h"
#include "matmul.h"

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

using fusedrnn::previous_cells;
using fusedrnn::previous_hidden;

// Rows per parallel task: enough gate elements to amortise waking a thread.
inline int64_t rows_per_task(int64_t row_elements) {
  constexpr int64_t kElementsPerTask = 32768;
  return std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, row_elements));
}

// Gate math of one step for rows [b0, b1) and units [j0, j1). `gates`
// holds the input projections on entry; the cell's saved values go to
// `saved`, or in place of the gates when it saves as many values as it has
// gates. The buffers never overlap; saying so (__restrict) is what lets the
// compiler turn the activations' clamps into vector selects and vectorise
// the unit loop.
template <typename Cell, typename T, typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void forward_units(
    int64_t b0, int64_t b1, int64_t j0, int64_t j1, int64_t H, int64_t P,
    const StepRows<T>& rows, Acc* __restrict gates, Acc* __restrict saved,
    const Acc* __restrict recurrent, const Acc* __restrict bias_h,
    Acc* __restrict c_out, T* __restrict h_out) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  for (int64_t b = b0; b < b1; ++b) {
    Acc* __restrict gate_row = gates + b * G * H;
    const Acc* __restrict rec_row = recurrent + b * G * H;
    T* __restrict h_row = h_out + b * H;
    const T* __restrict h_prev = previous_hidden<Cell>(rows, b, P);
    const Acc* __restrict c_prev = previous_cells<Cell>(rows, b, H);
    Acc* __restrict c_row = Cell::kHasCellState ? c_out + b * H : nullptr;
    for (int64_t j = j0; j < j1; ++j) {
      Acc h_new = Acc(0), c_new = Acc(0);
      Acc* saved_unit;
      if constexpr (S == G) {
        saved_unit = gate_row + j;
      } else {
        saved_unit = saved + b * S * H + j;
      }
      Cell::forward(gate_row + j, rec_row + j, bias_h + j, H,
                    Cell::kReadsPreviousHidden ? Acc(h_prev[j]) : Acc(0),
                    Cell::kHasCellState ? c_prev[j] : Acc(0), saved_unit,
                    h_new, c_new);
      h_row[j] = T(h_new);
      if constexpr (Cell::kHasCellState) c_row[j] = c_new;
    }
  }
}

// Gate derivatives of one step for rows [b0, b1) and units [j0, j1). On entry `dh` holds the
// gradient at h' (plus `dy` when kHasOutputGrad: as a template argument the
// test stays out of the loop); on exit h's own share of the gradient at the
// previous h, for cells that read h (the share through W_hh is added by the
// caller). `dc` goes from the gradient at c' to the one at c. The cell
// writes the gate gradients in the compute type to `row_x` and `row_h`
// ((live, G*H) each: dgates_x and dgates_h themselves when T is the compute
// type, a scratch block otherwise), from where they are stored in T.
template <typename Cell, bool kHasOutputGrad, typename T,
          typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void backward_rows(
    int64_t b0, int64_t b1, int64_t j0, int64_t j1, int64_t H, int64_t P,
    const StepRows<T>& rows, const Acc* __restrict saved, const Acc* __restrict cells,
    const T* __restrict dy, Acc* __restrict dh,
    Acc* __restrict dc, Acc* __restrict row_x, Acc* __restrict row_h,
    T* __restrict dgates_x, T* __restrict dgates_h) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  constexpr bool kSameType = std::is_same_v<T, Acc>;
  for (int64_t b = b0; b < b1; ++b) {
    const T* __restrict h_prev = previous_hidden<Cell>(rows, b, P);
    const Acc* __restrict c_prev = previous_cells<Cell>(rows, b, H);
    Acc* __restrict dx = row_x + b * G * H;
    // row_h is empty unless the cell splits its gradients.
    Acc* __restrict dr =
        Cell::kSplitRecurrentGrad ? row_h + b * G * H : nullptr;
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t u = b * H + j;
      const Acc dh_total = kHasOutputGrad ? dh[u] + Acc(dy[u]) : dh[u];
      Acc dh_prev = Acc(0), dc_prev = Acc(0);
      Cell::backward(saved + b * S * H + j, H,
                     Cell::kReadsPreviousHidden ? Acc(h_prev[j]) : Acc(0),
                     Cell::kHasCellState ? c_prev[j] : Acc(0),
                     Cell::kHasCellState ? cells[u] : Acc(0), dh_total,
                     Cell::kHasCellState ? dc[u] : Acc(0), dx + j,
                     Cell::kSplitRecurrentGrad ? dr + j : nullptr, dh_prev,
                     dc_prev);
      if constexpr (Cell::kReadsPreviousHidden) dh[u] = dh_prev;
      if constexpr (Cell::kHasCellState) dc[u] = dc_prev;
    }
    if constexpr (!kSameType) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t at = g * H;
        std::copy(dx + at + j0, dx + at + j1, dgates_x + b * G * H + at + j0);
        if constexpr (Cell::kSplitRecurrentGrad) {
          std::copy(dr + at + j0, dr + at + j1, dgates_h + b * G * H + at + j0);
        }
      }
    }
  }
}

// op(row, b) for rows [b0, b1) on the calling thread: the row passes of
// core/normalization.h (a normalized cell's row stage), compiled for each
// instruction set like the gate loops.
template <class Op>
FUSEDRNN_MULTIVERSION void run_rows(int64_t b0, int64_t b1, const Op& op) {
  const SerialRow row;
  for (int64_t b = b0; b < b1; ++b) op(row, b);
}

// The unprojected h of every row, recomputed from the saved values: the
// input of the projection, for W_hr's gradient.
template <typename Cell, typename T, typename Acc = compute_t<T>>
void recompute_unprojected(int64_t rows, int64_t H, const Acc* saved,
                           const Acc* cells, T* unprojected) {
  constexpr int64_t S = Cell::kSaved;
  at::parallel_for(0, rows, rows_per_task(H), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < H; ++j) {
        unprojected[r * H + j] = T(
            Cell::hidden_from_saved(saved + r * S * H + j, H, cells[r * H + j]));
      }
    }
  });
}

}  // namespace fusedrnn::cpu
