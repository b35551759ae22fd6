// Register-blocked micro-kernels: one call computes a tile of C of up to
// kMaxTileRows rows and one panel of a PackedMatrix (up to 64 columns),
// over a range of k, with every partial sum held in vector registers.
//
// Per lane row of the panel (one k for float, two for bfloat16) the kernel
// loads the panel row (up to four vectors of 16 lanes) once and multiplies
// it by each tile row's A value (a broadcast; for bfloat16 the broadcast
// pair of A's two k, with the BF16 dot product that adds both products to a
// float). With six rows that is 24 multiply-adds for 4 + 6 loads, and 24
// accumulators plus 4 panel vectors and a broadcast fit the 32 AVX-512
// registers. C and the bias are float for both element types.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace fusedrnn::cpu {

constexpr int kMaxTileRows = 6;

// C (rows x columns) = A (rows x depth) B (depth x columns) + beta C + bias,
// where `rows` and the panel's vector count are fixed by the kernel chosen.
// A (elements E) and C (float) are row-major with strides lda and ldc; B is
// the lane rows of `depth` consecutive rows of a PackedMatrix<E> panel,
// vectors * 16 lanes each, of which the first `columns` (more than
// 16 * (vectors - 1)) are real. C is not read when beta is 0. `bias`
// (`columns` floats, added to every row) may be null.
template <typename E>
using TileKernel = void (*)(int64_t depth, const E* a, int64_t lda,
                            const E* b, float beta, const float* bias,
                            float* c, int64_t ldc, int64_t columns);

// Whether this CPU can run the AVX-512 kernels of element type E: AVX-512F
// for float, and AVX512_BF16 as well for bfloat16 (never, off x86-64).
template <typename E>
bool has_avx512_kernels();

// The AVX-512 kernel for 1 <= rows <= kMaxTileRows and 1 <= vectors <= 4.
// Call only where has_avx512_kernels<E>().
template <typename E>
TileKernel<E> avx512_tile_kernel(int rows, int vectors);

}  // namespace fusedrnn::cpu
