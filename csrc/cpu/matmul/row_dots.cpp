// The row dot products (row_dots.h): the AVX-512 kernels where the CPU has
// them, else plain loops.
#include "row_dots.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <type_traits>

#include "tile_kernels.h"  // has_avx512_kernels

namespace fusedrnn::cpu {
namespace {

// Whether to run row_dots_avx512<T>: where the CPU has AVX-512F, for
// every type (the bfloat16 kernels widen to float; the bfloat16 ops need
// AVX512_BF16 anyway, which the executor checks). FUSEDRNN_PORTABLE_ROW_DOTS
// in the environment (read once, at the first call) runs the plain loops
// instead, so that tests/test_cell_step.py can check them against the
// AVX-512 kernels on a machine that has both.
bool use_avx512_dots() {
  static const bool use = has_avx512_kernels<float>() &&
                          std::getenv("FUSEDRNN_PORTABLE_ROW_DOTS") == nullptr;
  return use;
}

// The portable version. Each dot product keeps kPartial running sums
// (rows of them, interleaved), which the compiler may vectorise and which
// break the chain of dependent additions, then adds them up.
template <typename T>
void row_dots_portable(int64_t rows, int64_t vectors, const T* w, int64_t ldw,
                       const T* v, int64_t ldv, int64_t depth,
                       at::opmath_type<T>* out, int64_t ldo) {
  using Acc = at::opmath_type<T>;
  constexpr int64_t kPartial = 8;
  for (int64_t r = 0; r < rows; ++r) {
    const T* w_row = w + r * ldw;
    for (int64_t b = 0; b < vectors; ++b) {
      const T* vec = v + b * ldv;
      Acc partial[kPartial] = {};
      int64_t k = 0;
      for (; k + kPartial <= depth; k += kPartial) {
        for (int64_t l = 0; l < kPartial; ++l) {
          partial[l] += Acc(w_row[k + l]) * Acc(vec[k + l]);
        }
      }
      for (; k < depth; ++k) partial[0] += Acc(w_row[k]) * Acc(vec[k]);
      Acc sum = Acc(0);
      for (int64_t l = 0; l < kPartial; ++l) sum += partial[l];
      out[b * ldo + r] = sum;
    }
  }
}

}  // namespace

template <typename T>
void row_dots(int64_t rows, int64_t vectors, const T* w, int64_t ldw,
              const T* v, int64_t ldv, int64_t depth, at::opmath_type<T>* out,
              int64_t ldo) {
  TORCH_INTERNAL_ASSERT(vectors >= 1 && vectors <= kMaxDotVectors);
  if (use_avx512_dots()) {
    row_dots_avx512(rows, vectors, w, ldw, v, ldv, depth, out, ldo);
  } else {
    row_dots_portable(rows, vectors, w, ldw, v, ldv, depth, out, ldo);
  }
}

template void row_dots<float>(int64_t, int64_t, const float*, int64_t,
                              const float*, int64_t, int64_t, float*, int64_t);
template void row_dots<double>(int64_t, int64_t, const double*, int64_t,
                               const double*, int64_t, int64_t, double*,
                               int64_t);
template void row_dots<c10::BFloat16>(int64_t, int64_t, const c10::BFloat16*,
                                      int64_t, const c10::BFloat16*, int64_t,
                                      int64_t, float*, int64_t);

}  // namespace fusedrnn::cpu
