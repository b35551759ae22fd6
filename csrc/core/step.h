// What one time step of one layer hands to an executor's step: where the
// step's rows are in the layer's buffers. Shared by the CPU loops and the
// CUDA kernels (which take these structs by value), so it includes no ATen
// header.
//
// Buffers are row-major with the rows of all steps one after another (see
// sequence_layout.h): gates (rows, G*H), outputs (rows, P), cell states
// (rows, H); P is the projection size, or H without one. T is the storage
// type and Acc = compute_t<T> the compute type; each pointer says which of
// the two it holds. Pointers a cell does not use are null.
#pragma once

#include <cstdint>

#include "../cells/activations.h"
#include "storage_types.h"

namespace fusedrnn {

// Where the previous state of a step's rows is: row b < live comes from the
// previous step while b < continuing, from the initial state otherwise.
// The h pointers are null unless the cell reads the previous h
// (kReadsPreviousHidden), the c pointers without a cell state.
template <typename T>
struct StepRows {
  using Acc = compute_t<T>;
  int64_t live, continuing;
  const T* h_previous_step;    // (.., P)
  const T* h0;                 // (B, P)
  const Acc* c_previous_step;  // (.., H)
  const Acc* c0;               // (B, H)
};

// Row b of a step's previous state (width elements per row).
template <typename U>
FUSEDRNN_HOST_DEVICE const U* previous_row(int64_t b, int64_t continuing,
                                           const U* previous_step,
                                           const U* initial, int64_t width) {
  return (b < continuing ? previous_step : initial) + b * width;
}

// Row b's previous h (P wide) where the cell reads it, else null.
template <class Cell, typename T>
FUSEDRNN_HOST_DEVICE const T* previous_hidden(const StepRows<T>& rows,
                                              int64_t b, int64_t P) {
  if constexpr (Cell::kReadsPreviousHidden) {
    return previous_row(b, rows.continuing, rows.h_previous_step, rows.h0, P);
  } else {
    return nullptr;
  }
}

// Row b's previous c (H wide) where the cell has one, else null.
template <class Cell, typename T>
FUSEDRNN_HOST_DEVICE const compute_t<T>* previous_cells(
    const StepRows<T>& rows, int64_t b, int64_t H) {
  if constexpr (Cell::kHasCellState) {
    return previous_row(b, rows.continuing, rows.c_previous_step, rows.c0, H);
  } else {
    return nullptr;
  }
}

// One forward step: the recurrent multiply of the live rows, then the
// cell's math over every (row, unit).
template <typename T>
struct ForwardStep {
  using Acc = compute_t<T>;
  StepRows<T> rows;
  int64_t hidden, out_size;  // H, P
  Acc* gates;         // (live, G*H): input projections (with b_ih) in
  Acc* saved;         // (live, S*H): saved values; == gates when S == G
  Acc* recurrent;     // (B, G*H) scratch: h_prev op(W_hh)
  const Acc* bias_h;  // (G*H): b_hh, zeros without bias
  T* hidden_out;      // (live, H): the output, or the unprojected h
  Acc* cells;         // (live, H): this step's cell states, or null
  // (live, P): what the recurrent multiply reads instead of the previous h
  // (recurrent dropout: regularization.h), or null. The cell's own use of
  // h (kReadsPreviousHidden) still reads `rows`.
  const T* h_multiplied;
};

// One backward step over the live rows. `dh` holds the gradient reaching h'
// (plus dy when dy is not null) and is overwritten with h's own share of
// the gradient at the previous h for cells that read h (the share through
// W_hh is the layer's next multiply); `dc` goes from the gradient at c' to
// the one at c. The cell's gate gradients go to dgates_x and, for cells
// that split them (kSplitRecurrentGrad), the recurrent ones to dgates_h.
template <typename T>
struct BackwardStep {
  using Acc = compute_t<T>;
  StepRows<T> rows;
  int64_t hidden, out_size;  // H, P
  const Acc* saved;  // (live, S*H)
  const Acc* cells;  // (live, H): this step's cell states, or null
  const T* dy;       // (live, H): gradient at the output, or null
  Acc* dh;           // (live, H)
  Acc* dc;           // (live, H), cell state only
  T* dgates_x;       // (live, G*H)
  T* dgates_h;       // (live, G*H): == dgates_x unless the cell splits
  Acc* scratch;      // (live, 2*G*H) for executors with kRowScratch, or null
};

}  // namespace fusedrnn
