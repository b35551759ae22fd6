#include "matmul.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "matmul/few_rows.h"
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

// Block g of op(W) (columns [g*n, (g+1)*n)) in the tile kernels' layout,
// or nothing where they cannot run or would not repay the copy (a CPU
// without them, too few rows, an empty W): then float goes to BLAS and
// bfloat16 to the few-row kernels.
template <typename T>
std::vector<PackedMatrix<T>> pack_for_kernels(const T* w, int64_t rows,
                                              int64_t cols, bool transpose,
                                              int64_t total_rows,
                                              int64_t groups) {
  std::vector<PackedMatrix<T>> blocks;
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    TORCH_CHECK(packed_multiply_available<T>(),
                "fusedrnn: this CPU has no AVX512_BF16 for the bfloat16 "
                "kernels");
  }
  if (!packed_multiply_available<T>() || total_rows < kMinRowsToPack ||
      rows * cols == 0) {
    return blocks;
  }
  // Column blocks of W^T are row blocks of W, which pack as they stand.
  TORCH_INTERNAL_ASSERT(groups == 1 || transpose);
  const int64_t block_rows = transpose ? rows / groups : rows;
  for (int64_t g = 0; g < groups; ++g) {
    blocks.emplace_back(w + g * block_rows * cols, block_rows, cols, transpose);
  }
  return blocks;
}

// C (m x n) = A (m x k) op(W') + beta C, where W' is the part of W that
// starts at `w` (row-major, leading dimension ldw) and op(W') is k x n.
// BLAS is column-major: the row-major C = A op(W') is the column-major
// C^T = op(W')^T A^T, i.e. the call with the operands swapped. A row-major
// W' read column-major is W'^T, so `transpose` maps to 'T' as it stands.
template <typename T>
void blas_multiply(int64_t m, const T* a, int64_t lda, const T* w,
                   int64_t ldw, int64_t k, int64_t n, bool transpose, T beta,
                   T* c, int64_t ldc) {
  const char tw = transpose ? 'T' : 'N';
  const char ta = 'N';
  const int in = blas_int(n), im = blas_int(m), ik = blas_int(k);
  const int ildw = blas_int(ldw), ilda = blas_int(lda), ildc = blas_int(ldc);
  const T one = 1;
  blas_gemm(&tw, &ta, &in, &im, &ik, &one, w, &ildw, a, &ilda, &beta, c,
            &ildc);
}

// blas_multiply for every storage type: bfloat16 (no BLAS) on the
// few-row kernels.
template <typename T>
void unpacked_multiply(int64_t m, const T* a, int64_t lda, const T* w,
                       int64_t ldw, int64_t k, int64_t n, bool transpose,
                       compute_t<T> beta, compute_t<T>* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    few_rows_multiply(m, a, lda, w, ldw, k, n, transpose, beta, c, ldc);
  } else {
    blas_multiply(m, a, lda, w, ldw, k, n, transpose, beta, c, ldc);
  }
}

}  // namespace

template <typename T>
RightOperand<T>::RightOperand(const T* w, int64_t rows, int64_t cols,
                              bool transpose, int64_t total_rows,
                              int64_t groups)
    : w_(w), rows_(rows), cols_(cols), transpose_(transpose), groups_(groups) {
  TORCH_INTERNAL_ASSERT(groups >= 1 && n() % groups == 0);
  if constexpr (!std::is_same_v<T, double>) {
    packed_ = pack_for_kernels(w, rows, cols, transpose, total_rows, groups);
  }
}

template class RightOperand<float>;
template class RightOperand<double>;
template class RightOperand<c10::BFloat16>;

template <typename T>
void multiply(int64_t m, const T* a, int64_t lda, const RightOperand<T>& w,
              compute_t<T> beta, compute_t<T>* c, int64_t ldc) {
  if (m == 0) return;
  const int64_t units = w.units();
  if constexpr (!std::is_same_v<T, double>) {
    if (!w.packed_.empty()) {
      for (int64_t g = 0; g < w.groups_; ++g) {
        packed_multiply(m, LeftMatrix<T>{a, lda}, w.packed_[g], beta,
                        c + g * units, ldc);
      }
      return;
    }
  }
  unpacked_multiply(m, a, lda, w.w_, w.cols_, w.k(), w.n(), w.transpose_, beta,
                    c, ldc);
}

template <typename T>
void multiply_units(int64_t m, const T* a, int64_t lda,
                    const RightOperand<T>& w, int64_t s0, int64_t s1,
                    compute_t<T> beta, compute_t<T>* c, int64_t ldc) {
  const int64_t units = w.units();
  const int64_t u0 = s0 * kUnitSlice;
  const int64_t u1 = std::min(units, s1 * kUnitSlice);
  if (m == 0 || u0 >= u1) return;
  for (int64_t g = 0; g < w.groups_; ++g) {
    const int64_t column0 = g * units + u0;
    if constexpr (!std::is_same_v<T, double>) {
      if (!w.packed_.empty()) {
        // Slice s of block g is panel s of its packed matrix.
        multiply_panel_range(m, LeftMatrix<T>{a, lda}, w.packed_[g],
                             static_cast<float>(beta), c + g * units, ldc, s0,
                             s1);
        continue;
      }
    }
    // Columns [column0, column0 + u1 - u0) of op(W): rows of W when op(W)
    // is W^T, columns of W otherwise.
    const T* part = w.transpose_ ? w.w_ + column0 * w.cols_ : w.w_ + column0;
    unpacked_multiply(m, a, lda, part, w.cols_, w.k(), u1 - u0, w.transpose_,
                      beta, c + column0, ldc);
  }
}

#define FUSEDRNN_INSTANTIATE_MULTIPLY(T)                                      \
  template void multiply<T>(int64_t, const T*, int64_t,                       \
                            const RightOperand<T>&, compute_t<T>,             \
                            compute_t<T>*, int64_t);                          \
  template void multiply_units<T>(int64_t, const T*, int64_t,                 \
                                  const RightOperand<T>&, int64_t, int64_t,   \
                                  compute_t<T>, compute_t<T>*, int64_t);
FUSEDRNN_INSTANTIATE_MULTIPLY(float)
FUSEDRNN_INSTANTIATE_MULTIPLY(double)
FUSEDRNN_INSTANTIATE_MULTIPLY(c10::BFloat16)
#undef FUSEDRNN_INSTANTIATE_MULTIPLY

}  // namespace fusedrnn::cpu
