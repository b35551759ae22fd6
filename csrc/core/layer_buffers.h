// The buffers of one layer call's time loops, and where each step's rows
// are in them: what the layer function (recurrent_layer.h) hands to the
// loops, its own or an executor's (the CPU's team loops).
#pragma once

#include <cstdint>

#include "normalization.h"
#include "sequence_layout.h"
#include "step.h"

namespace fusedrnn {

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
  Acc* zoned_cells;   // (rows, H), with zoneout of c only
  T* h_dropped;       // (B, P) scratch, with recurrent dropout only
  NormParams<Acc> norms;  // normalized cells only
};

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
  Acc* scratch;          // (B, 2*G*H) scratch, for executors with kRowScratch
  const Acc* zoned_cells;  // (rows, H), with zoneout of c only
  Acc* carry_h;          // (B, P) scratch, with zoneout of h only
  Acc* carry_c;          // (B, H) scratch, with zoneout of c only
  Acc* recurrent_grad;   // (B, P) scratch, with recurrent dropout only
  // Normalized cells only: the layer norms' parameters, and the gradients
  // after LN_ih (and LN_hh, the same buffer when the cell shares them) and
  // LN_c of every row.
  NormParams<Acc> norms;
  Acc* dnorm_x;          // (rows, G*H)
  Acc* dnorm_h;          // (rows, G*H)
  Acc* dnorm_c;          // (rows, H), cells with a cell state
  // Whether h0's gradient is wanted: else the rows that start from h0 skip
  // their multiply by W_hh (dh is left undefined there).
  bool h0_grad;
};

// The rows of the step processed s-th, and where their previous state is.
template <typename T>
StepRows<T> step_rows(const SequenceLayout& layout, int64_t s, int64_t H,
                      int64_t P, const T* output, const T* h0,
                      const compute_t<T>* cells, const compute_t<T>* c0) {
  const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
  return {layout.live(layout.step(s)), layout.continuing(s),
          output + prev_row0 * P, h0,
          cells != nullptr ? cells + prev_row0 * H : nullptr, c0};
}

}  // namespace fusedrnn
