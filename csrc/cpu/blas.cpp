#include "blas.h"

#include <c10/util/Exception.h>

#include <limits>

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

int checked_int(int64_t value) {
  TORCH_CHECK(value <= std::numeric_limits<int>::max(),
              "fusedrnn: matrix dimension ", value, " exceeds the BLAS limit");
  return static_cast<int>(value);
}

// BLAS is column-major: a row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, i.e. the same call with A and B swapped.
template <typename T, typename Fn>
void row_major_gemm(Fn fn, bool trans_a, bool trans_b, int64_t m, int64_t n,
                    int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                    int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const char ta = trans_a ? 'T' : 'N';
  const char tb = trans_b ? 'T' : 'N';
  const int im = checked_int(m), in = checked_int(n), ik = checked_int(k);
  // BLAS rejects a leading dimension of 0 even for empty operands.
  const int ilda = checked_int(lda > 0 ? lda : 1);
  const int ildb = checked_int(ldb > 0 ? ldb : 1);
  const int ildc = checked_int(ldc > 0 ? ldc : 1);
  fn(&tb, &ta, &in, &im, &ik, &alpha, b, &ildb, a, &ilda, &beta, c, &ildc);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  row_major_gemm(sgemm_, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                 beta, c, ldc);
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          double alpha, const double* a, int64_t lda, const double* b,
          int64_t ldb, double beta, double* c, int64_t ldc) {
  row_major_gemm(dgemm_, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                 beta, c, ldc);
}

}  // namespace fusedrnn::cpu
