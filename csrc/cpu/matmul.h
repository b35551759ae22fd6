// Matrix multiplies of the CPU time loops, on raw pointers.
//
// Every step multiplies a block of rows by the same weight matrix (W_hh, or
// W_hr with projections), T times per layer. So the weight side is prepared
// once per call (`RightOperand`) and each step only streams its rows
// through `multiply`. No tensors are built and nothing is dispatched inside
// the loop. For float on a CPU with AVX-512, and for bfloat16 (which needs
// AVX512_BF16), RightOperand copies op(W) into the layout of fusedrnn's own
// tile kernels (matmul/), which `multiply` then runs. Otherwise (too few
// rows to repay the copy, no AVX-512, or double) float and double call the
// BLAS that libtorch_cpu links (MKL on x86) and bfloat16 reads W in place
// (matmul/few_rows.h). On the time loop's shapes (1 to 64
// rows per step) the own kernels run 1.5-3x as fast as MKL's sgemm
// (tools/bench_matmul.py), and bfloat16 about twice as fast again.
//
// T is the storage type of A and W (float, double or c10::BFloat16); C and
// beta have its compute type compute_t<T> (float for bfloat16: the products
// are summed in float).
#pragma once

#include <ATen/OpMathType.h>
#include <c10/util/BFloat16.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "matmul/packed_matrix.h"

namespace fusedrnn::cpu {

template <typename T>
using compute_t = at::opmath_type<T>;

// Units per slice in multiply_units: one panel of the tile kernels.
constexpr int64_t kUnitSlice = PackedMatrix<float>::kPanelWidth;

// op(W) for a row-major weight W of size (rows, cols): W itself (K = rows,
// N = cols) or W^T (K = cols, N = rows). Borrows W, which must outlive it
// (BLAS reads it in place). Defined for float, double and bfloat16.
//
// The N columns form `groups` equal blocks (the gates of W_hh^T). Column
// c of every block belongs to hidden unit c, so a thread that multiplies
// the same columns of every block has all gates of its units
// (multiply_units), and can apply the cell's math to them at once.
template <typename T>
class RightOperand {
 public:
  // For float and bfloat16 this packs op(W), block by block, when the tile
  // kernels can run and the multiplies will take at least kMinRowsToPack
  // rows in all (`total_rows`, summed over the steps): K*N copies, paid
  // once per op call and repaid by every step's multiply. bfloat16 needs
  // its kernels (AVX512_BF16) either way.
  RightOperand(const T* w, int64_t rows, int64_t cols, bool transpose,
               int64_t total_rows, int64_t groups = 1);

  int64_t k() const { return transpose_ ? cols_ : rows_; }
  int64_t n() const { return transpose_ ? rows_ : cols_; }
  // Columns per block, and slices of kUnitSlice of them.
  int64_t units() const { return n() / groups_; }
  int64_t unit_slices() const {
    return (units() + kUnitSlice - 1) / kUnitSlice;
  }
  // Whether op(W) was packed for the tile kernels; W itself, row-major,
  // for kernels that read it in place.
  bool packed() const { return !packed_.empty(); }
  const T* source() const { return w_; }

 private:
  template <typename U>
  friend void multiply(int64_t, const U*, int64_t, const RightOperand<U>&,
                       compute_t<U>, compute_t<U>*, int64_t);
  template <typename U>
  friend void multiply_units(int64_t, const U*, int64_t, const RightOperand<U>&,
                             int64_t, int64_t, compute_t<U>, compute_t<U>*,
                             int64_t);
  // double has no tile kernels.
  struct NoKernels {};
  using Packed = std::conditional_t<std::is_same_v<T, double>, NoKernels,
                                    PackedMatrix<T>>;
  const T* w_;
  int64_t rows_, cols_;
  bool transpose_;
  int64_t groups_;
  // Each block of op(W) for the tile kernels; empty when BLAS does the
  // multiplies.
  std::vector<Packed> packed_;
};

extern template class RightOperand<float>;
extern template class RightOperand<double>;
extern template class RightOperand<c10::BFloat16>;

// C (m x N) = A (m x K) op(W) + beta C, row-major with leading dimensions
// lda and ldc.
template <typename T>
void multiply(int64_t m, const T* a, int64_t lda, const RightOperand<T>& w,
              compute_t<T> beta, compute_t<T>* c, int64_t ldc);

// C = A op(W) + beta C for the units of slices [s0, s1) only: columns
// [u0, u1) of every block, u0 = s0 * kUnitSlice, u1 = min(units, s1 *
// kUnitSlice). Runs on the calling thread: the caller spreads the slices
// over its threads.
template <typename T>
void multiply_units(int64_t m, const T* a, int64_t lda,
                    const RightOperand<T>& w, int64_t s0, int64_t s1,
                    compute_t<T> beta, compute_t<T>* c, int64_t ldc);

}  // namespace fusedrnn::cpu
