// Register-blocked micro-kernels: one call computes a tile of C of up to
// kMaxTileRows rows and one panel of a PackedMatrix (up to 64 columns),
// over a range of k, with every partial sum held in vector registers.
//
// Per k the kernel loads the panel row (up to four vectors of 16 floats)
// once and multiplies it by each tile row's A value (a broadcast): with six
// rows that is 24 fused multiply-adds for 4 + 6 loads, and 24 accumulators
// plus 4 panel vectors and a broadcast fit the 32 AVX-512 registers.
#pragma once

#include <cstdint>

namespace fusedrnn::cpu {

constexpr int kMaxTileRows = 6;

// C (rows x columns) = A (rows x depth) B (depth x columns) + beta C + bias,
// where `rows` and the panel's vector count are fixed by the kernel chosen.
// A and C are row-major with strides lda and ldc; B is `depth` consecutive
// panel rows (see PackedMatrix), vectors * 16 floats each, of which the
// first `columns` (more than 16 * (vectors - 1)) are real. C is not read
// when beta is 0. `bias` (`columns` floats, added to every row) may be null.
using TileKernel = void (*)(int64_t depth, const float* a, int64_t lda,
                            const float* b, float beta, const float* bias,
                            float* c, int64_t ldc, int64_t columns);

// Whether this CPU can run the AVX-512 kernels (never, off x86-64).
bool has_avx512_kernels();

// The AVX-512 kernel for 1 <= rows <= kMaxTileRows and 1 <= vectors <= 4.
// Call only where has_avx512_kernels().
TileKernel avx512_tile_kernel(int rows, int vectors);

}  // namespace fusedrnn::cpu
