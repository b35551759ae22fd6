// Row-major matrix multiply on raw pointers for the CPU time loops.
//
// The per-step recurrent multiply is called T times per layer; going through
// at::mm would build tensor views and dispatch every step. This calls the
// BLAS that libtorch_cpu already links (MKL on x86) directly, on the threads
// torch configured. It is the one place a faster micro-kernel plugs in.
#pragma once

#include <cstdint>

namespace fusedrnn::cpu {

// C (m x n) = alpha * op(A) * op(B) + beta * C, all row-major with leading
// dimensions lda, ldb, ldc; op(X) = X^T when trans_x.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          double alpha, const double* a, int64_t lda, const double* b,
          int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace fusedrnn::cpu
