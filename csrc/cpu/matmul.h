// Matrix multiplies of the CPU time loops, on raw pointers.
//
// Every step multiplies a block of rows by the same weight matrix (W_hh, or
// W_hr with projections), T times per layer. So the weight side is prepared
// once per call (`RightOperand`) and each step only streams its rows
// through `multiply`. No tensors are built and nothing is dispatched inside
// the loop. For float on a CPU with AVX-512, RightOperand copies op(W) into
// the layout of fusedrnn's own tile kernels (matmul/), which `multiply` then
// runs; everywhere else `multiply` calls the BLAS that libtorch_cpu links
// (MKL on x86). On the time loop's shapes (1 to 64 rows per step) the own
// kernels run 1.5-3x as fast as MKL's sgemm (tools/bench_matmul.py).
#pragma once

#include <cstdint>

#include "matmul/packed_matrix.h"

namespace fusedrnn::cpu {

// op(W) for a row-major weight W of size (rows, cols): W itself (K = rows,
// N = cols) or W^T (K = cols, N = rows). Borrows W, which must outlive it
// (BLAS reads it in place). Defined for float and double.
template <typename T>
class RightOperand {
 public:
  // For float this packs op(W) when the tile kernels can run and the
  // multiplies will take at least kMinRowsToPack rows in all (`total_rows`,
  // summed over the steps): K*N copies, paid once per op call and repaid by
  // every step's multiply.
  RightOperand(const T* w, int64_t rows, int64_t cols, bool transpose,
               int64_t total_rows);

  int64_t k() const { return transpose_ ? cols_ : rows_; }
  int64_t n() const { return transpose_ ? rows_ : cols_; }

 private:
  template <typename U>
  friend void multiply(int64_t, const U*, int64_t, const RightOperand<U>&,
                       U, U*, int64_t);
  const T* w_;
  int64_t rows_, cols_;
  bool transpose_;
  // op(W) for the tile kernels; empty when BLAS does the multiplies.
  PackedMatrix packed_;
};

extern template class RightOperand<float>;
extern template class RightOperand<double>;

// C (m x N) = A (m x K) op(W) + beta C, row-major with leading dimensions
// lda and ldc. Defined for float and double.
template <typename T>
void multiply(int64_t m, const T* a, int64_t lda, const RightOperand<T>& w,
              T beta, T* c, int64_t ldc);

}  // namespace fusedrnn::cpu
