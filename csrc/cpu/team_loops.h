// The time loops of a layer at a small batch, forward and backward, each
// in one parallel region (team.h) instead of one or two per step.
//
// A step of a few rows reads all of W_hh for little arithmetic, so its
// cost is streaming W_hh and starting the step; at a few dozen rows
// starting a parallel region per step is still a visible share. Here each
// worker owns the same hidden units (and, packed, rows) for the whole loop
// and keeps their rows of W_hh in its L2:
//   forward, per step: the recurrent sums of its share, then the cell's
//     math on them (forward_units); then the workers meet, since the next
//     step reads every unit of h. The sums come from W_hh packed for the
//     tile kernels where the loop has enough rows to repay the copy (a
//     single stream per worker, which reads from L2 about twice as fast as
//     dot products of W's rows; the shares are equal pieces of the step's
//     grid of rows and unit slices, grid_shares.h), else from W_hh's rows
//     read in place and dotted with the previous h (matmul/row_dots.h).
//   backward, per step: the gate gradients of its units (backward_rows);
//     the workers meet, since each h unit's gradient sums over every gate
//     gradient; then the gradient at the previous h of its units, from
//     W_hh's columns of those units (the executor's multiply_units, on W_hh
//     packed for the tile kernels). No meeting after that: a worker's next
//     gate gradients read only its own units'.
// Each value is computed by one worker, in an order that does not depend
// on which worker that is: the results are the same bits at any thread
// count.
//
// Plain cells without a projection or regularization (the layer function
// decides, recurrent_layer.h); W_hh is row-major (G*H, H), P = H.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../core/layer_buffers.h"
#include "cell_loops.h"
#include "matmul.h"
#include "matmul/grid_shares.h"
#include "matmul/packed_multiply.h"  // kMinTaskWork
#include "matmul/row_dots.h"
#include "team.h"

namespace fusedrnn::cpu {

// Units a worker takes at a time: one float vector of the cell math.
constexpr int64_t kTeamUnitBlock = 16;

// Rows a step may have for the team loops: batch-1 streams up to the
// small models (word-language model B=20, medium B=16). Larger batches
// keep a parallel region per step, whose start is lost in the multiply.
constexpr int64_t kTeamMaxRows = 32;

// Which hidden units each worker of a team owns: blocks of `block` units,
// spread evenly.
class UnitShare {
 public:
  UnitShare(int64_t hidden, int64_t workers, int64_t block)
      : hidden_(hidden),
        workers_(workers),
        block_(block),
        blocks_((hidden + block - 1) / block) {}

  // The first block of worker w, and the first unit.
  int64_t first_block(int64_t w) const { return w * blocks_ / workers_; }
  int64_t begin(int64_t w) const {
    return std::min(hidden_, first_block(w) * block_);
  }
  int64_t end(int64_t w) const { return begin(w + 1); }

 private:
  int64_t hidden_, workers_, block_, blocks_;
};

// Workers for a layer of `rows` rows per step: about kMinTaskWork
// multiply-adds each per step, at most the team's threads.
inline int64_t team_size(int64_t rows, int64_t gates, int64_t hidden) {
  const int64_t step_work = rows * gates * hidden * hidden;
  return std::clamp<int64_t>(step_work / kMinTaskWork, 1, team_workers());
}

// recurrent[b, g*H + j] = W_hh[g*H + j] . h_prev[b] for the step's rows b
// in [b0, b1) and units j in [j0, j1) (slices [s0, s1) of `w_hh` where it
// is packed), every gate g. `w_hh` is op(W_hh) = W_hh^T in G blocks.
template <typename T>
void recurrent_sums(const StepRows<T>& rows, const RightOperand<T>& w_hh,
                    int64_t G, int64_t H, int64_t b0, int64_t b1, int64_t j0,
                    int64_t j1, int64_t s0, int64_t s1,
                    compute_t<T>* recurrent) {
  // Rows [first, end), whose previous h rows start at h.
  auto sums = [&](int64_t first, int64_t end, const T* h) {
    if (first >= end) return;
    compute_t<T>* out = recurrent + first * G * H;
    if (w_hh.packed()) {
      multiply_units(end - first, h, H, w_hh, s0, s1, compute_t<T>(0), out,
                     G * H);
      return;
    }
    for (int64_t b = 0; b < end - first; b += kMaxDotVectors) {
      const int64_t vectors = std::min(kMaxDotVectors, end - first - b);
      for (int64_t g = 0; g < G; ++g) {
        row_dots(j1 - j0, vectors, w_hh.source() + (g * H + j0) * H, H,
                 h + b * H, H, H, out + b * G * H + g * H + j0, G * H);
      }
    }
  };
  // Rows below `continuing` go on from the previous step, the others start
  // from h0.
  const int64_t split = std::clamp(rows.continuing, b0, b1);
  sums(b0, split, rows.h_previous_step + b0 * H);
  sums(split, b1, rows.h0 + split * H);
}

// `w_hh` is op(W_hh) = W_hh^T (H -> G*H) in G blocks, prepared for the
// multiplies.
template <class Cell, typename T>
void team_forward(const SequenceLayout& layout, int64_t H,
                  const RightOperand<T>& w_hh, const ForwardBuffers<T>& buf) {
  static_assert(!Cell::kNormalized);
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t workers = team_size(layout.batch(), G, H);
  // Read in place, a worker's units are blocks of kTeamUnitBlock.
  const UnitShare share(H, workers, kTeamUnitBlock);
  run_team(workers, [&](int64_t w0, int64_t w1, TeamBarrier& barrier) {
    for (int64_t s = 0; s < layout.steps(); ++s) {
      const int64_t row0 = layout.offset(layout.step(s));
      const StepRows<T> rows =
          step_rows(layout, s, H, H, buf.output, buf.h0, buf.cells, buf.c0);
      // Rows [b0, b1) of units [j0, j1): their sums, then the cell's math.
      auto run = [&](int64_t b0, int64_t b1, int64_t j0, int64_t j1,
                     int64_t s0, int64_t s1) {
        recurrent_sums(rows, w_hh, G, H, b0, b1, j0, j1, s0, s1,
                       buf.recurrent);
        forward_units<Cell>(
            b0, b1, j0, j1, H, H, rows, buf.gates + row0 * G * H,
            buf.saved + row0 * S * H, buf.recurrent, buf.bias_h,
            buf.cells != nullptr ? buf.cells + row0 * H : nullptr,
            buf.output + row0 * H);
      };
      // Packed, the workers take equal shares of the step's grid of rows
      // and unit slices (grid_shares.h), as the executor's steps do: whole
      // slices alone would split H=200 into 128 and 72 units.
      const PanelGrid grid(rows.live, H, kUnitSlice);
      for (int64_t w = w0; w < w1; ++w) {
        if (w_hh.packed()) {
          grid.for_each_piece(w, workers, [&](int64_t b0, int64_t b1,
                                              int64_t s0, int64_t s1) {
            run(b0, b1, s0 * kUnitSlice, std::min(H, s1 * kUnitSlice), s0,
                s1);
          });
        } else if (share.begin(w) < share.end(w)) {
          run(0, rows.live, share.begin(w), share.end(w), 0, 0);
        }
      }
      // (The region's end waits for the last step.)
      if (s + 1 < layout.steps()) barrier.arrive_and_wait(w1 - w0);
    }
  });
}

// `w_hh` is op(W_hh) = W_hh (G*H -> H), prepared for the multiplies.
template <class Cell, typename T>
void team_backward(const SequenceLayout& layout, int64_t H,
                   const RightOperand<T>& w_hh, const BackwardBuffers<T>& buf) {
  static_assert(!Cell::kNormalized);
  using Acc = compute_t<T>;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  // bfloat16 gate gradients are computed in float, then stored.
  constexpr bool kRowScratch = !std::is_same_v<T, Acc>;
  const int64_t workers = team_size(layout.batch(), G, H);
  // Whole slices of the multiply's columns, which are the units whose gate
  // gradients the same worker computes.
  const UnitShare share(H, workers, kUnitSlice);
  run_team(workers, [&](int64_t w0, int64_t w1, TeamBarrier& barrier) {
    for (int64_t s = layout.steps() - 1; s >= 0; --s) {
      const int64_t row0 = layout.offset(layout.step(s));
      const StepRows<T> rows =
          step_rows(layout, s, H, H, buf.output, buf.h0, buf.cells, buf.c0);
      const int64_t live = rows.live;
      T* dgates_x = buf.dgates_x + row0 * G * H;
      T* dgates_h = buf.dgates_h + row0 * G * H;
      Acc* row_x = nullptr;
      Acc* row_h = nullptr;
      if constexpr (kRowScratch) {
        row_x = buf.scratch;
        row_h = buf.scratch + live * G * H;
      } else {
        row_x = dgates_x;
        row_h = dgates_h;
      }
      const Acc* saved = buf.saved + row0 * S * H;
      const Acc* cells = buf.cells != nullptr ? buf.cells + row0 * H : nullptr;
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t j0 = share.begin(w), j1 = share.end(w);
        if (j0 == j1) continue;
        if (buf.output_grad != nullptr) {
          backward_rows<Cell, true>(0, live, j0, j1, H, H, rows, saved, cells,
                                    buf.output_grad + row0 * H, buf.dh,
                                    buf.dc, row_x, row_h, dgates_x, dgates_h);
        } else {
          backward_rows<Cell, false>(0, live, j0, j1, H, H, rows, saved,
                                     cells, static_cast<const T*>(nullptr),
                                     buf.dh, buf.dc, row_x,
                                     row_h, dgates_x, dgates_h);
        }
      }
      barrier.arrive_and_wait(w1 - w0);
      // The gradient at the previous h through W_hh, added to h's own
      // share where the cell has one; for the rows that start from h0 only
      // where h0's gradient is wanted.
      const int64_t carried = buf.h0_grad ? live : rows.continuing;
      const Acc beta = Cell::kReadsPreviousHidden ? Acc(1) : Acc(0);
      for (int64_t w = w0; w < w1; ++w) {
        multiply_units(carried, dgates_h, G * H, w_hh, share.first_block(w),
                       share.first_block(w + 1), beta, buf.dh, H);
      }
    }
  });
}

}  // namespace fusedrnn::cpu
