// The CPU time loop shared by every recurrent cell.
//
// One (layer, direction) per call, dense or packed (see sequence_layout.h).
// The caller has already computed the input projection of all steps with
// one large multiply; this driver runs the part that cannot be batched over
// time. Per step: the recurrent multiply of the live rows into a scratch
// block, then one pass over the gates of each row, while they are still in
// cache, that applies the cell's math and writes the new state (and, with a
// projection, one more multiply). No tensors are created and no ATen ops run
// inside the loop.
//
// Buffers are row-major with the rows of all steps one after another:
// gates (rows, G*H), outputs (rows, P), cell states (rows, H); P is the
// projection size, or H without one. A cell contributes its gate count and
// its per-unit math (cells/README.md); everything else is shared.
//
// T is the storage type and Acc = compute_t<T> the compute type (float for
// bfloat16): what the user sees and every multiply's left operand (outputs,
// h, gate gradients) is T; the cell math, the cell state, the per-step
// values the backward reads back and the state gradients are Acc, as in
// the CUDA driver. For float and double the two are the same.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "matmul.h"
#include "sequence_layout.h"

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

// Rows per parallel task: enough gate elements to amortise waking a thread.
inline int64_t rows_per_task(int64_t row_elements) {
  constexpr int64_t kElementsPerTask = 32768;
  return std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, row_elements));
}

// Row b of a step's previous state: the previous step's row while the
// sequence continues (b < continuing), the initial state's row otherwise.
template <typename T>
const T* previous_row(int64_t b, int64_t continuing, const T* previous_step,
                      const T* initial, int64_t width) {
  return (b < continuing ? previous_step : initial) + b * width;
}

// Where one step's rows are. Pointers a cell does not use are null:
// c (no cell state), saved (saved in place of the gates), h_prev (the cell
// does not read it). Row b of the previous state comes from
// previous_row(b, continuing, *_previous_step, *0, width).
template <typename T>
struct StepRows {
  using Acc = compute_t<T>;
  int64_t continuing;
  const T* h_previous_step;    // (.., P)
  const T* h0;                 // (B, P)
  const Acc* c_previous_step;  // (.., H)
  const Acc* c0;               // (B, H)
  const Acc* c;                // (live, H): this step's cell state (backward)
};

// Gate math of one step for rows [0, live) and units [j0, j1). `gates`
// holds the input projections on entry; the cell's saved values go to
// `saved`, or in place of the gates when it saves as many values as it has
// gates. The buffers never overlap; saying so (__restrict) is what lets the
// compiler turn the activations' clamps into vector selects and vectorise
// the unit loop.
template <typename Cell, typename T, typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void forward_units(
    int64_t live, int64_t j0, int64_t j1, int64_t H, int64_t P,
    const StepRows<T>& rows, Acc* __restrict gates, Acc* __restrict saved,
    const Acc* __restrict recurrent, const Acc* __restrict bias_h,
    Acc* __restrict c_out, T* __restrict h_out) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  for (int64_t b = 0; b < live; ++b) {
    Acc* __restrict gate_row = gates + b * G * H;
    const Acc* __restrict rec_row = recurrent + b * G * H;
    T* __restrict h_row = h_out + b * H;
    const T* __restrict h_prev = nullptr;
    if constexpr (Cell::kReadsPreviousHidden) {
      h_prev = previous_row(b, rows.continuing, rows.h_previous_step, rows.h0, P);
    }
    const Acc* __restrict c_prev = nullptr;
    Acc* __restrict c_row = nullptr;
    if constexpr (Cell::kHasCellState) {
      c_prev = previous_row(b, rows.continuing, rows.c_previous_step, rows.c0, H);
      c_row = c_out + b * H;
    }
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

// Gate derivatives of one step for rows [b0, b1). On entry `dh` holds the
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
    int64_t b0, int64_t b1, int64_t H, int64_t P, const StepRows<T>& rows,
    const Acc* __restrict saved, const T* __restrict dy, Acc* __restrict dh,
    Acc* __restrict dc, Acc* __restrict row_x, Acc* __restrict row_h,
    T* __restrict dgates_x, T* __restrict dgates_h) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  constexpr bool kSameType = std::is_same_v<T, Acc>;
  for (int64_t b = b0; b < b1; ++b) {
    const T* __restrict h_prev = nullptr;
    if constexpr (Cell::kReadsPreviousHidden) {
      h_prev = previous_row(b, rows.continuing, rows.h_previous_step, rows.h0, P);
    }
    const Acc* __restrict c_prev = nullptr;
    if constexpr (Cell::kHasCellState) {
      c_prev = previous_row(b, rows.continuing, rows.c_previous_step, rows.c0, H);
    }
    Acc* __restrict dx = row_x + b * G * H;
    // row_h is empty unless the cell splits its gradients.
    Acc* __restrict dr =
        Cell::kSplitRecurrentGrad ? row_h + b * G * H : nullptr;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t u = b * H + j;
      const Acc dh_total = kHasOutputGrad ? dh[u] + Acc(dy[u]) : dh[u];
      Acc dh_prev = Acc(0), dc_prev = Acc(0);
      Cell::backward(saved + b * S * H + j, H,
                     Cell::kReadsPreviousHidden ? Acc(h_prev[j]) : Acc(0),
                     Cell::kHasCellState ? c_prev[j] : Acc(0),
                     Cell::kHasCellState ? rows.c[u] : Acc(0), dh_total,
                     Cell::kHasCellState ? dc[u] : Acc(0), dx + j,
                     Cell::kSplitRecurrentGrad ? dr + j : nullptr, dh_prev,
                     dc_prev);
      if constexpr (Cell::kReadsPreviousHidden) dh[u] = dh_prev;
      if constexpr (Cell::kHasCellState) dc[u] = dc_prev;
    }
    if constexpr (!kSameType) {
      std::copy(dx, dx + G * H, dgates_x + b * G * H);
      if constexpr (Cell::kSplitRecurrentGrad) {
        std::copy(dr, dr + G * H, dgates_h + b * G * H);
      }
    }
  }
}

template <typename T>
struct ForwardBuffers {
  using Acc = compute_t<T>;
  const T* h0;        // (B, P)
  const Acc* c0;      // (B, H), cells with a cell state only
  const Acc* bias_h;  // (G*H): b_hh, zeros without bias
  Acc* gates;         // (rows, G*H): input projections (with b_ih) in
  Acc* saved;         // (rows, S*H): the saved values; == gates when S == G
  T* output;          // (rows, P)
  Acc* cells;         // (rows, H), cells with a cell state only
  T* h_n;             // (B, P): each sequence's state after its last step
  Acc* c_n;           // (B, H), cells with a cell state only
  Acc* recurrent;     // (B, G*H) scratch
  T* unprojected;     // (B, H) scratch, with a projection only
  Acc* projected;     // (B, P) scratch, with a projection when T != Acc
};

// Slices of units per parallel task of a forward step: enough
// multiply-adds to amortise waking a thread (about a microsecond's worth).
// Split finely enough, each thread's share of W_hh stays in its own L2
// even at batch 1: at T=100, B=1, H=256 that made the forward 1.7x faster
// than with 4x this work per task, which ran it on one thread from L3.
inline int64_t slices_per_task(int64_t live, int64_t K, int64_t gates) {
  constexpr int64_t kWorkPerTask = 1 << 16;
  const int64_t slice_work = std::max<int64_t>(
      1, live * K * gates * kUnitSlice);
  return std::max<int64_t>(1, kWorkPerTask / slice_work);
}

// Forward time loop. `w_hh` is op(W_hh) = W_hh^T (P -> G*H) in G blocks
// (one per gate); `w_hr`, when not null, is W_hr^T (H -> P).
//
// A step is one parallel region: each thread takes whole slices of hidden
// units, multiplies the recurrent columns of every gate of its units and
// applies the cell's math to them while they are in its cache. Threads
// meet only at the end of the step (and around the projection, which needs
// every unit).
template <typename Cell, typename T>
void forward_sequence(const SequenceLayout& layout, int64_t H, int64_t P,
                      const RightOperand<T>& w_hh,
                      const RightOperand<T>* w_hr,
                      const ForwardBuffers<T>& buf) {
  using Acc = compute_t<T>;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t row0 = layout.offset(t);
    const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
    const StepRows<T> rows{layout.continuing(s), buf.output + prev_row0 * P,
                           buf.h0,
                           buf.cells ? buf.cells + prev_row0 * H : nullptr,
                           buf.c0, nullptr};

    Acc* gates_t = buf.gates + row0 * G * H;
    Acc* saved_t = buf.saved + row0 * S * H;
    Acc* cells_t = buf.cells ? buf.cells + row0 * H : nullptr;
    T* output_t = buf.output + row0 * P;
    T* h_out = w_hr != nullptr ? buf.unprojected : output_t;
    at::parallel_for(
        0, w_hh.unit_slices(), slices_per_task(live, P, G),
        [&](int64_t s0, int64_t s1) {
          multiply_units(rows.continuing, rows.h_previous_step, P, w_hh, s0,
                         s1, buf.recurrent, G * H);
          multiply_units(live - rows.continuing,
                         buf.h0 + rows.continuing * P, P, w_hh, s0, s1,
                         buf.recurrent + rows.continuing * G * H, G * H);
          forward_units<Cell>(live, s0 * kUnitSlice,
                              std::min(H, s1 * kUnitSlice), H, P, rows,
                              gates_t, saved_t, buf.recurrent, buf.bias_h,
                              cells_t, h_out);
        });
    if (w_hr != nullptr) {
      if constexpr (std::is_same_v<T, Acc>) {
        multiply(live, buf.unprojected, H, *w_hr, T(0), output_t, P);
      } else {
        multiply(live, buf.unprojected, H, *w_hr, Acc(0), buf.projected, P);
        std::copy(buf.projected, buf.projected + live * P, output_t);
      }
    }
    // Sequences whose last step this was hand over their final state.
    const int64_t ending = layout.live_after(s);
    std::copy(output_t + ending * P, output_t + live * P, buf.h_n + ending * P);
    if (cells_t != nullptr) {
      std::copy(cells_t + ending * H, cells_t + live * H, buf.c_n + ending * H);
    }
  }
}

template <typename T>
struct BackwardBuffers {
  using Acc = compute_t<T>;
  const T* h0;           // (B, P)
  const Acc* c0;         // (B, H), cells with a cell state only
  const T* output;       // (rows, P): the forward's outputs
  const Acc* saved;      // (rows, S*H): the forward's saved values
  const Acc* cells;      // (rows, H), cells with a cell state only
  const T* output_grad;  // (rows, P), or null when no gradient reached it
  Acc* dh;               // (B, P): gradient at h_n in, at h0 out
  Acc* dc;               // (B, H): gradient at c_n in, at c0 out (or null)
  T* dgates_x;           // (rows, G*H): input pre-activation gradients out
  T* dgates_h;           // (rows, G*H): recurrent ones, == dgates_x unless split
  T* dprojected;         // (rows, P): projection only, gradient at each output
  Acc* dunprojected;     // (B, H) scratch, projection only
  // (B, G*H) scratch each when T != Acc: one step's gate gradients in Acc
  // (row_h only for cells that split them).
  Acc* row_x;
  Acc* row_h;
};

// Backward time loop, steps in the reverse of processing order. `w_hh` is
// op(W_hh) = W_hh (G*H -> P); `w_hr`, when not null, is W_hr (P -> H).
template <typename Cell, typename T>
void backward_sequence(const SequenceLayout& layout, int64_t H, int64_t P,
                       const RightOperand<T>& w_hh,
                       const RightOperand<T>* w_hr,
                       const BackwardBuffers<T>& buf) {
  using Acc = compute_t<T>;
  constexpr bool kSameType = std::is_same_v<T, Acc>;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t grain = rows_per_task(G * H);
  for (int64_t s = layout.steps() - 1; s >= 0; --s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t row0 = layout.offset(t);
    const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
    const StepRows<T> rows{
        layout.continuing(s), buf.output + prev_row0 * P, buf.h0,
        buf.cells ? buf.cells + prev_row0 * H : nullptr, buf.c0,
        buf.cells ? buf.cells + row0 * H : nullptr};
    const T* dy = buf.output_grad == nullptr ? nullptr
                                             : buf.output_grad + row0 * P;
    Acc* dh = buf.dh;
    if (w_hr != nullptr) {
      // The gradient at the projected output, kept for W_hr's gradient,
      // then carried back through W_hr to the unprojected h.
      T* dprojected = buf.dprojected + row0 * P;
      for (int64_t i = 0; i < live * P; ++i) {
        dprojected[i] = T(buf.dh[i] + (dy == nullptr ? Acc(0) : Acc(dy[i])));
      }
      multiply(live, dprojected, P, *w_hr, Acc(0), buf.dunprojected, H);
      dh = buf.dunprojected;
      dy = nullptr;
    }
    const Acc* saved_t = buf.saved + row0 * S * H;
    T* dgates_x = buf.dgates_x + row0 * G * H;
    T* dgates_h = buf.dgates_h + row0 * G * H;
    Acc* row_x = buf.row_x;
    Acc* row_h = buf.row_h;
    if constexpr (kSameType) {
      row_x = dgates_x;
      row_h = dgates_h;
    }
    at::parallel_for(0, live, grain, [&](int64_t b0, int64_t b1) {
      if (dy != nullptr) {
        backward_rows<Cell, true>(b0, b1, H, P, rows, saved_t, dy, dh, buf.dc,
                                  row_x, row_h, dgates_x, dgates_h);
      } else {
        backward_rows<Cell, false>(b0, b1, H, P, rows, saved_t, dy, dh, buf.dc,
                                   row_x, row_h, dgates_x, dgates_h);
      }
    });
    // The gradient at the previous h of the live rows through W_hh, added
    // to h's own share where the cell has one. Rows that started from the
    // initial state keep theirs: it is the gradient at h0.
    multiply(live, dgates_h, G * H, w_hh,
             Cell::kReadsPreviousHidden ? Acc(1) : Acc(0), buf.dh, P);
  }
}

// The h each step's recurrent multiply read, as a (rows, P) matrix: the
// previous step's output, or h0 for rows that started there. W_hh's
// gradient is then one multiply over all steps.
template <typename T>
void gather_previous_outputs(const SequenceLayout& layout, int64_t P,
                             const T* output, const T* h0, T* h_prev) {
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t continuing = layout.continuing(s);
    T* dst = h_prev + layout.offset(t) * P;
    if (continuing > 0) {
      const T* src = output + layout.offset(layout.step(s - 1)) * P;
      std::copy(src, src + continuing * P, dst);
    }
    std::copy(h0 + continuing * P, h0 + live * P, dst + continuing * P);
  }
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
