#include "packed_matrix.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "strided_copy.h"

namespace fusedrnn::cpu {
namespace {

// Panel p of op(W) = W^T: panel column n is row (first + n) of W, so
// panel row k is column k of those rows.
void pack_transposed_panel(const float* w, int64_t cols, int64_t first,
                           int64_t columns, int64_t width, float* panel) {
  copy_in_squares(/*rows=*/cols, columns, w + first * cols, 1, cols, panel,
                  width);
}

// Panel p of op(W) = W: each panel row is a piece of a row of W.
void pack_panel(const float* w, int64_t rows, int64_t cols, int64_t first,
                int64_t columns, int64_t width, float* panel) {
  for (int64_t k = 0; k < rows; ++k) {
    std::copy(w + k * cols + first, w + k * cols + first + columns,
              panel + k * width);
  }
}

}  // namespace

PackedMatrix::PackedMatrix(const float* w, int64_t rows, int64_t cols,
                           bool transpose)
    : k_(transpose ? cols : rows), n_(transpose ? rows : cols) {
  if (k_ == 0 || n_ == 0) return;
  // Room for whole panels, so the narrower last one fits too; aligned to a
  // cache line so that no vector load of a panel straddles two.
  const int64_t bytes = panels() * k_ * kPanelWidth * int64_t(sizeof(float));
  data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
  TORCH_CHECK(data_ != nullptr, "fusedrnn: cannot allocate ", bytes,
              " bytes for a packed weight matrix");
  // Each thread packs a share of the panels, once there is enough to share.
  constexpr int64_t kMinTaskCopies = 1 << 15;
  const int64_t grain = std::max<int64_t>(1, kMinTaskCopies / (k_ * kPanelWidth));
  at::parallel_for(0, panels(), grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t width = vectors(p) * kVectorWidth;
      float* panel = data_.get() + p * k_ * kPanelWidth;
      // A narrow last panel is zeroed first: the kernels multiply its
      // padding columns too.
      if (width > columns(p)) std::fill(panel, panel + k_ * width, 0.0f);
      if (transpose) {
        pack_transposed_panel(w, cols, p * kPanelWidth, columns(p), width,
                              panel);
      } else {
        pack_panel(w, rows, cols, p * kPanelWidth, columns(p), width, panel);
      }
    }
  });
}

}  // namespace fusedrnn::cpu
