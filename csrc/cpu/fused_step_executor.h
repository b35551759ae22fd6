// The CPU executor of the layer function (core/recurrent_layer.h): how the
// CPU multiplies, runs one step, and allocates.
//
// A forward step is one parallel region: each thread takes a run of slices
// of hidden units, multiplies the recurrent columns of every gate of its
// units (matmul.h: the weight is packed once per call for the tile
// kernels) and applies the cell's math to them while they are in its
// cache; a slice at either end of a thread's run is shared with its
// neighbour by rows, so that the threads get equal work
// (matmul/grid_shares.h), and with fewer slices than threads the rows are
// split. Threads meet only at the end of the step (and around the
// projection, which needs every unit). At a batch of a few
// rows the whole loop is instead one parallel region, whose threads meet at
// a barrier between steps (team_loops.h); a single step of a small batch
// runs the cell ops' kernels (cell_step.h, cell_step_backward.h).
// The layer's buffers come from a pool that recycles them across
// calls (buffer_pool.h). It serves float32, float64, and bfloat16 on a CPU
// with AVX512_BF16.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>

#include "../core/layer_args.h"
#include "../core/step.h"
#include "buffer_pool.h"
#include "cell_loops.h"
#include "cell_step.h"
#include "cell_step_backward.h"
#include "matmul.h"
#include "matmul/grid_shares.h"
#include "matmul/packed_multiply.h"  // kMinTaskWork
#include "team_loops.h"
#include "whole_multiply.h"

namespace fusedrnn::cpu {

// Throws unless the CPU kernels can run a tensor of this dtype here: a CPU
// tensor, and for bfloat16 a CPU with AVX512_BF16.
void check_cpu_input(const at::Tensor& input);

template <typename T>
class FusedStepExecutor {
 public:
  using Acc = compute_t<T>;
  using Weight = RightOperand<T>;
  static constexpr bool kServes = std::is_same_v<T, float> ||
                                  std::is_same_v<T, double> ||
                                  std::is_same_v<T, c10::BFloat16>;
  static constexpr const char* kDeviceName = "CPU";
  // bfloat16 gate gradients are computed in float before they are stored.
  static constexpr bool kRowScratch = !std::is_same_v<T, Acc>;
  // Runs whole time loops of small batches itself (team_loops.h).
  static constexpr bool kTeamLoops = true;
  // Runs a single step of a small batch as the cell ops do (cell_step.h).
  static constexpr bool kCellSteps = true;

  static void check_input(const at::Tensor& input) { check_cpu_input(input); }

  FusedStepExecutor(const at::Tensor& /*input*/, const LayerShape& shape)
      : total_rows_(shape.layout.rows()),
        team_loops_(shape.layout.batch() >= 1 &&
                    shape.layout.batch() <= kTeamMaxRows &&
                    shape.out_size == shape.hidden) {}

  // Whether team_forward and team_backward run this layer's loops (for a
  // plain cell without regularization: the layer function checks those).
  bool runs_team_loops() const { return team_loops_; }

  template <class Cell>
  void team_forward(const SequenceLayout& layout, int64_t H, const Weight& w_hh,
                    const ForwardBuffers<T>& buf) const {
    cpu::team_forward<Cell>(layout, H, w_hh, buf);
  }

  template <class Cell>
  void team_backward(const SequenceLayout& layout, int64_t H,
                     const Weight& w_hh, const BackwardBuffers<T>& buf) const {
    cpu::team_backward<Cell>(layout, H, w_hh, buf);
  }

  // A one-step dense input of a plain cell without projection or
  // regularization (the layer function checks those), at a batch the cell
  // ops' kernel takes: that kernel (cell_step.h) reads W_ih and W_hh once
  // where they lie, where the layer's path packs them for two multiplies
  // and fills a dozen buffers. Returns whether it ran the step.
  template <class Cell>
  bool single_step(const LayerInputs& in, LayerOutputs& out) const {
    const at::Tensor x = in.input.select(0, 0);
    if (!runs_cell_step(x.size(0), in.w_ih, in.w_hh)) return false;
    const at::Tensor& h0 = in.h0;
    out.h_n = pooled_empty(h0.sizes(), in.input.options());
    std::tie(out.c_n, out.saved, out.cells) = cell_step_into<Cell, T>(
        x, h0, in.c0, in.w_ih, in.w_hh, in.b_ih, in.b_hh, out.h_n,
        /*keep_for_backward=*/true);
    // The output is its own tensor: an op's outputs do not alias.
    out.output = pooled_empty({1, h0.size(0), h0.size(1)}, in.input.options());
    std::copy_n(out.h_n.data_ptr<T>(), out.h_n.numel(), out.output.data_ptr<T>());
    return true;
  }

  // The backward of such a step, from what single_step saved, at a batch
  // the cell ops' backward kernel takes (cell_step_backward.h): every
  // gradient in one call, W read where it lies, no packing and no GEMMs.
  template <class Cell>
  bool single_step_backward(const LayerInputs& in,
                            const OptionalTensor& grad_output,
                            const OptionalTensor& grad_h_n,
                            const OptionalTensor& grad_c_n,
                            const at::Tensor& saved,
                            const OptionalTensor& cells, bool input_grad,
                            bool state_grad, LayerGradients& grads) const {
    const at::Tensor x = in.input.select(0, 0);
    if (!runs_cell_step_backward(x.size(0))) return false;
    const OptionalTensor grad_y =
        grad_output ? OptionalTensor(grad_output->select(0, 0)) : std::nullopt;
    at::Tensor grad_x;
    std::tie(grad_x, grads.h0, grads.c0, grads.w_ih, grads.w_hh, grads.b_ih,
             grads.b_hh) =
        cell_step_backward_of<Cell, T>(
            grad_h_n, grad_y, grad_c_n, x, in.h0, in.c0, in.w_ih, in.w_hh,
            saved, cells,
            {input_grad, state_grad, state_grad, true, true, true});
    grads.input = input_grad ? grad_x.view(in.input.sizes()) : grad_x;
    grads.w_hr = at::empty({0}, in.input.options());
    grads.norms = at::empty({0}, in.input.options());
    return true;
  }

  at::Tensor empty(at::IntArrayRef sizes,
                   const at::TensorOptions& options) const {
    return pooled_empty(sizes, options);
  }

  at::Tensor input_projection(const at::Tensor& input, const at::Tensor& w_ih,
                              const OptionalTensor& b_ih) const {
    return time_major_multiply(input, w_ih.t(), b_ih);
  }

  // A copy goes to a pooled buffer: a fresh one would fault in every page.
  at::Tensor input_rows(const at::Tensor& input) const {
    const int64_t width = input.size(-1);
    if (input.is_contiguous()) return input.view({-1, width});
    return pooled_empty(input.sizes(), input.options())
        .copy_(input)
        .view({-1, width});
  }

  at::Tensor product(const at::Tensor& a, const at::Tensor& b) const {
    return pooled_to(whole_multiply(a, b), a.scalar_type());
  }

  // Packs op(W) when the step multiplies will take enough rows in all.
  Weight weight(const at::Tensor& w, bool transpose, int64_t groups) const {
    return Weight(w.data_ptr<T>(), w.size(0), w.size(1), transpose,
                  total_rows_, groups);
  }

  template <class Cell>
  void forward_step(const ForwardStep<T>& step, const Weight& w_hh) const {
    const StepRows<T>& rows = step.rows;
    const int64_t H = step.hidden, P = step.out_size;
    const int64_t width = Cell::kGates * H;
    // Equal shares of the step's rows and unit slices (grid_shares.h), the
    // same every step: each thread keeps its part of W_hh in its own L2,
    // even at batch 1.
    const PanelGrid grid(rows.live, H, kUnitSlice);
    const int64_t shares = share_count(rows.live * P * width, kMinTaskWork,
                                       at::get_num_threads());
    // Rows [b0, b1) and slices [s0, s1): their recurrent sums, then the
    // cell's math on them.
    auto run = [&](int64_t b0, int64_t b1, int64_t s0, int64_t s1) {
      auto sums = [&](int64_t first, int64_t end, const T* h) {
        multiply_units(end - first, h + first * P, P, w_hh, s0, s1, Acc(0),
                       step.recurrent + first * width, width);
      };
      if (step.h_multiplied != nullptr) {
        sums(b0, b1, step.h_multiplied);
      } else {
        // Rows below `continuing` go on from the previous step, the others
        // start from h0.
        const int64_t split = std::clamp(rows.continuing, b0, b1);
        sums(b0, split, rows.h_previous_step);
        sums(split, b1, rows.h0);
      }
      forward_units<Cell>(b0, b1, s0 * kUnitSlice,
                          std::min(H, s1 * kUnitSlice), H, P, rows,
                          step.gates, step.saved, step.recurrent,
                          step.bias_h, step.cells, step.hidden_out);
    };
    at::parallel_for(0, shares, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) grid.for_each_piece(i, shares, run);
    });
  }

  template <class Cell>
  void backward_step(const BackwardStep<T>& step) const {
    const int64_t G = Cell::kGates, H = step.hidden, P = step.out_size;
    // The cell writes its gate gradients in the compute type: to dgates
    // themselves when that is T, else to the scratch rows first.
    Acc* row_x = nullptr;
    Acc* row_h = nullptr;
    if constexpr (kRowScratch) {
      row_x = step.scratch;
      row_h = step.scratch + step.rows.live * G * H;
    } else {
      row_x = step.dgates_x;
      row_h = step.dgates_h;
    }
    at::parallel_for(
        0, step.rows.live, rows_per_task(G * H), [&](int64_t b0, int64_t b1) {
          if (step.dy != nullptr) {
            backward_rows<Cell, true>(b0, b1, 0, H, H, P, step.rows, step.saved,
                                      step.cells, step.dy, step.dh, step.dc,
                                      row_x, row_h, step.dgates_x,
                                      step.dgates_h);
          } else {
            backward_rows<Cell, false>(b0, b1, 0, H, H, P, step.rows, step.saved,
                                       step.cells, step.dy, step.dh, step.dc,
                                       row_x, row_h, step.dgates_x,
                                       step.dgates_h);
          }
        });
  }

  void multiply(int64_t m, const T* a, int64_t lda, const Weight& w, Acc beta,
                Acc* c, int64_t ldc) const {
    cpu::multiply(m, a, lda, w, beta, c, ldc);
  }

  // c = a op(W) in the storage type; through `scratch` ((m, N) in the
  // compute type) when that is not T.
  void project(int64_t m, const T* a, int64_t lda, const Weight& w, T* c,
               int64_t ldc, Acc* scratch) const {
    if constexpr (std::is_same_v<T, Acc>) {
      cpu::multiply(m, a, lda, w, Acc(0), c, ldc);
    } else {
      cpu::multiply(m, a, lda, w, Acc(0), scratch, ldc);
      std::copy(scratch, scratch + m * ldc, c);
    }
  }

  void add_output_gradient(int64_t n, const Acc* dh, const T* dy,
                           T* out) const {
    for (int64_t i = 0; i < n; ++i) {
      out[i] = T(dy == nullptr ? dh[i] : dh[i] + Acc(dy[i]));
    }
  }

  template <typename U>
  void copy(U* dst, const U* src, int64_t n) const {
    std::copy(src, src + n, dst);
  }

  // op(b, j) for every unit of `rows` rows (regularization.h's passes).
  template <class Op>
  void for_each_unit(int64_t rows, int64_t width, const Op& op) const {
    at::parallel_for(0, rows, rows_per_task(width), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t j = 0; j < width; ++j) op(b, j);
      }
    });
  }

  // op(row, r) for rows [0, rows), each row on one thread (SerialRow): the
  // row passes of core/normalization.h; `width` is about the elements one
  // row touches, to size the tasks.
  template <class Op>
  void for_each_row(int64_t rows, int64_t width, const Op& op) const {
    at::parallel_for(0, rows, rows_per_task(width),
                     [&](int64_t b0, int64_t b1) { run_rows(b0, b1, op); });
  }

  template <class Cell>
  void recompute_hidden(int64_t rows, int64_t H, const Acc* saved,
                        const Acc* cells, T* out) const {
    recompute_unprojected<Cell, T>(rows, H, saved, cells, out);
  }

 private:
  int64_t total_rows_;
  bool team_loops_;
};

}  // namespace fusedrnn::cpu
