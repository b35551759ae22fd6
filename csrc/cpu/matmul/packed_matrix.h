// A weight matrix op(W) (K x N) copied once into the layout the tile
// kernels read (see tile_kernels.h), for float or bfloat16 elements E.
//
// The kernels work on 32-bit lanes: a float, or for bfloat16 a pair of
// elements at consecutive k (k even, k + 1) of one column, which is what
// the AVX-512 BF16 dot product multiplies and sums into one float. A
// "lane row" is therefore one row of op(W) for float and two for bfloat16.
//
// The columns are cut into panels of kPanelWidth (64) columns. A panel is
// stored as its lane rows of 64 lanes one after another, so a kernel
// walking down k reads it strictly front to back, and the panels follow
// each other. When N is not a multiple of 64 the last panel is narrower:
// its width is rounded up to whole vectors of 16 lanes and the padding is
// zero, so the kernels never need a partial load of W. For bfloat16 with an
// odd K, the second element of the last lane row is zero too.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace fusedrnn::cpu {

template <typename E>
class PackedMatrix {
 public:
  static constexpr int64_t kVectorWidth = 16;  // lanes in one AVX-512 vector
  static constexpr int64_t kPanelWidth = 4 * kVectorWidth;
  // Elements per 32-bit lane: consecutive k of one column.
  static constexpr int64_t kPerLane = 4 / sizeof(E);
  static_assert(kPerLane * sizeof(E) == 4);

  // No matrix: what a RightOperand holds when BLAS does its multiplies.
  PackedMatrix() = default;
  // Packs op(W) for a row-major W of size (rows, cols), as RightOperand
  // defines it.
  PackedMatrix(const E* w, int64_t rows, int64_t cols, bool transpose);

  bool empty() const { return data_ == nullptr; }
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  int64_t panels() const { return (n_ + kPanelWidth - 1) / kPanelWidth; }
  int64_t lane_rows() const { return (k_ + kPerLane - 1) / kPerLane; }

  // The real (unpadded) columns of panel p: 64, or fewer for the last.
  int64_t columns(int64_t p) const {
    const int64_t left = n_ - p * kPanelWidth;
    return left < kPanelWidth ? left : kPanelWidth;
  }
  // Vectors per lane row of panel p, which is also its stored width / 16.
  int64_t vectors(int64_t p) const {
    return (columns(p) + kVectorWidth - 1) / kVectorWidth;
  }
  // The lane row of panel p that holds row k of op(W) (k a multiple of
  // kPerLane): vectors(p) * 16 lanes.
  const E* panel_row(int64_t p, int64_t k) const {
    return data_ +
           (p * lane_rows() * kPanelWidth + k / kPerLane * vectors(p) * kVectorWidth) *
               kPerLane;
  }

 private:
  // The packed elements, in a buffer from the pool (buffer_pool.h): the
  // weight gradients pack megabytes of activations per call.
  int64_t k_ = 0, n_ = 0;
  at::Tensor storage_;
  E* data_ = nullptr;
};

extern template class PackedMatrix<float>;
extern template class PackedMatrix<c10::BFloat16>;

}  // namespace fusedrnn::cpu
