// C = A op(W) + beta C for a packed op(W), with the tile kernels.
#pragma once

#include <cstdint>

#include "packed_matrix.h"

namespace fusedrnn::cpu {

// Whether packed_multiply can run on this CPU. RightOperand<float> packs
// its matrix only then; otherwise BLAS does the multiplies.
bool packed_multiply_available();

// C (m x N) = A (m x K) B + beta C, row-major with leading dimensions lda and
// ldc, where B (K x N) is packed and not empty. Splits B's panels over the
// intra-op threads with at::parallel_for, which runs them only where this
// library is compiled with OpenMP (-fopenmp): without it, on one thread.
void packed_multiply(int64_t m, const float* a, int64_t lda,
                     const PackedMatrix& b, float beta, float* c, int64_t ldc);

}  // namespace fusedrnn::cpu
