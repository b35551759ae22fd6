#include "packed_matrix.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "../buffer_pool.h"
#include "strided_copy.h"

namespace fusedrnn::cpu {

template <typename E>
PackedMatrix<E>::PackedMatrix(const E* w, int64_t rows, int64_t cols,
                              bool transpose)
    : k_(transpose ? cols : rows), n_(transpose ? rows : cols) {
  if (k_ == 0 || n_ == 0) return;
  // Room for whole panels, so the narrower last one fits too; aligned to a
  // cache line (as torch's and the pool's buffers are) so that no vector
  // load of a panel straddles two.
  const int64_t bytes = panels() * lane_rows() * kPanelWidth * 4;
  storage_ = pooled_empty({bytes}, at::TensorOptions().dtype(at::kByte));
  data_ = reinterpret_cast<E*>(storage_.data_ptr<uint8_t>());
  TORCH_INTERNAL_ASSERT(reinterpret_cast<uintptr_t>(data_) % 64 == 0);
  // Element (k, n) of op(W): W[k][n], or W[n][k] for W^T.
  const int64_t k_stride = transpose ? 1 : cols, n_stride = transpose ? cols : 1;
  // Each thread packs a share of the panels, once there is enough to share.
  constexpr int64_t kMinTaskCopies = 1 << 15;
  const int64_t grain = std::max<int64_t>(1, kMinTaskCopies / (k_ * kPanelWidth));
  at::parallel_for(0, panels(), grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t width = vectors(p) * kVectorWidth * kPerLane;
      E* panel = data_ + p * lane_rows() * kPanelWidth * kPerLane;
      // Padding (narrow last panel, odd K in pairs) is zeroed first: the
      // kernels multiply it too.
      if (width > columns(p) * kPerLane || k_ % kPerLane != 0) {
        std::fill(panel, panel + lane_rows() * width, E(0));
      }
      // Slot s of every lane holds the rows k = s (mod kPerLane).
      for (int64_t s = 0; s < kPerLane && s < k_; ++s) {
        const int64_t slot_rows = (k_ - s + kPerLane - 1) / kPerLane;
        copy_in_squares(slot_rows, columns(p),
                        w + s * k_stride + p * kPanelWidth * n_stride,
                        kPerLane * k_stride, n_stride, panel + s, width,
                        kPerLane);
      }
    }
  });
}

template class PackedMatrix<float>;
template class PackedMatrix<c10::BFloat16>;

}  // namespace fusedrnn::cpu
