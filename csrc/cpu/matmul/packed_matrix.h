// A float weight matrix op(W) (K x N) copied once into the layout the tile
// kernels read (see tile_kernels.h).
//
// The columns are cut into panels of kPanelWidth (64) columns. A panel is
// stored as its K rows of 64 floats one after another, so a kernel walking
// down k reads it strictly front to back, and the panels follow each other.
// When N is not a multiple of 64 the last panel is narrower: its width is
// rounded up to whole vectors of 16 floats and the padding is zero, so the
// kernels never need a partial load of W.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace fusedrnn::cpu {

class PackedMatrix {
 public:
  static constexpr int64_t kVectorWidth = 16;  // floats in one AVX-512 vector
  static constexpr int64_t kPanelWidth = 4 * kVectorWidth;

  // No matrix: what a RightOperand holds when BLAS does its multiplies.
  PackedMatrix() = default;
  // Packs op(W) for a row-major W of size (rows, cols), as RightOperand
  // defines it.
  PackedMatrix(const float* w, int64_t rows, int64_t cols, bool transpose);

  bool empty() const { return data_ == nullptr; }
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  int64_t panels() const { return (n_ + kPanelWidth - 1) / kPanelWidth; }

  // The real (unpadded) columns of panel p: 64, or fewer for the last.
  int64_t columns(int64_t p) const {
    const int64_t left = n_ - p * kPanelWidth;
    return left < kPanelWidth ? left : kPanelWidth;
  }
  // Vectors per row of panel p, which is also its stored width / 16.
  int64_t vectors(int64_t p) const {
    return (columns(p) + kVectorWidth - 1) / kVectorWidth;
  }
  // Row k of panel p: vectors(p) * 16 floats.
  const float* panel_row(int64_t p, int64_t k) const {
    return data_.get() + p * k_ * kPanelWidth + k * vectors(p) * kVectorWidth;
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  int64_t k_ = 0, n_ = 0;
  std::unique_ptr<float[], Free> data_;
};

}  // namespace fusedrnn::cpu
