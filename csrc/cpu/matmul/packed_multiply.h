// C = A B + beta C for a packed B, with the tile kernels.
#pragma once

#include <cstdint>

#include "packed_matrix.h"
#include "tile_kernels.h"

namespace fusedrnn::cpu {

// Whether packed_multiply can run on this CPU for elements E (float or
// c10::BFloat16). RightOperand packs its matrix only then (matmul.h).
template <typename E>
bool packed_multiply_available() {
  return has_avx512_kernels<E>();
}

// Packing B copies all of it (K*N elements), which the faster multiplies
// repay only over enough rows of A: about 8 at the break-even of a copy
// against BLAS's single-row rate. Below this many rows in all (one step of
// batch 1, say: the streaming case), B is used in place by BLAS (float)
// or the few-row kernels (bfloat16; reading W in place measured slower
// than packing from 32 rows on).
constexpr int64_t kMinRowsToPack = 16;

// Work of one parallel task, in multiply-adds (about a microsecond's
// worth): below this, waking a second thread costs more than it saves.
// Small enough that the few-row step multiplies still split, so that each
// thread's part of W stays in its own L2.
constexpr int64_t kMinTaskWork = 1 << 16;

// The left operand A (m x K): element (i, k) is at
// data[i * row_stride + k * depth_stride]. The time loops pass row-major
// blocks (depth_stride 1); the weight gradients pass transposed ones.
template <typename E>
struct LeftMatrix {
  const E* data;
  int64_t row_stride;
  int64_t depth_stride = 1;
};

// C (m x N) = A (m x K) B + beta C (+ bias, N floats added to every row,
// when not null), C (float) row-major with leading dimension ldc, where B
// (K x N) is packed and not empty; A and B have elements E. Splits the
// work into equal shares of B's panels and A's rows (grid_shares.h) over
// the intra-op threads with at::parallel_for, which runs them only where
// this library is compiled with OpenMP (-fopenmp): without it, on one
// thread.
template <typename E>
void packed_multiply(int64_t m, const LeftMatrix<E>& a, const PackedMatrix<E>& b,
                     float beta, float* c, int64_t ldc,
                     const float* bias = nullptr);

// C_i = A_i B (+ bias) for `count` blocks that share B: A_i is `a` moved
// by i * a_step elements, C_i is `c` moved by i * c_step, each m rows. The
// threads share the blocks' panels, so a block of a few rows keeps every
// thread busy as one of many rows would.
template <typename E>
void packed_multiply_blocks(int64_t count, int64_t m, const LeftMatrix<E>& a,
                            int64_t a_step, const PackedMatrix<E>& b, float* c,
                            int64_t ldc, int64_t c_step, const float* bias);

// The same for B's panels [p0, p1) only (C's columns [64 p0, 64 p1), fewer
// in a narrow last panel), on the calling thread.
template <typename E>
void multiply_panel_range(int64_t m, const LeftMatrix<E>& a,
                          const PackedMatrix<E>& b,
                          float beta, float* c, int64_t ldc, int64_t p0,
                          int64_t p1);

}  // namespace fusedrnn::cpu
