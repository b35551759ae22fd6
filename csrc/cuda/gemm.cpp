#include "gemm.h"

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <c10/util/Exception.h>

#include <limits>
#include <type_traits>

namespace fusedrnn::cuda {
namespace {

template <typename T>
constexpr cudaDataType_t data_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  if constexpr (std::is_same_v<T, double>) return CUDA_R_64F;
  if constexpr (std::is_same_v<T, c10::Half>) return CUDA_R_16F;
  if constexpr (std::is_same_v<T, c10::BFloat16>) return CUDA_R_16BF;
}

// cuBLAS takes int sizes.
int to_int(int64_t value) {
  TORCH_CHECK(value <= std::numeric_limits<int>::max(),
              "fusedrnn: matrix dimension ", value, " is too large for cuBLAS");
  return static_cast<int>(value);
}

}  // namespace

Blas::Blas()
    : handle_(at::cuda::getCurrentCUDABlasHandle()),
      allow_tf32_(at::globalContext().allowTF32CuBLAS()) {
  TORCH_CUDABLAS_CHECK(cublasGetMathMode(handle_, &previous_mode_));
  // The compute type of each call says whether TF32 may be used; the mode
  // only forbids reducing split products in 16 bits.
  TORCH_CUDABLAS_CHECK(cublasSetMathMode(
      handle_, static_cast<cublasMath_t>(
                   CUBLAS_DEFAULT_MATH |
                   CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
}

Blas::~Blas() {
  // A destructor must not throw; a failure here would also have failed the
  // multiplies before it.
  cublasSetMathMode(handle_, previous_mode_);
}

template <typename T, typename Out>
void Blas::multiply(int64_t m, const T* a, int64_t lda,
                    const RightOperand<T>& w, compute_t<T> beta, Out* c,
                    int64_t ldc) const {
  static_assert(std::is_same_v<Out, T> || std::is_same_v<Out, compute_t<T>>);
  if (m == 0) return;
  // cuBLAS is column-major, and a row-major matrix is its transpose in
  // column-major order. So the row-major C = A op(W) is computed as the
  // column-major C^T = op(W)^T A^T: W (row-major rows x cols) is the
  // column-major W^T with leading dimension cols, used as is when op(W) = W
  // and transposed when op(W) = W^T.
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if constexpr (std::is_same_v<T, double>) {
    compute = CUBLAS_COMPUTE_64F;
  } else if constexpr (std::is_same_v<T, float>) {
    if (allow_tf32_) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  }
  const compute_t<T> alpha = 1;
  TORCH_CUDABLAS_CHECK(cublasGemmEx(
      handle_, w.transpose() ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
      to_int(w.n()), to_int(m), to_int(w.k()), &alpha, w.data(),
      data_type<T>(), to_int(w.cols()), a, data_type<T>(), to_int(lda), &beta,
      c, data_type<Out>(), to_int(ldc), compute, CUBLAS_GEMM_DEFAULT));
}

#define FUSEDRNN_INSTANTIATE_MULTIPLY(T, Out)                               \
  template void Blas::multiply<T, Out>(int64_t, const T*, int64_t,          \
                                       const RightOperand<T>&,              \
                                       compute_t<T>, Out*, int64_t) const;
FUSEDRNN_INSTANTIATE_MULTIPLY(float, float)
FUSEDRNN_INSTANTIATE_MULTIPLY(double, double)
FUSEDRNN_INSTANTIATE_MULTIPLY(c10::Half, c10::Half)
FUSEDRNN_INSTANTIATE_MULTIPLY(c10::Half, float)
FUSEDRNN_INSTANTIATE_MULTIPLY(c10::BFloat16, c10::BFloat16)
FUSEDRNN_INSTANTIATE_MULTIPLY(c10::BFloat16, float)
#undef FUSEDRNN_INSTANTIATE_MULTIPLY

}  // namespace fusedrnn::cuda
