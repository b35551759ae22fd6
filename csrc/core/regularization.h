// What acts inside the recurrence of one layer in one direction: recurrent
// dropout and zoneout (fusedrnn.reference.Regularization says what each
// does; Python draws the masks from torch's generator). The layer function
// (recurrent_layer.h) applies them between an executor's steps as the
// element-wise passes below; an executor runs a pass over (rows, width)
// with `for_each_unit`. Shared by the CPU and CUDA executors, so it
// includes no ATen header.
//
// A mask is bool, one byte per unit; what the backward keeps. Every pass is
// written as the reference computes it, so NaN and infinity go where
// torch's where / multiply send them (a dropped NaN still gives NaN, as
// NaN * 0 does).
#pragma once

#include <cstdint>

#include "step.h"

namespace fusedrnn {

// The regularization of one layer call; masks null when absent. Zoneout
// with a probability but no mask is eval: the expectation.
template <typename T>
struct Regularization {
  using Acc = compute_t<T>;
  const bool* recurrent_keep = nullptr;  // (B, P): h entering W_hh is kept
  Acc recurrent_scale = Acc(1);          // 1 / (1 - recurrent dropout)
  const bool* zoneout_keep = nullptr;    // (rows, P): h keeps its previous value
  Acc zoneout = Acc(0);
  const bool* cell_zoneout_keep = nullptr;  // (rows, H): c keeps its previous value
  Acc cell_zoneout = Acc(0);

  bool zones_hidden() const { return zoneout_keep != nullptr || zoneout > Acc(0); }
  bool zones_cells() const {
    return cell_zoneout_keep != nullptr || cell_zoneout > Acc(0);
  }
  bool any() const {
    return recurrent_keep != nullptr || zones_hidden() || zones_cells();
  }
};

// out = the previous value where the unit keeps it (training), else the
// step's new value `candidate`; without a mask (eval)
// p * previous + (1 - p) * candidate. `out` may be `candidate`. U is the
// state's type (T for h, Acc for c).
template <typename U, typename Acc>
struct ZoneoutForward {
  int64_t continuing, width;
  const U* previous_step;
  const U* initial;
  const bool* keep_previous;  // (live, width) of this step, or null
  Acc p;
  const U* candidate;
  U* out;

  FUSEDRNN_HOST_DEVICE void operator()(int64_t b, int64_t j) const {
    const int64_t i = b * width + j;
    const U previous =
        previous_row(b, continuing, previous_step, initial, width)[j];
    if (keep_previous != nullptr) {
      out[i] = keep_previous[i] ? previous : candidate[i];
    } else {
      out[i] = static_cast<U>(p * static_cast<Acc>(previous) +
                              (Acc(1) - p) * static_cast<Acc>(candidate[i]));
    }
  }
};

// Zoneout's backward at a step: the gradient at the zoned state, `grad`
// (plus dy, the layer output's gradient, when not null), splits into the
// new value's share, left in `grad`, and the previous state's, `carry`.
template <typename U, typename Acc>
struct ZoneoutBackward {
  int64_t width;
  const bool* keep_previous;  // (live, width) of this step, or null
  Acc p;
  const U* dy;  // (live, width) or null
  Acc* grad;
  Acc* carry;

  FUSEDRNN_HOST_DEVICE void operator()(int64_t b, int64_t j) const {
    const int64_t i = b * width + j;
    const Acc g = dy != nullptr ? grad[i] + static_cast<Acc>(dy[i]) : grad[i];
    if (keep_previous != nullptr) {
      carry[i] = keep_previous[i] ? g : Acc(0);
      grad[i] = keep_previous[i] ? Acc(0) : g;
    } else {
      carry[i] = p * g;
      grad[i] = (Acc(1) - p) * g;
    }
  }
};

// Recurrent dropout of the h a step multiplies by W_hh: out = h * keep *
// scale, from where the previous h of each row is.
template <typename T>
struct RecurrentDropoutForward {
  using Acc = compute_t<T>;
  int64_t continuing, width;
  const T* previous_step;
  const T* initial;
  const bool* keep;  // (B, width), the same every step
  Acc scale;
  T* out;

  FUSEDRNN_HOST_DEVICE void operator()(int64_t b, int64_t j) const {
    const int64_t i = b * width + j;
    const T h = previous_row(b, continuing, previous_step, initial, width)[j];
    out[i] = static_cast<T>(static_cast<Acc>(h) * (keep[i] ? scale : Acc(0)));
  }
};

// In place: rows *= keep * scale (T), the dropped h of a step's rows, which
// W_hh's gradient multiplies.
template <typename T>
struct RecurrentDropoutRows {
  using Acc = compute_t<T>;
  int64_t width;
  const bool* keep;
  Acc scale;
  T* rows;

  FUSEDRNN_HOST_DEVICE void operator()(int64_t b, int64_t j) const {
    const int64_t i = b * width + j;
    rows[i] = static_cast<T>(static_cast<Acc>(rows[i]) *
                             (keep[i] ? scale : Acc(0)));
  }
};

// dst = (accumulate ? dst : 0) + src * keep * scale: the gradient through
// W_hh, `src`, reaching the previous h through the dropout mask. Without a
// mask (keep null) scale is 1: dst (+)= src, also how zoneout's carried
// share is added.
template <typename Acc>
struct AddGradient {
  int64_t width;
  const Acc* src;
  const bool* keep;  // or null
  Acc scale;
  bool accumulate;
  Acc* dst;

  FUSEDRNN_HOST_DEVICE void operator()(int64_t b, int64_t j) const {
    const int64_t i = b * width + j;
    const Acc v =
        keep != nullptr ? src[i] * (keep[i] ? scale : Acc(0)) : src[i];
    dst[i] = accumulate ? dst[i] + v : v;
  }
};

}  // namespace fusedrnn
