#include "packed_multiply.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "tile_kernels.h"

namespace fusedrnn::cpu {
namespace {

// Cache blocking. A panel is reused by every row tile, so its kDepthBlock
// rows (64 KiB) are kept small enough to stay in L2 next to the block of A
// they meet; A's block of kRowBlock x kDepthBlock (up to 192 KiB) is reused
// by every panel a thread owns.
constexpr int64_t kDepthBlock = 256;
constexpr int64_t kRowBlock = 192;

// Work of one parallel task, in multiply-adds: below this, waking a second
// thread costs more than it saves.
constexpr int64_t kMinTaskWork = 1 << 18;

// Panels [p0, p1) of C for rows [0, m).
void multiply_panels(int64_t m, const float* a, int64_t lda,
                     const PackedMatrix& b, float beta, float* c, int64_t ldc,
                     int64_t p0, int64_t p1) {
  const int64_t K = b.k();
  for (int64_t k0 = 0; k0 < K; k0 += kDepthBlock) {
    const int64_t depth = std::min(kDepthBlock, K - k0);
    // Later depth blocks add to what the first one wrote.
    const float block_beta = k0 == 0 ? beta : 1.0f;
    for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
      const int64_t block_rows = std::min(kRowBlock, m - i0);
      // As few tiles as the kernel's row limit allows, of near-equal
      // sizes: a 2-row tile reads the panel as often as a 6-row one.
      const int64_t tiles = (block_rows + kMaxTileRows - 1) / kMaxTileRows;
      for (int64_t p = p0; p < p1; ++p) {
        const float* panel = b.panel_row(p, k0);
        const int64_t column0 = p * PackedMatrix::kPanelWidth;
        const int vectors = static_cast<int>(b.vectors(p));
        int64_t row = i0;
        for (int64_t t = 0; t < tiles; ++t) {
          const int rows = static_cast<int>(block_rows / tiles +
                                            (t < block_rows % tiles ? 1 : 0));
          avx512_tile_kernel(rows, vectors)(depth, a + row * lda + k0, lda,
                                            panel, block_beta,
                                            c + row * ldc + column0, ldc,
                                            b.columns(p));
          row += rows;
        }
      }
    }
  }
}

}  // namespace

bool packed_multiply_available() { return has_avx512_kernels(); }

void packed_multiply(int64_t m, const float* a, int64_t lda,
                     const PackedMatrix& b, float beta, float* c, int64_t ldc) {
  const int64_t panel_work =
      std::max<int64_t>(1, m * b.k() * PackedMatrix::kPanelWidth);
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / panel_work);
  // Contiguous shares of panels: with the same threads every step, each
  // keeps working on the same slice of W, which stays in its cache.
  at::parallel_for(0, b.panels(), grain, [&](int64_t p0, int64_t p1) {
    multiply_panels(m, a, lda, b, beta, c, ldc, p0, p1);
  });
}

}  // namespace fusedrnn::cpu
