// Where each time step's rows sit in the layer's row-major buffers.
//
// Dense input of T steps and B sequences is the special case of packed input
// with B live rows at every step: step t occupies rows [offset(t),
// offset(t) + live(t)), and the rows of a step are its first live(t)
// sequences (PackedSequence sorts them by decreasing length). So one time
// loop serves both layouts, and packed input costs only the rows that exist.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace fusedrnn {

class SequenceLayout {
 public:
  // Dense: every step has `batch` rows.
  SequenceLayout(int64_t steps, int64_t batch, bool reverse);
  // Packed: step t has batch_sizes[t] rows (a non-increasing int64 CPU
  // tensor, checked here).
  SequenceLayout(const at::Tensor& batch_sizes, bool reverse);

  int64_t steps() const { return static_cast<int64_t>(live_.size()); }
  int64_t rows() const { return rows_; }    // all steps together
  int64_t batch() const { return batch_; }  // sequences (rows of step 0)
  bool reverse() const { return reverse_; }

  int64_t offset(int64_t t) const { return offset_[t]; }
  int64_t live(int64_t t) const { return live_[t]; }

  // The step processed s-th (the direction decides the order).
  int64_t step(int64_t s) const { return reverse_ ? steps() - 1 - s : s; }
  // Rows of the s-th processed step that continue from the step processed
  // before it; the others [continuing(s), live) start from the initial state.
  int64_t continuing(int64_t s) const;
  // Rows of the s-th processed step that go on to the step processed after
  // it (0 for the last): rows [live_after(s), live(step(s))) end their
  // sequence at step(s).
  int64_t live_after(int64_t s) const;

 private:
  void set_offsets();

  std::vector<int64_t> live_, offset_;
  int64_t rows_ = 0, batch_ = 0;
  bool reverse_;
};

}  // namespace fusedrnn
