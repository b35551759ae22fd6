// The CUDA time loop shared by every recurrent cell.
//
// The same loop as cpu/sequence_driver.h, step for step: the same step
// layout (cpu/sequence_layout.h only does host-side bookkeeping, so it
// serves both back ends), the same buffers, the same order of multiplies.
// Per step: the recurrent multiply of the live rows (cuBLAS), then one
// pointwise kernel over the step's units that applies the cell's math and
// writes the saved values and the new state, then with a projection one
// more multiply. batch_sizes lives on the CPU, so the host knows every
// step's rows without asking the GPU: the loop only enqueues work on the
// current stream, never waits for it, and allocates nothing.
//
// Buffers are row-major with the rows of all steps one after another, as on
// the CPU. T is the storage type and Acc = accumulate_t<T> the compute type
// (see accumulate.h); each buffer says which it holds. A cell contributes
// its gate count and per-unit math (cells/README.md); its kernels are
// instantiated in cell_kernels.cu.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "../cpu/sequence_layout.h"
#include "cell_kernels.h"
#include "gemm.h"

namespace fusedrnn::cuda {

using cpu::SequenceLayout;

// Stream-ordered copy of n elements between device buffers.
template <typename T>
void copy_async(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  C10_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T),
                                 cudaMemcpyDeviceToDevice, stream));
}

template <typename T>
struct ForwardBuffers {
  using Acc = accumulate_t<T>;
  const T* h0;        // (B, P)
  const Acc* c0;      // (B, H), cells with a cell state only
  const Acc* bias_h;  // (G*H): b_hh, zeros without bias
  Acc* gates;         // (rows, G*H): input projections (with b_ih) in
  Acc* saved;         // (rows, S*H): the saved values; == gates when S == G
  T* output;          // (rows, P)
  Acc* cells;         // (rows, H), cells with a cell state only
  T* h_n;             // (B, P): each sequence's state after its last step
  T* c_n;             // (B, H), cells with a cell state only
  Acc* recurrent;     // (B, G*H) scratch
  T* unprojected;     // (B, H) scratch, with a projection only
};

// Forward time loop. `w_hh` is op(W_hh) = W_hh^T (P -> G*H); `w_hr`, when
// not null, is W_hr^T (H -> P).
template <typename Cell, typename T>
void forward_sequence(const Blas& blas, cudaStream_t stream,
                      const SequenceLayout& layout, int64_t H, int64_t P,
                      const RightOperand<T>& w_hh,
                      const RightOperand<T>* w_hr,
                      const ForwardBuffers<T>& buf) {
  using Acc = accumulate_t<T>;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t row0 = layout.offset(t);
    const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
    const StepRows<T> rows{live, layout.continuing(s),
                           buf.output + prev_row0 * P, buf.h0,
                           buf.cells ? buf.cells + prev_row0 * H : nullptr,
                           buf.c0};

    blas.multiply(rows.continuing, rows.h_previous_step, P, w_hh, Acc(0),
                  buf.recurrent, G * H);
    blas.multiply(live - rows.continuing, buf.h0 + rows.continuing * P, P,
                  w_hh, Acc(0), buf.recurrent + rows.continuing * G * H, G * H);
    T* output_t = buf.output + row0 * P;
    // Sequences whose last step this is hand over their final state: the
    // kernel writes c_n, h_n is copied below once the output is final.
    const int64_t ending = layout.live_after(s);
    launch_forward_step<Cell, T>(
        {rows, H, P, ending, buf.gates + row0 * G * H,
         buf.saved + row0 * S * H, buf.recurrent, buf.bias_h,
         w_hr != nullptr ? buf.unprojected : output_t,
         buf.cells ? buf.cells + row0 * H : nullptr, buf.c_n},
        stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (w_hr != nullptr) {
      blas.multiply(live, buf.unprojected, H, *w_hr, Acc(0), output_t, P);
    }
    copy_async(buf.h_n + ending * P, output_t + ending * P, (live - ending) * P,
               stream);
  }
}

template <typename T>
struct BackwardBuffers {
  using Acc = accumulate_t<T>;
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
};

// Backward time loop, steps in the reverse of processing order. `w_hh` is
// op(W_hh) = W_hh (G*H -> P); `w_hr`, when not null, is W_hr (P -> H).
template <typename Cell, typename T>
void backward_sequence(const Blas& blas, cudaStream_t stream,
                       const SequenceLayout& layout, int64_t H, int64_t P,
                       const RightOperand<T>& w_hh,
                       const RightOperand<T>* w_hr,
                       const BackwardBuffers<T>& buf) {
  using Acc = accumulate_t<T>;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  for (int64_t s = layout.steps() - 1; s >= 0; --s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t row0 = layout.offset(t);
    const int64_t prev_row0 = s > 0 ? layout.offset(layout.step(s - 1)) : 0;
    const StepRows<T> rows{live, layout.continuing(s),
                           buf.output + prev_row0 * P, buf.h0,
                           buf.cells ? buf.cells + prev_row0 * H : nullptr,
                           buf.c0};
    const T* dy = buf.output_grad == nullptr ? nullptr
                                             : buf.output_grad + row0 * P;
    Acc* dh = buf.dh;
    if (w_hr != nullptr) {
      // The gradient at the projected output, kept for W_hr's gradient,
      // then carried back through W_hr to the unprojected h.
      T* dprojected = buf.dprojected + row0 * P;
      launch_add_output_gradient(live * P, buf.dh, dy, dprojected, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      blas.multiply(live, dprojected, P, *w_hr, Acc(0), buf.dunprojected, H);
      dh = buf.dunprojected;
      dy = nullptr;
    }
    T* dgates_x = buf.dgates_x + row0 * G * H;
    T* dgates_h = buf.dgates_h + row0 * G * H;
    launch_backward_step<Cell, T>(
        {rows, H, P, buf.saved + row0 * S * H,
         buf.cells ? buf.cells + row0 * H : nullptr, dy, dh, buf.dc, dgates_x,
         dgates_h},
        stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // The gradient at the previous h of the live rows through W_hh, added
    // to h's own share where the cell has one. Rows that started from the
    // initial state keep theirs: it is the gradient at h0.
    blas.multiply(live, dgates_h, G * H, w_hh,
                  Cell::kReadsPreviousHidden ? Acc(1) : Acc(0), buf.dh, P);
  }
}

// The h each step's recurrent multiply read, as a (rows, P) matrix: the
// previous step's output, or h0 for rows that started there. W_hh's
// gradient is then one multiply over all steps. Copies that extend the
// pending one (after its end, or before its start in reverse) are merged
// into it, so dense input takes two copies however many steps it has.
template <typename T>
void gather_previous_outputs(const SequenceLayout& layout, int64_t P,
                             const T* output, const T* h0, T* h_prev,
                             cudaStream_t stream) {
  T* pending_dst = h_prev;
  const T* pending_src = nullptr;
  int64_t pending = 0;
  auto copy = [&](T* dst, const T* src, int64_t n) {
    if (n == 0) return;
    if (pending > 0 && dst == pending_dst + pending &&
        src == pending_src + pending) {
      pending += n;
      return;
    }
    if (pending > 0 && dst + n == pending_dst && src + n == pending_src) {
      pending_dst = dst;
      pending_src = src;
      pending += n;
      return;
    }
    copy_async(pending_dst, pending_src, pending, stream);
    pending_dst = dst;
    pending_src = src;
    pending = n;
  };
  for (int64_t s = 0; s < layout.steps(); ++s) {
    const int64_t t = layout.step(s), live = layout.live(t);
    const int64_t continuing = layout.continuing(s);
    T* dst = h_prev + layout.offset(t) * P;
    if (continuing > 0) {
      copy(dst, output + layout.offset(layout.step(s - 1)) * P,
           continuing * P);
    }
    copy(dst + continuing * P, h0 + continuing * P, (live - continuing) * P);
  }
  copy_async(pending_dst, pending_src, pending, stream);
}

}  // namespace fusedrnn::cuda
