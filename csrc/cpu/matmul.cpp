#include "matmul.h"

#include <c10/util/Exception.h>

#include <limits>
#include <type_traits>

#include "matmul/packed_multiply.h"

// The Fortran BLAS entry points exported by libtorch_cpu (LP64: 32-bit ints).
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n,
            const int* k, const float* alpha, const float* a, const int* lda,
            const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n,
            const int* k, const double* alpha, const double* a, const int* lda,
            const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
}

namespace fusedrnn::cpu {
namespace {

int blas_int(int64_t value) {
  TORCH_CHECK(value <= std::numeric_limits<int>::max(),
              "fusedrnn: matrix dimension ", value, " exceeds the BLAS limit");
  // BLAS rejects a leading dimension of 0 even for empty operands.
  return value > 0 ? static_cast<int>(value) : 1;
}

void blas_gemm(const char* ta, const char* tb, const int* m, const int* n,
               const int* k, const float* alpha, const float* a, const int* lda,
               const float* b, const int* ldb, const float* beta, float* c,
               const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void blas_gemm(const char* ta, const char* tb, const int* m, const int* n,
               const int* k, const double* alpha, const double* a,
               const int* lda, const double* b, const int* ldb,
               const double* beta, double* c, const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// op(W) in the tile kernels' layout, or nothing where they cannot run or
// would not repay the copy: double, a CPU without them, too few rows, or
// an empty W (which BLAS handles).
PackedMatrix pack_for_kernels(const float* w, int64_t rows, int64_t cols,
                              bool transpose, int64_t total_rows) {
  if (!packed_multiply_available() || total_rows < kMinRowsToPack) return {};
  return PackedMatrix(w, rows, cols, transpose);
}

PackedMatrix pack_for_kernels(const double*, int64_t, int64_t, bool, int64_t) {
  return {};
}

}  // namespace

template <typename T>
RightOperand<T>::RightOperand(const T* w, int64_t rows, int64_t cols,
                              bool transpose, int64_t total_rows)
    : w_(w), rows_(rows), cols_(cols), transpose_(transpose),
      packed_(pack_for_kernels(w, rows, cols, transpose, total_rows)) {}

template class RightOperand<float>;
template class RightOperand<double>;

template <typename T>
void multiply(int64_t m, const T* a, int64_t lda, const RightOperand<T>& w,
              T beta, T* c, int64_t ldc) {
  if (m == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (!w.packed_.empty()) {
      packed_multiply(m, {a, lda}, w.packed_, beta, c, ldc);
      return;
    }
  }
  // BLAS is column-major: the row-major C = A op(W) is the column-major
  // C^T = op(W)^T A^T, i.e. the call with the operands swapped. A row-major
  // W read column-major is W^T, so `transpose` maps to 'T' as it stands.
  const char tw = w.transpose_ ? 'T' : 'N';
  const char ta = 'N';
  const int n = blas_int(w.n()), mm = blas_int(m), k = blas_int(w.k());
  const int ldw = blas_int(w.cols_), ilda = blas_int(lda), ildc = blas_int(ldc);
  const T one = 1;
  blas_gemm(&tw, &ta, &n, &mm, &k, &one, w.w_, &ldw, a, &ilda, &beta, c,
            &ildc);
}

template void multiply<float>(int64_t, const float*, int64_t,
                              const RightOperand<float>&, float, float*,
                              int64_t);
template void multiply<double>(int64_t, const double*, int64_t,
                               const RightOperand<double>&, double, double*,
                               int64_t);

}  // namespace fusedrnn::cpu
