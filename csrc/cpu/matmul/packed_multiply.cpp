#include "packed_multiply.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "grid_shares.h"
#include "strided_copy.h"
#include "tile_kernels.h"

namespace fusedrnn::cpu {
namespace {

// Cache blocking. A panel is reused by every row tile, so its kDepthBlock
// rows (128 KiB) are kept small enough to stay in L2 next to the block of A
// they meet; A's block of kRowBlock x kDepthBlock (up to 384 KiB) is reused
// by every panel a thread owns. Each depth block after the first reads and
// writes C again: 512 rather than 256 halves that traffic, which made the
// weight gradients (K = T*B, thousands) about 15% faster.
constexpr int64_t kDepthBlock = 512;
constexpr int64_t kRowBlock = 192;


// A block of A that the tile kernels can read: rows with consecutive
// elements along k. Row-major A is read in place; any other A is copied
// block by block into `scratch` (one copy per block, against the
// panels' worth of multiply-adds each of its elements meets).
// A transposed A read in place would walk a large power-of-two stride per
// k, which maps every load to the same few cache sets.
template <typename E>
class RowMajorBlocks {
 public:
  explicit RowMajorBlocks(const LeftMatrix<E>& a) : a_(a) {
    if (a.depth_stride != 1) scratch_.resize(kRowBlock * kDepthBlock);
  }
  // Rows [i0, i0 + rows) and depth [k0, k0 + depth); sets *lda.
  const E* block(int64_t i0, int64_t rows, int64_t k0, int64_t depth,
                 int64_t* lda) {
    const E* first = a_.data + i0 * a_.row_stride + k0 * a_.depth_stride;
    if (a_.depth_stride == 1) {
      *lda = a_.row_stride;
      return first;
    }
    copy_in_squares(rows, depth, first, a_.row_stride, a_.depth_stride,
                    scratch_.data(), depth);
    *lda = depth;
    return scratch_.data();
  }

 private:
  LeftMatrix<E> a_;
  std::vector<E> scratch_;
};

// Rows [i_begin, i_end) and panels [p0, p1) of C.
template <typename E>
void multiply_panels(int64_t i_begin, int64_t i_end, const LeftMatrix<E>& a,
                     const PackedMatrix<E>& b, float beta, const float* bias,
                     float* c, int64_t ldc, int64_t p0, int64_t p1) {
  const int64_t K = b.k();
  RowMajorBlocks<E> blocks(a);
  for (int64_t k0 = 0; k0 < K; k0 += kDepthBlock) {
    const int64_t depth = std::min(kDepthBlock, K - k0);
    // Later depth blocks add to what the first one wrote (bias included).
    const float block_beta = k0 == 0 ? beta : 1.0f;
    const float* block_bias = k0 == 0 ? bias : nullptr;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += kRowBlock) {
      const int64_t block_rows = std::min(kRowBlock, i_end - i0);
      int64_t lda = 0;
      const E* a_block = blocks.block(i0, block_rows, k0, depth, &lda);
      // As few tiles as the kernel's row limit allows, of near-equal
      // sizes: a 2-row tile reads the panel as often as a 6-row one.
      const int64_t tiles = (block_rows + kMaxTileRows - 1) / kMaxTileRows;
      for (int64_t p = p0; p < p1; ++p) {
        const E* panel = b.panel_row(p, k0);
        const int64_t column0 = p * PackedMatrix<E>::kPanelWidth;
        const int vectors = static_cast<int>(b.vectors(p));
        int64_t row = 0;
        for (int64_t t = 0; t < tiles; ++t) {
          const int rows = static_cast<int>(block_rows / tiles +
                                            (t < block_rows % tiles ? 1 : 0));
          avx512_tile_kernel<E>(rows, vectors)(
              depth, a_block + row * lda, lda, panel, block_beta,
              block_bias != nullptr ? block_bias + column0 : nullptr,
              c + (i0 + row) * ldc + column0, ldc, b.columns(p));
          row += rows;
        }
      }
    }
  }
}

}  // namespace

template <typename E>
void multiply_panel_range(int64_t m, const LeftMatrix<E>& a,
                          const PackedMatrix<E>& b,
                          float beta, float* c, int64_t ldc, int64_t p0,
                          int64_t p1) {
  multiply_panels(0, m, a, b, beta, /*bias=*/nullptr, c, ldc, p0, p1);
}

template <typename E>
void packed_multiply(int64_t m, const LeftMatrix<E>& a, const PackedMatrix<E>& b,
                     float beta, float* c, int64_t ldc, const float* bias) {
  if (m == 0) return;
  const int64_t panels = b.panels();
  const int64_t threads = at::get_num_threads();
  if (a.depth_stride == 1) {
    // Equal shares of the (rows, panels) grid (grid_shares.h). The shares
    // are the same every step of a time loop: each thread keeps working on
    // the same part of W, which stays in its cache.
    const PanelGrid grid(m, b.n(), PackedMatrix<E>::kPanelWidth);
    const int64_t shares =
        share_count(m * b.k() * b.n(), kMinTaskWork, threads);
    at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        grid.for_each_piece(s, shares, [&](int64_t r0, int64_t r1, int64_t p0,
                                           int64_t p1) {
          multiply_panels(r0, r1, a, b, beta, bias, c, ldc, p0, p1);
        });
      }
    });
    return;
  }
  // A must be copied block by block, which a thread that took panels would
  // do for all of A: the rows are cut into a part per thread instead (fewer
  // when there are fewer row blocks), each part's panels spread over the
  // threads where there are more threads than parts.
  const int64_t parts = std::min(threads, (m + kRowBlock - 1) / kRowBlock);
  // Near-equal parts, in whole row tiles.
  const int64_t part_rows =
      ((m + parts - 1) / parts + kMaxTileRows - 1) / kMaxTileRows * kMaxTileRows;
  const int64_t panel_work = std::max<int64_t>(
      1, std::min(m, part_rows) * b.k() * PackedMatrix<E>::kPanelWidth);
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / panel_work);
  // Task i is panel i % panels of row part i / panels.
  at::parallel_for(0, parts * panels, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1;) {
      const int64_t part = i / panels, p0 = i % panels;
      const int64_t p1 = std::min(panels, p0 + (i1 - i));
      const int64_t rows0 = std::min(m, part * part_rows);
      const int64_t rows1 = std::min(m, rows0 + part_rows);
      multiply_panels(rows0, rows1, a, b, beta, bias, c, ldc, p0, p1);
      i += p1 - p0;
    }
  });
}

template <typename E>
void packed_multiply_blocks(int64_t count, int64_t m, const LeftMatrix<E>& a,
                            int64_t a_step, const PackedMatrix<E>& b, float* c,
                            int64_t ldc, int64_t c_step, const float* bias) {
  if (m == 0 || count == 0) return;
  const int64_t panels = b.panels();
  const int64_t panel_work =
      std::max<int64_t>(1, m * b.k() * PackedMatrix<E>::kPanelWidth);
  const int64_t grain = std::max<int64_t>(1, kMinTaskWork / panel_work);
  // Task i is panel i % panels of block i / panels.
  at::parallel_for(0, count * panels, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1;) {
      const int64_t block = i / panels, p0 = i % panels;
      const int64_t p1 = std::min(panels, p0 + (i1 - i));
      LeftMatrix<E> a_block = a;
      a_block.data += block * a_step;
      multiply_panels(0, m, a_block, b, 0.0f, bias, c + block * c_step, ldc,
                      p0, p1);
      i += p1 - p0;
    }
  });
}

#define FUSEDRNN_INSTANTIATE(E)                                              \
  template void packed_multiply<E>(int64_t, const LeftMatrix<E>&,             \
                                   const PackedMatrix<E>&, float, float*,     \
                                   int64_t, const float*);                    \
  template void multiply_panel_range<E>(int64_t, const LeftMatrix<E>&,        \
                                        const PackedMatrix<E>&, float,        \
                                        float*, int64_t, int64_t, int64_t);   \
  template void packed_multiply_blocks<E>(                                     \
      int64_t, int64_t, const LeftMatrix<E>&, int64_t, const PackedMatrix<E>&, \
      float*, int64_t, int64_t, const float*);
FUSEDRNN_INSTANTIATE(float)
FUSEDRNN_INSTANTIATE(c10::BFloat16)
#undef FUSEDRNN_INSTANTIATE

}  // namespace fusedrnn::cpu
