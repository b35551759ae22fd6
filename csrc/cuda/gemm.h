// Matrix multiplies of the CUDA time loops, on raw device pointers.
//
// The CUDA counterpart of cpu/matmul.h: each step multiplies a block of rows
// by the same weight, so the weight side is described once (RightOperand)
// and every step calls Blas::multiply, which is one cublasGemmEx on torch's
// cuBLAS handle and current stream. No tensor is created, nothing is
// dispatched and nothing waits for the GPU.
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "../core/storage_types.h"

namespace fusedrnn::cuda {

// op(W) for a row-major weight W of size (rows, cols): W itself (K = rows,
// N = cols) or W^T (K = cols, N = rows). Borrows W, which must outlive it.
template <typename T>
class RightOperand {
 public:
  RightOperand(const T* w, int64_t rows, int64_t cols, bool transpose)
      : w_(w), rows_(rows), cols_(cols), transpose_(transpose) {}

  int64_t k() const { return transpose_ ? cols_ : rows_; }
  int64_t n() const { return transpose_ ? rows_ : cols_; }
  const T* data() const { return w_; }
  int64_t cols() const { return cols_; }
  bool transpose() const { return transpose_; }

 private:
  const T* w_;
  int64_t rows_, cols_;
  bool transpose_;
};

// cuBLAS for one op call on the current device and stream. Construct it
// after the device guard; it sets the handle's math mode for its lifetime
// (16-bit products reduce in float32 only, never in 16 bits) and restores
// the previous mode when it goes.
class Blas {
 public:
  Blas();
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // C (m x N) = A (m x K) op(W) + beta C, row-major with leading dimensions
  // lda and ldc. A and W have the storage type T; C has T or compute_t<T>
  // (a 16-bit product can go straight to a float32 buffer). The products
  // accumulate in compute_t<T>; float32 uses TF32 tensor cores only when
  // torch allows it for cuBLAS (torch.backends.cuda.matmul.allow_tf32).
  template <typename T, typename Out>
  void multiply(int64_t m, const T* a, int64_t lda, const RightOperand<T>& w,
                compute_t<T> beta, Out* c, int64_t ldc) const;

 private:
  cublasHandle_t handle_;
  cublasMath_t previous_mode_;
  bool allow_tf32_;
};

}  // namespace fusedrnn::cuda
