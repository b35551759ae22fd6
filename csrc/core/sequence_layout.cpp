#include "sequence_layout.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace fusedrnn {

SequenceLayout::SequenceLayout(int64_t steps, int64_t batch, bool reverse)
    : live_(steps, batch), reverse_(reverse) {
  set_offsets();
}

SequenceLayout::SequenceLayout(const at::Tensor& batch_sizes, bool reverse)
    : reverse_(reverse) {
  TORCH_CHECK(batch_sizes.dim() == 1 && batch_sizes.device().is_cpu() &&
                  batch_sizes.scalar_type() == at::kLong,
              "fusedrnn: batch_sizes must be a 1-D int64 CPU tensor");
  const at::Tensor sizes = batch_sizes.contiguous();
  const int64_t* data = sizes.data_ptr<int64_t>();
  live_.assign(data, data + sizes.numel());
  for (size_t t = 0; t < live_.size(); ++t) {
    TORCH_CHECK(live_[t] > 0 && (t == 0 || live_[t] <= live_[t - 1]),
                "fusedrnn: batch_sizes must be positive and non-increasing");
  }
  set_offsets();
}

void SequenceLayout::set_offsets() {
  offset_.resize(live_.size());
  rows_ = 0;
  for (size_t t = 0; t < live_.size(); ++t) {
    offset_[t] = rows_;
    rows_ += live_[t];
  }
  batch_ = live_.empty() ? 0 : live_[0];
}

int64_t SequenceLayout::continuing(int64_t s) const {
  if (s == 0) return 0;
  return std::min(live(step(s)), live(step(s - 1)));
}

int64_t SequenceLayout::live_after(int64_t s) const {
  // In reverse the next step has at least as many rows: none end here.
  return s + 1 < steps() ? std::min(live(step(s)), live(step(s + 1))) : 0;
}

}  // namespace fusedrnn
