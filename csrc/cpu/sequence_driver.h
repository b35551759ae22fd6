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
// projection size, or H without one. A cell contributes kGates and its
// per-unit math (see cells/).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

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

// Gate math of one step for rows [b0, b1). `gates` holds the input
// projections on entry and the cell's saved values on exit. The buffers
// never overlap; saying so (__restrict) is what lets the compiler turn the
// activations' clamps into vector selects and vectorise the unit loop.
template <typename Cell, typename T>
FUSEDRNN_MULTIVERSION void forward_rows(
    int64_t b0, int64_t b1, int64_t H, int64_t continuing,
    T* __restrict gates, const T* __restrict recurrent,
    const T* __restrict c_previous_step, const T* __restrict c0,
    T* __restrict c_out, T* __restrict h_out) {
  const int64_t row = Cell::kGates * H;
  for (int64_t b = b0; b < b1; ++b) {
    T* __restrict gate_row = gates + b * row;
    const T* __restrict rec_row = recurrent + b * row;
    const T* __restrict c_prev =
        previous_row(b, continuing, c_previous_step, c0, H);
    T* __restrict c_row = c_out + b * H;
    T* __restrict h_row = h_out + b * H;
    for (int64_t j = 0; j < H; ++j) {
      Cell::forward(gate_row + j, rec_row + j, H, c_prev[j], gate_row + j,
                    c_row[j], h_row[j]);
    }
  }
}

// Gate derivatives of one step for rows [b0, b1). `dh` (the gradient
// reaching the unprojected h) is read only; `dc` is updated in place from
// the gradient at c' to the gradient at c. kHasOutputGrad says whether `dy`
// is added to dh; as a template argument it keeps the test out of the loop.
template <typename Cell, bool kHasOutputGrad, typename T>
FUSEDRNN_MULTIVERSION void backward_rows(
    int64_t b0, int64_t b1, int64_t H, int64_t continuing,
    const T* __restrict saved, const T* __restrict c_previous_step,
    const T* __restrict c0, const T* __restrict c_new,
    const T* __restrict dy, const T* __restrict dh, T* __restrict dc,
    T* __restrict dgates) {
  const int64_t row = Cell::kGates * H;
  for (int64_t b = b0; b < b1; ++b) {
    const T* __restrict c_prev =
        previous_row(b, continuing, c_previous_step, c0, H);
    for (int64_t j = 0; j < H; ++j) {
      const int64_t u = b * H + j;
      const T dh_total = kHasOutputGrad ? dh[u] + dy[u] : dh[u];
      Cell::backward(saved + b * row + j, H, c_prev[j], c_new[u], dh_total,
                     dc[u], dgates + b * row + j, dc[u]);
    }
  }
}

template <typename T>
struct ForwardBuffers {
  const T* h0;     // (B, P)
  const T* c0;     // (B, H)
  T* gates;        // (rows, G*H): input projections in, saved values out
  T* output;       // (rows, P)
  T* cells;        // (rows, H)
  T* h_n;          // (B, P): each sequence's state after its last step
  T* c_n;          // (B, H)
  T* recurrent;    // (B, G*H) scratch
  T* unprojected;  // (B, H) scratch, with a projection only
};

// Forward time loop. `w_hh` is op(W_hh) = W_hh^T (P -> G*H); `w_hr`, when
// not null, is W_hr^T (H -> P).
template <typename Cell, typename T>
void forward_sequence(const SequenceLayout& layout, int64_t H, int64_t P,
                      const RightOperand<T>& w_hh,
                      const RightOperand<T>* w_hr,
                      const ForwardBuffers<T>& buf) {
  const int64_t G = Cell::kGates;
  const int64_t grain = rows_per_task(G * H);
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t row0 = layout.offset(t);
    const int64_t continuing = layout.continuing(s);
    const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
    const T* h_prev = buf.output + prev_row0 * P;
    const T* c_prev = buf.cells + prev_row0 * H;

    multiply(continuing, h_prev, P, w_hh, T(0), buf.recurrent, G * H);
    multiply(live - continuing, buf.h0 + continuing * P, P, w_hh, T(0),
             buf.recurrent + continuing * G * H, G * H);
    T* gates_t = buf.gates + row0 * G * H;
    T* cells_t = buf.cells + row0 * H;
    T* output_t = buf.output + row0 * P;
    T* h_out = w_hr != nullptr ? buf.unprojected : output_t;
    at::parallel_for(0, live, grain, [&](int64_t b0, int64_t b1) {
      forward_rows<Cell>(b0, b1, H, continuing, gates_t, buf.recurrent,
                         c_prev, buf.c0, cells_t, h_out);
    });
    if (w_hr != nullptr) {
      multiply(live, buf.unprojected, H, *w_hr, T(0), output_t, P);
    }
    // Sequences whose last step this was hand over their final state.
    const int64_t ending = layout.live_after(s);
    if (ending < live) {
      std::copy(output_t + ending * P, output_t + live * P, buf.h_n + ending * P);
      std::copy(cells_t + ending * H, cells_t + live * H, buf.c_n + ending * H);
    }
  }
}

template <typename T>
struct BackwardBuffers {
  const T* c0;           // (B, H)
  const T* saved;        // (rows, G*H): the forward's saved gate values
  const T* cells;        // (rows, H)
  const T* output_grad;  // (rows, P), or null when no gradient reached it
  T* dh;                 // (B, P): gradient at h_n in, at h0 out
  T* dc;                 // (B, H): gradient at c_n in, at c0 out
  T* dgates;             // (rows, G*H): pre-activation gradients out
  T* dprojected;         // (rows, P): projection only, gradient at each output
  T* dunprojected;       // (B, H) scratch, projection only
};

// Backward time loop, steps in the reverse of processing order. `w_hh` is
// op(W_hh) = W_hh (G*H -> P); `w_hr`, when not null, is W_hr (P -> H).
template <typename Cell, typename T>
void backward_sequence(const SequenceLayout& layout, int64_t H, int64_t P,
                       const RightOperand<T>& w_hh,
                       const RightOperand<T>* w_hr,
                       const BackwardBuffers<T>& buf) {
  const int64_t G = Cell::kGates;
  const int64_t grain = rows_per_task(G * H);
  for (int64_t s = layout.steps() - 1; s >= 0; --s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t row0 = layout.offset(t);
    const int64_t continuing = layout.continuing(s);
    const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
    const T* c_prev = buf.cells + prev_row0 * H;
    const T* dy = buf.output_grad == nullptr ? nullptr
                                             : buf.output_grad + row0 * P;
    const T* dh = buf.dh;
    if (w_hr != nullptr) {
      // The gradient at the projected output, kept for W_hr's gradient,
      // then carried back through W_hr to the unprojected h.
      T* dprojected = buf.dprojected + row0 * P;
      for (int64_t i = 0; i < live * P; ++i) {
        dprojected[i] = buf.dh[i] + (dy == nullptr ? T(0) : dy[i]);
      }
      multiply(live, dprojected, P, *w_hr, T(0), buf.dunprojected, H);
      dh = buf.dunprojected;
      dy = nullptr;
    }
    const T* saved_t = buf.saved + row0 * G * H;
    const T* cells_t = buf.cells + row0 * H;
    T* dgates_t = buf.dgates + row0 * G * H;
    at::parallel_for(0, live, grain, [&](int64_t b0, int64_t b1) {
      if (dy != nullptr) {
        backward_rows<Cell, true>(b0, b1, H, continuing, saved_t, c_prev,
                                  buf.c0, cells_t, dy, dh, buf.dc, dgates_t);
      } else {
        backward_rows<Cell, false>(b0, b1, H, continuing, saved_t, c_prev,
                                   buf.c0, cells_t, dy, dh, buf.dc, dgates_t);
      }
    });
    // The gradient at the previous h of the live rows, through W_hh. Rows
    // that started from the initial state keep theirs: it is dh0.
    multiply(live, dgates_t, G * H, w_hh, T(0), buf.dh, P);
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
template <typename Cell, typename T>
void recompute_unprojected(int64_t rows, int64_t H, const T* saved,
                           const T* cells, T* unprojected) {
  const int64_t G = Cell::kGates;
  at::parallel_for(0, rows, rows_per_task(H), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < H; ++j) {
        unprojected[r * H + j] =
            Cell::hidden_from_saved(saved + r * G * H + j, H, cells[r * H + j]);
      }
    }
  });
}

}  // namespace fusedrnn::cpu
