// The CPU kernel of the one-step cell ops (core/cell_schemas.cpp): one step
// of a cell for a small batch, without the layer function.
//
// The layer function run with one step pays for its generality: a layout,
// pooled buffers, the input projection as one multiply and the recurrent
// one as another, each over all of W. A step of a decoding loop at batch 1
// does so little arithmetic per weight that its time is reading W_ih and
// W_hh. So this kernel reads them once, in place (row-major (G*H, I) and
// (G*H, H), no packing or transposing), and for each block of kUnitBlock
// hidden units:
//   for each gate, the rows of W_ih and W_hh of the block's units, dotted
//   with every batch row's x and h (matmul/row_dots.h: W_ih x and W_hh h in
//   one pass over the rows), then at once
//   the cell's math (Cell::forward, cells/*.h) on the block's units, while
//   their sums are in registers or L1.
// Threads take blocks of units (at::parallel_for), each reading its share
// of the weights. Up to kMaxDotVectors batch rows share a pass over a
// block's rows; more rows pass over them again, from cache.
//
// Results are the layer op's for a one-step input: the same cell math on
// the same sums (up to the order of additions), saved values and cell
// states in the compute type.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "../core/layer_args.h"
#include "../core/storage_types.h"
#include "cell_loops.h"  // FUSEDRNN_MULTIVERSION
#include "matmul/packed_multiply.h"  // kMinTaskWork
#include "matmul/row_dots.h"

namespace fusedrnn::cpu {

// The checks of a step's inputs before any memory is read, shared by the
// forward and backward ops (the backward passes no biases). Returns H.
int64_t check_cell_step_inputs(const Tensor& input, const Tensor& h0,
                               const OptionalTensor& c0, const Tensor& w_ih,
                               const Tensor& w_hh, const OptionalTensor& b_ih,
                               const OptionalTensor& b_hh, int64_t gates,
                               bool has_cell_state);

// Whether a step of `batch` rows runs this kernel; the others run the
// layer function with one step (cell_step.cpp says why where).
bool runs_cell_step(int64_t batch, const Tensor& w_ih, const Tensor& w_hh);

// Hidden units per block: one float vector of the cell math.
constexpr int64_t kUnitBlock = 16;

// What a step's forward and its backward (cell_step_backward.h) both read:
// row-major, contiguous. T is the storage type.
template <typename T>
struct CellStepInputs {
  int64_t batch, input_size, hidden;  // B, I, H
  const T* x;        // (B, I)
  const T* h0;       // (B, H)
  const T* c0;       // (B, H), cells with a cell state, else null
  const T* w_ih;     // (G*H, I)
  const T* w_hh;     // (G*H, H)
};

// The tensors behind a step's CellStepInputs: borrowed where already
// contiguous (the usual case), else copied.
class ContiguousStep {
 public:
  ContiguousStep(const Tensor& x, const Tensor& h0, const OptionalTensor& c0,
                 const Tensor& w_ih, const Tensor& w_hh)
      : x_(x.expect_contiguous()),
        h0_(h0.expect_contiguous()),
        c0_(c0 ? c0->contiguous() : Tensor()),
        w_ih_(w_ih.expect_contiguous()),
        w_hh_(w_hh.expect_contiguous()) {}

  template <typename T>
  CellStepInputs<T> inputs() const {
    return {x_->size(0),
            x_->size(1),
            h0_->size(1),
            x_->template data_ptr<T>(),
            h0_->template data_ptr<T>(),
            data_or_null<T>(c0_),
            w_ih_->template data_ptr<T>(),
            w_hh_->template data_ptr<T>()};
  }

 private:
  c10::MaybeOwned<Tensor> x_, h0_;
  Tensor c0_;
  c10::MaybeOwned<Tensor> w_ih_, w_hh_;
};

// The arguments of one step, Acc = compute_t<T> the compute type.
template <typename T>
struct CellStepArgs : CellStepInputs<T> {
  using Acc = compute_t<T>;
  const T* b_ih;     // (G*H), or null without bias
  const T* b_hh;     // (G*H), or null without bias
  T* h;              // (B, H) out
  T* c;              // (B, H) out, cells with a cell state
  // What the backward reads; both null where no backward will run (the
  // inference op): the step then writes only h and c.
  Acc* saved;        // (B, S*H) out
  Acc* cells;        // (B, H) out, cells with a cell state
};

// The cell's math for `vectors` batch rows (from b0) and the n units of
// the block at j0. pre_x and pre_h hold each row's G*kUnitBlock sums
// (gate g of unit u at g*kUnitBlock + u), bias_x and bias_h the block's
// biases in the same layout. Compiled for AVX-512, AVX2 and baseline
// x86-64, like the layer's unit loops.
template <class Cell, typename T, typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void cell_step_block(
    const CellStepArgs<T>& a, int64_t b0, int64_t vectors, int64_t j0,
    int64_t n, Acc* __restrict pre_x, const Acc* __restrict pre_h,
    const Acc* __restrict bias_x, const Acc* __restrict bias_h,
    Acc* __restrict saved) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, U = kUnitBlock;
  const int64_t H = a.hidden;
  for (int64_t v = 0; v < vectors; ++v) {
    const int64_t b = b0 + v;
    Acc* __restrict px = pre_x + v * G * U;
    const Acc* __restrict ph = pre_h + v * G * U;
    // The input projection includes b_ih, as the layer's does.
    for (int64_t k = 0; k < G * U; ++k) px[k] += bias_x[k];
    const T* __restrict h_prev = a.h0 + b * H + j0;
    const T* __restrict c_prev = Cell::kHasCellState ? a.c0 + b * H + j0 : nullptr;
    T* __restrict h_out = a.h + b * H + j0;
    T* __restrict c_out = Cell::kHasCellState ? a.c + b * H + j0 : nullptr;
    Acc* __restrict cells_out =
        Cell::kHasCellState && a.cells != nullptr ? a.cells + b * H + j0
                                                  : nullptr;
    for (int64_t u = 0; u < n; ++u) {
      Acc h_new = Acc(0), c_new = Acc(0);
      Cell::forward(px + u, ph + u, bias_h + u, U,
                    Cell::kReadsPreviousHidden ? Acc(h_prev[u]) : Acc(0),
                    Cell::kHasCellState ? Acc(c_prev[u]) : Acc(0), saved + u,
                    h_new, c_new);
      h_out[u] = T(h_new);
      if constexpr (Cell::kHasCellState) {
        c_out[u] = T(c_new);
        if (cells_out != nullptr) cells_out[u] = c_new;
      }
    }
    if (a.saved == nullptr) continue;
    Acc* __restrict saved_row = a.saved + b * S * H + j0;
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t u = 0; u < n; ++u) saved_row[s * H + u] = saved[s * U + u];
    }
  }
}

// Units [j0, j1) of every batch row, on the calling thread; j0 is a
// multiple of kUnitBlock.
template <class Cell, typename T>
void cell_step_units(const CellStepArgs<T>& a, int64_t j0, int64_t j1) {
  using Acc = compute_t<T>;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, U = kUnitBlock;
  const int64_t B = a.batch, I = a.input_size, H = a.hidden;
  Acc pre_x[kMaxDotVectors * G * U], pre_h[kMaxDotVectors * G * U];
  Acc bias_x[G * U], bias_h[G * U], saved[S * U];
  for (int64_t j = j0; j < j1; j += U) {
    const int64_t n = std::min(U, j1 - j);
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t u = 0; u < U; ++u) {
        const bool bias = a.b_ih != nullptr && u < n;
        bias_x[g * U + u] = bias ? Acc(a.b_ih[g * H + j + u]) : Acc(0);
        bias_h[g * U + u] = bias ? Acc(a.b_hh[g * H + j + u]) : Acc(0);
      }
    }
    for (int64_t b0 = 0; b0 < B; b0 += kMaxDotVectors) {
      const int64_t vectors = std::min(kMaxDotVectors, B - b0);
      for (int64_t g = 0; g < G; ++g) {
        row_dots(n, vectors, a.w_ih + (g * H + j) * I, I, a.x + b0 * I, I, I,
                 pre_x + g * U, G * U);
        row_dots(n, vectors, a.w_hh + (g * H + j) * H, H, a.h0 + b0 * H, H, H,
                 pre_h + g * U, G * U);
      }
      cell_step_block<Cell, T>(a, b0, vectors, j, n, pre_x, pre_h, bias_x,
                               bias_h, saved);
    }
  }
}

// The whole step, its unit blocks spread over the intra-op threads: a task
// gets at least kMinTaskWork multiply-adds, so that at batch 1 and
// H = I = 256 both threads of the test machine read half the weights
// (8 blocks of 16 units for the LSTM) while small cells stay on one thread.
template <class Cell, typename T>
void cell_step(const CellStepArgs<T>& a) {
  const int64_t blocks = (a.hidden + kUnitBlock - 1) / kUnitBlock;
  const int64_t block_work = std::max<int64_t>(
      1, a.batch * Cell::kGates * kUnitBlock * (a.input_size + a.hidden));
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / block_work);
  at::parallel_for(0, blocks, grain, [&](int64_t k0, int64_t k1) {
    cell_step_units<Cell, T>(a, k0 * kUnitBlock,
                             std::min(a.hidden, k1 * kUnitBlock));
  });
}

// cell_step on checked tensors: input (B, I), h0, c0, w_ih, w_hh, b_ih and
// b_hh as the cell ops take them. Writes h into `h` (B, H), contiguous, in
// the input's dtype; returns c (B, H) or empty, and saved (1, B, S*H) and
// cells (1, B, H) or empty in the compute type, as the layer op returns
// them for a one-step input. Without keep_for_backward, saved and cells are
// not written, and they and an empty c are undefined tensors: at batch 1
// each tensor an op returns to Python costs about as much as reading a
// quarter of a small cell's weights.
template <class Cell, typename T>
std::tuple<Tensor, Tensor, Tensor> cell_step_into(
    const Tensor& input, const Tensor& h0, const OptionalTensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptionalTensor& b_ih,
    const OptionalTensor& b_hh, const Tensor& h, bool keep_for_backward) {
  using Acc = compute_t<T>;
  constexpr int64_t S = Cell::kSaved;
  const int64_t B = input.size(0), H = h.size(1);
  const auto options = input.options();
  const auto acc_options = compute_options(input);
  Tensor c, saved, cells;
  if (Cell::kHasCellState) {
    c = at::empty({B, H}, options);
  } else if (keep_for_backward) {
    c = at::empty({0}, options);
  }
  if (keep_for_backward) {
    saved = at::empty({1, B, S * H}, acc_options);
    cells = Cell::kHasCellState ? at::empty({1, B, H}, acc_options)
                                : at::empty({0}, acc_options);
  }
  const ContiguousStep step(input, h0, c0, w_ih, w_hh);
  const Tensor b_ih_c = b_ih ? b_ih->contiguous() : Tensor();
  const Tensor b_hh_c = b_hh ? b_hh->contiguous() : Tensor();
  cell_step<Cell, T>(CellStepArgs<T>{
      step.inputs<T>(), data_or_null<T>(b_ih_c), data_or_null<T>(b_hh_c),
      h.data_ptr<T>(), Cell::kHasCellState ? c.data_ptr<T>() : nullptr,
      data_or_null<Acc>(saved),
      Cell::kHasCellState ? data_or_null<Acc>(cells) : nullptr});
  return {c, saved, cells};
}

}  // namespace fusedrnn::cpu
