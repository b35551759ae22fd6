// The row-level stage of a cell: math that needs every unit of a row at
// once, a reduction over the row (layer norm's mean and variance), shared
// by the CPU and CUDA kernels like the per-unit math.
//
// A row stage is written against a *row context* `row` with two members:
//   row.units(n, f)        f(j) for every unit j < n of the row
//   row.sum<Acc>(n, f)     the sum of f(j) over j < n, the same on every
//                          thread that runs the row
// SerialRow (below) runs a whole row on the calling CPU thread; the CUDA
// executor's BlockRow (cuda/row_context.cuh) runs it on one thread block,
// units strided over the threads, sums as deterministic block reductions
// (every thread of the block takes part, and each unit is always handled by
// the same thread, so a unit's value written in one `units` pass is read by
// the same thread in the next).
//
// Layer norm, LN(v) = (v - mean(v)) / sqrt(var(v) + eps) * gain + bias over
// the row with the biased variance (F.layer_norm's), is the stage the
// normalized cells use: `normalize` and `normalize_backward` below.
#pragma once

#include <cstdint>

#include "activations.h"

namespace fusedrnn {

// The per-unit bodies a row stage hands to `units` and `sum` are lambdas
// marked FUSEDRNN_ROW_LAMBDA: inlined into the CPU's loops, so that they
// vectorise (GCC would otherwise call the larger ones per unit).
#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define FUSEDRNN_ROW_LAMBDA __attribute__((always_inline))
#else
#define FUSEDRNN_ROW_LAMBDA
#endif

// One CPU thread runs the row. The calls f(j) of one `units` pass are
// independent of each other (every row stage is written so: a unit writes
// only its own values; CUDA runs them on different threads), which the
// loop tells the compiler (ivdep) so that it vectorises without runtime
// alias checks. Sums use kLanes partial sums, in a fixed order
// (deterministic, independent of the thread count), so that the compiler
// can keep them in one vector register.
struct SerialRow {
  static constexpr int64_t kLanes = 16;

  template <class F>
  FUSEDRNN_HOST_DEVICE void units(int64_t n, F f) const {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
    for (int64_t j = 0; j < n; ++j) f(j);
  }

  template <typename Acc, class F>
  FUSEDRNN_HOST_DEVICE Acc sum(int64_t n, F f) const {
    Acc lanes[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += f(j + l);
    }
    for (int64_t l = 0; j + l < n; ++l) lanes[l] += f(j + l);
    Acc total = Acc(0);
    for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
    return total;
  }
};

FUSEDRNN_HOST_DEVICE float reciprocal_sqrt(float v) { return 1.0f / sqrtf(v); }
FUSEDRNN_HOST_DEVICE double reciprocal_sqrt(double v) { return 1.0 / sqrt(v); }

// The normalized values xhat[j] = (v(j) - mean) * rstd of v(j), j < n
// (two passes over v: mean, then the variance about it); returns rstd =
// 1 / sqrt(var + eps).
template <typename Acc, class Row, class V>
FUSEDRNN_HOST_DEVICE Acc normalize(const Row& row, int64_t n, Acc eps, V v,
                                   Acc* xhat) {
  const Acc mean = row.template sum<Acc>(n, v) / Acc(n);
  const Acc var = row.template sum<Acc>(n, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
    const Acc d = v(j) - mean;
    return d * d;
  }) / Acc(n);
  const Acc rstd = reciprocal_sqrt(var + eps);
  row.units(n, [&](int64_t j) FUSEDRNN_ROW_LAMBDA { xhat[j] = (v(j) - mean) * rstd; });
  return rstd;
}

// Layer norm's backward: with dy(j) the gradient at LN's output, the
// gradient at its input is
//   rstd * (dy g - mean(dy g) - xhat * mean(dy g xhat))
// handed to out(j, value).
template <typename Acc, class Row, class DY, class Out>
FUSEDRNN_HOST_DEVICE void normalize_backward(const Row& row, int64_t n,
                                             DY dy, const Acc* gain,
                                             const Acc* xhat, Acc rstd,
                                             Out out) {
  const Acc m1 = row.template sum<Acc>(
                     n, [&](int64_t j) FUSEDRNN_ROW_LAMBDA { return dy(j) * gain[j]; }) /
                 Acc(n);
  const Acc m2 = row.template sum<Acc>(n, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
    return dy(j) * gain[j] * xhat[j];
  }) / Acc(n);
  row.units(n, [&](int64_t j) FUSEDRNN_ROW_LAMBDA {
    out(j, rstd * (dy(j) * gain[j] - m1 - xhat[j] * m2));
  });
}

// Where a normalized cell's layer-norm parameters are in the one compute-type
// array the layer function packs them into: per normalization k (0: the
// input side, 1: the recurrent side, 2: the cell state) its gain, then its
// bias; the first two are G*H long, the cell state's H.
template <typename Acc>
struct NormParams {
  const Acc* data;
  int64_t width, hidden;  // G*H, H
  Acc eps;

  FUSEDRNN_HOST_DEVICE const Acc* gain(int k) const { return data + offset(k); }
  FUSEDRNN_HOST_DEVICE const Acc* bias(int k) const {
    return data + offset(k) + (k < 2 ? width : hidden);
  }
  FUSEDRNN_HOST_DEVICE int64_t offset(int k) const {
    return k < 2 ? 2 * k * width : 4 * width + 2 * (k - 2) * hidden;
  }
};

// The normalizations' indices in NormParams and in a cell's row statistics
// (the rstd of each, kept after the per-unit saved values).
enum NormIndex : int { kNormInput = 0, kNormRecurrent = 1, kNormCell = 2 };

}  // namespace fusedrnn
