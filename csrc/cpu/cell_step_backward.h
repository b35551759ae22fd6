// The CPU kernel of the one-step cell ops' backward
// (fusedrnn::<name>_cell_step_backward, core/cell_schemas.cpp): the exact
// derivative of cell_step.h's step, for small batches, in one call.
//
// The layer's backward run with one step pays, like its forward, for its
// generality: buffers, W_hh packed for the step loop, and four products
// through ATen's GEMM. At batch 1 those products are matrix-vector and
// outer products whose time is reading W and writing its gradient, and the
// fixed costs around them are much of a step's backward. Here:
//   1. the gate gradients of every unit (Cell::backward, cells/*.h) in the
//      compute type, on the calling thread (B*G*H values: little work);
//   2. the bias gradients, their sums over the batch rows;
//   3. in one parallel region, the four products, in blocks that each
//      write their own part of one gradient:
//        grad_x = dgates_x W_ih and grad_h0 = dgates_h W_hh (plus h's own
//        share, for cells that read h), W's rows scaled by the gate
//        gradients and added up (AXPYs), read where they lie; a block is a
//        range of output columns, so no two blocks add to the same value;
//        grad_W_ih = dgates_x^T x and grad_W_hh = dgates_h^T h0, outer
//        products summed over the batch rows; a block is a range of W's
//        rows.
// Every sum runs in a fixed order whatever the number of threads, so the
// results are deterministic. The loops are plain C++ compiled for AVX-512,
// AVX2 and baseline x86-64 (FUSEDRNN_MULTIVERSION): AXPYs and outer
// products vectorise along W's rows as written, with no lane sums, unlike
// the forward's dot products (matmul/row_dots.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "../core/storage_types.h"
#include "buffer_pool.h"
#include "cell_loops.h"              // FUSEDRNN_MULTIVERSION
#include "cell_step.h"               // CellStepInputs
#include "matmul/packed_multiply.h"  // kMinTaskWork

namespace fusedrnn::cpu {

// Output columns per block of the products. Each block pays a loop setup
// per row of W it walks and reads 1 KiB (float) of each row, which the
// prefetchers follow; with 64 columns the setup and the short strided reads
// made the products several times slower (LSTM, H = 256, batch 1).
constexpr int64_t kGradColumnBlock = 256;
// Batch rows that share a pass over W's rows in grad_x and grad_h0.
constexpr int64_t kGradVectors = 4;

// The arguments of one step's backward: the forward's inputs
// (cell_step.h), then row-major, contiguous. Acc = compute_t<T> is the
// compute type.
template <typename T>
struct CellStepBackwardArgs : CellStepInputs<T> {
  using Acc = compute_t<T>;
  const Acc* saved;  // (B, S*H): the forward's saved values
  const Acc* cells;  // (B, H): the forward's c', cells with a cell state
  const T* grad_h;   // (B, H), or null for zeros
  const T* grad_y;   // (B, H), or null: a layer's output gradient, added to grad_h
  const T* grad_c;   // (B, H), or null for zeros
  // The gradients, each null where it is not wanted.
  T* grad_x;     // (B, I)
  T* grad_h0;    // (B, H)
  T* grad_c0;    // (B, H), cells with a cell state
  T* grad_w_ih;  // (G*H, I)
  T* grad_w_hh;  // (G*H, H)
  T* grad_b_ih;  // (G*H)
  T* grad_b_hh;  // (G*H), cells that split their gradients
  // Scratch in the compute type: the gate gradients, kept unrounded for
  // every product (bfloat16 too).
  Acc* dgates_x;  // (B, G*H)
  Acc* dgates_h;  // (B, G*H); dgates_x unless Cell::kSplitRecurrentGrad
  Acc* dh_own;    // (B, H): h's own share (kReadsPreviousHidden), else null
};

// Step 1: the gate gradients of every row and unit, h's own share of
// grad_h0 and (written directly) grad_c0.
template <class Cell, typename T, typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void cell_step_gate_grads(const CellStepBackwardArgs<T>& a) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t H = a.hidden;
  for (int64_t b = 0; b < a.batch; ++b) {
    const T* __restrict h_prev = a.h0 + b * H;
    const T* __restrict c_prev = Cell::kHasCellState ? a.c0 + b * H : nullptr;
    const Acc* __restrict c_new = Cell::kHasCellState ? a.cells + b * H : nullptr;
    const T* __restrict dh = a.grad_h ? a.grad_h + b * H : nullptr;
    const T* __restrict dy = a.grad_y ? a.grad_y + b * H : nullptr;
    const T* __restrict dc =
        Cell::kHasCellState && a.grad_c ? a.grad_c + b * H : nullptr;
    const Acc* __restrict saved = a.saved + b * S * H;
    Acc* __restrict dx = a.dgates_x + b * G * H;
    Acc* __restrict dr = Cell::kSplitRecurrentGrad ? a.dgates_h + b * G * H : nullptr;
    for (int64_t j = 0; j < H; ++j) {
      Acc dh_prev = Acc(0), dc_prev = Acc(0);
      Cell::backward(saved + j, H,
                     Cell::kReadsPreviousHidden ? Acc(h_prev[j]) : Acc(0),
                     Cell::kHasCellState ? Acc(c_prev[j]) : Acc(0),
                     Cell::kHasCellState ? c_new[j] : Acc(0),
                     (dh ? Acc(dh[j]) : Acc(0)) + (dy ? Acc(dy[j]) : Acc(0)),
                     dc ? Acc(dc[j]) : Acc(0), dx + j,
                     Cell::kSplitRecurrentGrad ? dr + j : nullptr, dh_prev,
                     dc_prev);
      if constexpr (Cell::kReadsPreviousHidden) a.dh_own[b * H + j] = dh_prev;
      if constexpr (Cell::kHasCellState) {
        if (a.grad_c0 != nullptr) a.grad_c0[b * H + j] = T(dc_prev);
      }
    }
  }
}

// out[k] = sum_b d[b, k] for k < width: a bias gradient, summed over the
// rows in their order.
template <typename T, typename Acc = compute_t<T>>
void batch_sums(int64_t rows, int64_t width, const Acc* d, T* out) {
  for (int64_t k = 0; k < width; ++k) {
    Acc sum = Acc(0);
    for (int64_t b = 0; b < rows; ++b) sum += d[b * width + k];
    out[k] = T(sum);
  }
}

// out[b, k] = init[b, k] + sum_r d[b, r] w[r, k] for every row b < B and
// the columns [k0, k1) (at most kGradColumnBlock) of out (B x K): the rows
// of w (R x K) scaled by d's (B x R) and added up in the order of r. init
// (B x K) is null for zeros.
template <typename T, typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void scaled_row_sums(int64_t B, int64_t R, int64_t K,
                                           int64_t k0, int64_t k1,
                                           const Acc* __restrict d,
                                           const T* __restrict w,
                                           const Acc* __restrict init,
                                           T* __restrict out) {
  const int64_t n = k1 - k0;
  Acc acc[kGradVectors][kGradColumnBlock];
  for (int64_t b0 = 0; b0 < B; b0 += kGradVectors) {
    const int64_t vectors = std::min(kGradVectors, B - b0);
    for (int64_t v = 0; v < vectors; ++v) {
      for (int64_t u = 0; u < n; ++u) {
        acc[v][u] = init != nullptr ? init[(b0 + v) * K + k0 + u] : Acc(0);
      }
    }
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict w_row = w + r * K + k0;
      for (int64_t v = 0; v < vectors; ++v) {
        const Acc scale = d[(b0 + v) * R + r];
        for (int64_t u = 0; u < n; ++u) acc[v][u] += scale * Acc(w_row[u]);
      }
    }
    for (int64_t v = 0; v < vectors; ++v) {
      for (int64_t u = 0; u < n; ++u) out[(b0 + v) * K + k0 + u] = T(acc[v][u]);
    }
  }
}

// out[r, k] = sum_b d[b, r] v[b, k] for the rows [r0, r1) of out (R x K):
// the outer products of d's (B x R) and v's (B x K) rows, summed in the
// order of b. Where T is the compute type the sums build up in out itself
// (one pass over each row per batch row, from L1 after the first); else in
// a block of compute-type sums, rounded to T once.
template <typename T, typename Acc = compute_t<T>>
FUSEDRNN_MULTIVERSION void outer_product_rows(int64_t B, int64_t R, int64_t K,
                                              int64_t r0, int64_t r1,
                                              const Acc* __restrict d,
                                              const T* __restrict v,
                                              T* __restrict out) {
  for (int64_t r = r0; r < r1; ++r) {
    T* __restrict out_row = out + r * K;
    if constexpr (std::is_same_v<T, Acc>) {
      if (B == 0) std::fill(out_row, out_row + K, T(0));
      for (int64_t b = 0; b < B; ++b) {
        const Acc scale = d[b * R + r];
        const T* __restrict v_row = v + b * K;
        if (b == 0) {
          for (int64_t k = 0; k < K; ++k) out_row[k] = scale * v_row[k];
        } else {
          for (int64_t k = 0; k < K; ++k) out_row[k] += scale * v_row[k];
        }
      }
    } else {
      Acc acc[kGradColumnBlock];
      for (int64_t k0 = 0; k0 < K; k0 += kGradColumnBlock) {
        const int64_t n = std::min(kGradColumnBlock, K - k0);
        for (int64_t u = 0; u < n; ++u) acc[u] = Acc(0);
        for (int64_t b = 0; b < B; ++b) {
          const Acc scale = d[b * R + r];
          const T* __restrict v_row = v + b * K + k0;
          for (int64_t u = 0; u < n; ++u) acc[u] += scale * Acc(v_row[u]);
        }
        for (int64_t u = 0; u < n; ++u) out_row[k0 + u] = T(acc[u]);
      }
    }
  }
}

// The whole backward of a step. The products' blocks form one index range
// (column blocks of grad_x, then of grad_h0, then row blocks of grad_W_ih,
// then of grad_W_hh) of about equal work each: a column block does
// B*G*H*kGradColumnBlock multiply-adds and a row block gets as many rows as
// make as many. So at::parallel_for's equal ranges of blocks are equal
// work, a task does at least kMinTaskWork, and one parallel region serves
// all four.
template <class Cell, typename T>
void cell_step_backward(const CellStepBackwardArgs<T>& a) {
  using Acc = compute_t<T>;
  constexpr int64_t C = kGradColumnBlock;
  const int64_t B = a.batch, I = a.input_size, H = a.hidden;
  const int64_t R = Cell::kGates * H;
  cell_step_gate_grads<Cell, T>(a);
  if (a.grad_b_ih != nullptr) batch_sums(B, R, a.dgates_x, a.grad_b_ih);
  if (a.grad_b_hh != nullptr) batch_sums(B, R, a.dgates_h, a.grad_b_hh);

  auto blocks_of = [](int64_t n, int64_t per_block) {
    return (n + per_block - 1) / per_block;
  };
  const int64_t rows_ih = std::max<int64_t>(1, R * C / std::max<int64_t>(1, I));
  const int64_t rows_hh = std::max<int64_t>(1, R * C / H);
  const int64_t n_x = a.grad_x != nullptr ? blocks_of(I, C) : 0;
  const int64_t n_h = a.grad_h0 != nullptr ? blocks_of(H, C) : 0;
  const int64_t n_w_ih = a.grad_w_ih != nullptr ? blocks_of(R, rows_ih) : 0;
  const int64_t n_w_hh = a.grad_w_hh != nullptr ? blocks_of(R, rows_hh) : 0;
  const int64_t block_work = std::max<int64_t>(1, B * R * C);
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / block_work);
  at::parallel_for(0, n_x + n_h + n_w_ih + n_w_hh, grain, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      int64_t k = i;
      if (k < n_x) {
        scaled_row_sums<T>(B, R, I, k * C, std::min(I, (k + 1) * C),
                           a.dgates_x, a.w_ih, static_cast<const Acc*>(nullptr),
                           a.grad_x);
        continue;
      }
      k -= n_x;
      if (k < n_h) {
        scaled_row_sums<T>(B, R, H, k * C, std::min(H, (k + 1) * C),
                           a.dgates_h, a.w_hh, a.dh_own, a.grad_h0);
        continue;
      }
      k -= n_h;
      if (k < n_w_ih) {
        outer_product_rows<T>(B, R, I, k * rows_ih, std::min(R, (k + 1) * rows_ih),
                              a.dgates_x, a.x, a.grad_w_ih);
        continue;
      }
      k -= n_w_ih;
      outer_product_rows<T>(B, R, H, k * rows_hh, std::min(R, (k + 1) * rows_hh),
                            a.dgates_h, a.h0, a.grad_w_hh);
    }
  });
}

// Whether the backward of a step of `batch` rows runs this kernel; the
// others run the layer backward with one step (cell_step_backward.cpp says
// why where).
bool runs_cell_step_backward(int64_t batch);

// Which gradients are wanted: input, h0, c0, w_ih, w_hh, the biases.
using GradMask = std::array<bool, 6>;
using CellStepGrads =
    std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// cell_step_backward on checked tensors, shaped as the cell-step backward
// op takes them (grad_y: a layer's output gradient at the step, (B, H), or
// none). Returns grad_input (B, I), grad_h0, grad_c0, grad_w_ih,
// grad_w_hh, grad_b_ih and grad_b_hh, each empty where unwanted, and
// grad_c0 without a cell state and grad_b_hh where both biases get the same
// gradient.
template <class Cell, typename T>
CellStepGrads cell_step_backward_of(
    const OptionalTensor& grad_h, const OptionalTensor& grad_y,
    const OptionalTensor& grad_c, const Tensor& input, const Tensor& h0,
    const OptionalTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& saved, const OptionalTensor& cells, GradMask mask) {
  using Acc = compute_t<T>;
  constexpr int64_t G = Cell::kGates;
  const int64_t B = input.size(0), I = input.size(1), H = h0.size(1);
  const bool want_c0 = Cell::kHasCellState && mask[2];
  const bool want_b_hh = Cell::kSplitRecurrentGrad && mask[5];
  const auto options = input.options();
  // From the buffer pool, as the layer backward's are: the weight
  // gradients are MiBs, and fresh memory costs a page fault per 4 KiB at
  // every call (buffer_pool.h).
  auto output = [&](bool want, at::IntArrayRef sizes) {
    return want ? pooled_empty(sizes, options) : at::empty({0}, options);
  };
  Tensor grad_x = output(mask[0], {B, I});
  Tensor grad_h0 = output(mask[1], {B, H});
  Tensor grad_c0 = output(want_c0, {B, H});
  Tensor grad_w_ih = output(mask[3], {G * H, I});
  Tensor grad_w_hh = output(mask[4], {G * H, H});
  Tensor grad_b_ih = output(mask[5], {G * H});
  Tensor grad_b_hh = output(want_b_hh, {G * H});
  // One buffer for the scratch: dgates_x, dgates_h where the cell splits
  // its gradients, h's own share where it reads h.
  const int64_t gate_grads = B * G * H;
  Tensor scratch = at::empty({gate_grads * (Cell::kSplitRecurrentGrad ? 2 : 1) +
                              (Cell::kReadsPreviousHidden ? B * H : 0)},
                             compute_options(input));
  Acc* dgates_x = scratch.data_ptr<Acc>();
  Acc* dgates_h = Cell::kSplitRecurrentGrad ? dgates_x + gate_grads : dgates_x;
  Acc* dh_own = Cell::kReadsPreviousHidden
                    ? dgates_x + gate_grads * (Cell::kSplitRecurrentGrad ? 2 : 1)
                    : nullptr;
  const ContiguousStep step(input, h0, c0, w_ih, w_hh);
  const auto saved_c = saved.expect_contiguous();
  const Tensor cells_c = cells ? cells->contiguous() : Tensor();
  const Tensor grad_h_c = grad_h ? grad_h->contiguous() : Tensor();
  const Tensor grad_y_c = grad_y ? grad_y->contiguous() : Tensor();
  const Tensor grad_c_c = grad_c ? grad_c->contiguous() : Tensor();
  auto out = [](bool want, Tensor& t) { return want ? t.data_ptr<T>() : nullptr; };
  cell_step_backward<Cell, T>(CellStepBackwardArgs<T>{
      step.inputs<T>(), saved_c->template data_ptr<Acc>(),
      data_or_null<Acc>(cells_c), data_or_null<T>(grad_h_c),
      data_or_null<T>(grad_y_c), data_or_null<T>(grad_c_c),
      out(mask[0], grad_x), out(mask[1], grad_h0), out(want_c0, grad_c0),
      out(mask[3], grad_w_ih), out(mask[4], grad_w_hh),
      out(mask[5], grad_b_ih), out(want_b_hh, grad_b_hh), dgates_x, dgates_h,
      dh_own});
  return {grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh};
}

}  // namespace fusedrnn::cpu
