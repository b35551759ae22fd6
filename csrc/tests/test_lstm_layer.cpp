// Standalone check of the fusedrnn LSTM layer ops from C++, without Python.
//
// The ops are looked up in the dispatcher by name, exactly as a libtorch user
// would call them, and compared with a plain libtorch LSTM written out below
// (forward values) and with libtorch autograd through that same computation
// (the backward op's gradients). Prints one line per check and a summary line
// "N passed, M failed"; the exit status is nonzero if anything failed.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "../core/sequence_layout.h"

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// The ops' C++ signatures (see csrc/core/schemas.cpp). These tests run dense
// input without projection: w_hr and batch_sizes are always nullopt.
using ForwardFn = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const OptTensor&, const Tensor&,
    const Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, bool, const OptTensor&, double, const OptTensor&, double,
    const OptTensor&, double, const OptTensor&, double);
using BackwardFn = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                              Tensor, Tensor, Tensor>(
    const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&,
    const Tensor&, const OptTensor&, const Tensor&, const Tensor&,
    const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,
    const OptTensor&, bool, bool, bool, const OptTensor&, double,
    const OptTensor&, double, const OptTensor&, double, const OptTensor&,
    double);

// The ops' last arguments without recurrent dropout or zoneout, and without
// layer norms (the LSTM takes none).
#define NO_REGULARIZATION \
  std::nullopt, 0.0, std::nullopt, 0.0, std::nullopt, 0.0, std::nullopt, 1e-5

constexpr int64_t kT = 5, kB = 3, kI = 4, kH = 6;

int g_passed = 0;
int g_failed = 0;

void report(bool ok, const std::string& name, const std::string& detail) {
  (ok ? g_passed : g_failed) += 1;
  std::printf("[%s] %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(),
              detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
}

// Runs one check; an exception thrown by it counts as a failure, so one
// broken case cannot hide the others.
void run_check(const std::string& name,
               const std::function<std::string(bool&)>& body) {
  bool ok = false;
  std::string detail;
  try {
    detail = body(ok);
  } catch (const c10::Error& e) {
    ok = false;
    detail = std::string("unexpected c10::Error: ") +
             e.what_without_backtrace();
  } catch (const std::exception& e) {
    ok = false;
    detail = std::string("unexpected exception: ") + e.what();
  }
  report(ok, name, detail);
}

// Compares `actual` with `expected` elementwise: |a - e| <= tol * (1 + |e|).
// Returns an empty string when they agree, else what went wrong.
std::string compare(const char* what, const Tensor& actual,
                    const Tensor& expected, double tol) {
  if (!actual.defined() || !expected.defined()) {
    return std::string(what) + ": undefined tensor";
  }
  if (actual.sizes() != expected.sizes()) {
    return std::string(what) + ": size " + c10::str(actual.sizes()) +
           " != expected " + c10::str(expected.sizes());
  }
  if (actual.scalar_type() != expected.scalar_type()) {
    return std::string(what) + ": dtype " + c10::str(actual.scalar_type()) +
           " != expected " + c10::str(expected.scalar_type());
  }
  const Tensor a = actual.detach().to(at::kDouble);
  const Tensor e = expected.detach().to(at::kDouble);
  const Tensor err = (a - e).abs();
  const Tensor excess = err - tol * (1 + e.abs());
  if (!at::isfinite(a).all().item<bool>() ||
      excess.max().item<double>() > 0) {
    char buf[128];
    std::snprintf(buf, sizeof buf, ": max abs error %.3g, tolerance %.3g",
                  err.max().item<double>(), tol);
    return std::string(what) + buf;
  }
  return {};
}

// Collects the comparisons of one check: passes iff all of them agree.
struct Comparisons {
  explicit Comparisons(double tolerance) : tol(tolerance) {}

  double tol;
  double worst = 0;
  std::string errors;

  void add(const char* what, const Tensor& actual, const Tensor& expected) {
    std::string err = compare(what, actual, expected, tol);
    if (!err.empty()) {
      errors += (errors.empty() ? "" : "; ") + err;
    } else {
      const double e = (actual.detach().to(at::kDouble) -
                        expected.detach().to(at::kDouble))
                           .abs()
                           .max()
                           .item<double>();
      if (e > worst) worst = e;
    }
  }
  std::string finish(bool& ok) const {
    ok = errors.empty();
    if (!ok) return errors;
    char buf[64];
    std::snprintf(buf, sizeof buf, "max abs error %.3g", worst);
    return buf;
  }
};

// The straightforward LSTM the ops must agree with. Gate order (i, f, g, o);
// step t of the output holds the hidden state after processing input step t,
// whichever direction the sequence is walked in. Every op is differentiable,
// so autograd through this gives the reference gradients.
struct ReferenceResult {
  Tensor output, h_n, c_n;
};

ReferenceResult reference_lstm(const Tensor& input, const Tensor& h0,
                               const Tensor& c0, const Tensor& w_ih,
                               const Tensor& w_hh, const OptTensor& b_ih,
                               const OptTensor& b_hh, bool reverse) {
  const int64_t T = input.size(0);
  Tensor h = h0;
  Tensor c = c0;
  std::vector<Tensor> outputs(static_cast<size_t>(T));
  for (int64_t k = 0; k < T; ++k) {
    const int64_t t = reverse ? T - 1 - k : k;
    Tensor pre = at::matmul(input[t], w_ih.t()) + at::matmul(h, w_hh.t());
    if (b_ih.has_value()) pre = pre + *b_ih;
    if (b_hh.has_value()) pre = pre + *b_hh;
    const auto chunks = pre.chunk(4, 1);
    const Tensor i = at::sigmoid(chunks[0]);
    const Tensor f = at::sigmoid(chunks[1]);
    const Tensor g = at::tanh(chunks[2]);
    const Tensor o = at::sigmoid(chunks[3]);
    c = f * c + i * g;
    h = o * at::tanh(c);
    outputs[static_cast<size_t>(t)] = h;
  }
  return {at::stack(outputs, 0), h, c};
}

struct Problem {
  Tensor input, h0, c0, w_ih, w_hh, b_ih, b_hh;
  Tensor grad_output, grad_h_n, grad_c_n;
};

Problem make_problem(at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(seed);
  const auto opts = at::TensorOptions().dtype(dtype);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kH));
  auto uniform = [&](at::IntArrayRef size) {
    return at::rand(size, opts).mul_(2 * scale).sub_(scale);
  };
  Problem p;
  p.input = at::randn({kT, kB, kI}, opts);
  p.h0 = at::randn({kB, kH}, opts);
  p.c0 = at::randn({kB, kH}, opts);
  p.w_ih = uniform({4 * kH, kI});
  p.w_hh = uniform({4 * kH, kH});
  p.b_ih = uniform({4 * kH});
  p.b_hh = uniform({4 * kH});
  p.grad_output = at::randn({kT, kB, kH}, opts);
  p.grad_h_n = at::randn({kB, kH}, opts);
  p.grad_c_n = at::randn({kB, kH}, opts);
  return p;
}

// A leaf copy of `t` that records gradients.
Tensor leaf(const Tensor& t) { return t.detach().clone().requires_grad_(true); }

struct Ops {
  c10::TypedOperatorHandle<ForwardFn> forward;
  c10::TypedOperatorHandle<BackwardFn> backward;
};

void check_case(const Ops& ops, at::ScalarType dtype, bool reverse,
                bool with_bias, uint64_t seed) {
  const double tol = dtype == at::kDouble ? 1e-10 : 1e-5;
  const std::string label = std::string(c10::toString(dtype)) +
                            (reverse ? " reverse" : " forward") +
                            (with_bias ? " with bias" : " without bias");
  const Problem p = make_problem(dtype, seed);
  const OptTensor b_ih = with_bias ? OptTensor(p.b_ih) : std::nullopt;
  const OptTensor b_hh = with_bias ? OptTensor(p.b_hh) : std::nullopt;

  // The op under test sees plain tensors (no autograd history): its
  // autograd formula lives in Python, and here the backward op is called
  // directly.
  Tensor output, h_n, c_n, gates, cells;
  run_check("forward " + label, [&](bool& ok) {
    std::tie(output, h_n, c_n, gates, cells) = ops.forward.call(
        p.input, p.h0, p.c0, p.w_ih, p.w_hh, b_ih, b_hh, std::nullopt,
        std::nullopt, reverse, NO_REGULARIZATION);
    at::NoGradGuard no_grad;
    const ReferenceResult ref = reference_lstm(
        p.input, p.h0, p.c0, p.w_ih, p.w_hh, b_ih, b_hh, reverse);
    Comparisons cmp{tol};
    cmp.add("output", output, ref.output);
    cmp.add("h_n", h_n, ref.h_n);
    cmp.add("c_n", c_n, ref.c_n);
    return cmp.finish(ok);
  });
  if (!output.defined()) {
    report(false, "backward " + label, "skipped: the forward op failed");
    return;
  }

  run_check("backward " + label, [&](bool& ok) {
    // The LSTM's two biases share one gradient (grad_b_ih; grad_b_hh is
    // empty).
    const auto [grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh,
                grad_bias, grad_b_hh, grad_w_hr, grad_norms] =
        ops.backward.call(p.grad_output, p.grad_h_n, p.grad_c_n, p.input,
                          p.h0, p.c0, p.w_ih, p.w_hh, std::nullopt,
                          std::nullopt, output, gates, cells, reverse, true,
                          true, NO_REGULARIZATION);

    // Autograd through the reference. Without biases the op still returns
    // grad_bias (the gradient a bias would get), so the reference then uses
    // zero biases, which leave the forward unchanged.
    std::vector<Tensor> leaves = {
        leaf(p.input), leaf(p.h0),   leaf(p.c0), leaf(p.w_ih), leaf(p.w_hh),
        leaf(with_bias ? p.b_ih : at::zeros_like(p.b_ih)),
        leaf(with_bias ? p.b_hh : at::zeros_like(p.b_hh))};
    const ReferenceResult ref =
        reference_lstm(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4],
                       leaves[5], leaves[6], reverse);
    const auto grads = torch::autograd::grad(
        {ref.output, ref.h_n, ref.c_n}, leaves,
        {p.grad_output, p.grad_h_n, p.grad_c_n});

    Comparisons cmp{tol};
    cmp.add("grad_input", grad_input, grads[0]);
    cmp.add("grad_h0", grad_h0, grads[1]);
    cmp.add("grad_c0", grad_c0, grads[2]);
    cmp.add("grad_w_ih", grad_w_ih, grads[3]);
    cmp.add("grad_w_hh", grad_w_hh, grads[4]);
    cmp.add("grad_bias vs grad b_ih", grad_bias, grads[5]);
    cmp.add("grad_bias vs grad b_hh", grad_bias, grads[6]);
    return cmp.finish(ok);
  });

  // Missing gradients count as zeros.
  run_check("backward " + label + ", only grad_output given", [&](bool& ok) {
    const auto none = ops.backward.call(
        p.grad_output, std::nullopt, std::nullopt, p.input, p.h0, p.c0,
        p.w_ih, p.w_hh, std::nullopt, std::nullopt, output, gates, cells,
        reverse, true, true, NO_REGULARIZATION);
    const auto zeros = ops.backward.call(
        p.grad_output, at::zeros_like(p.h0), at::zeros_like(p.c0), p.input,
        p.h0, p.c0, p.w_ih, p.w_hh, std::nullopt, std::nullopt, output, gates,
        cells, reverse, true, true, NO_REGULARIZATION);
    Comparisons cmp{tol};
    cmp.add("grad_input", std::get<0>(none), std::get<0>(zeros));
    cmp.add("grad_h0", std::get<1>(none), std::get<1>(zeros));
    cmp.add("grad_c0", std::get<2>(none), std::get<2>(zeros));
    cmp.add("grad_w_ih", std::get<3>(none), std::get<3>(zeros));
    cmp.add("grad_w_hh", std::get<4>(none), std::get<4>(zeros));
    cmp.add("grad_bias", std::get<5>(none), std::get<5>(zeros));
    return cmp.finish(ok);
  });
}

void check_empty_sequence(const Ops& ops) {
  run_check("sequence length 0 is rejected", [&](bool& ok) {
    const auto opts = at::TensorOptions().dtype(at::kDouble);
    const Tensor input = at::empty({0, kB, kI}, opts);
    const Tensor h0 = at::zeros({kB, kH}, opts);
    const Tensor c0 = at::zeros({kB, kH}, opts);
    const Tensor w_ih = at::zeros({4 * kH, kI}, opts);
    const Tensor w_hh = at::zeros({4 * kH, kH}, opts);
    const std::string expected =
        "Expected sequence length to be larger than 0";
    try {
      ops.forward.call(input, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt,
                       std::nullopt, std::nullopt, false, NO_REGULARIZATION);
    } catch (const c10::Error& e) {
      const std::string msg = e.what_without_backtrace();
      ok = msg.find(expected) != std::string::npos;
      return ok ? std::string("threw c10::Error as expected")
                : "c10::Error without the expected message: " + msg;
    }
    ok = false;
    return std::string("no exception thrown");
  });
}

// The step bookkeeping of a packed batch of lengths 3, 2 and 1 (batch
// sizes 3, 2, 1) in both directions: per processed step, the rows that
// continue from the step before and the rows that go on to the next.
void check_packed_layout() {
  run_check("packed step layout", [&](bool& ok) {
    const Tensor batch_sizes = at::tensor(std::vector<int64_t>{3, 2, 1});
    std::string detail;
    for (const bool reverse : {false, true}) {
      const fusedrnn::SequenceLayout layout(batch_sizes, reverse);
      const std::vector<int64_t> continuing =
          reverse ? std::vector<int64_t>{0, 1, 2} : std::vector<int64_t>{0, 2, 1};
      // In reverse every sequence ends at step 0, the last processed.
      const std::vector<int64_t> going_on =
          reverse ? std::vector<int64_t>{1, 2, 0} : std::vector<int64_t>{2, 1, 0};
      for (int64_t s = 0; s < 3; ++s) {
        if (layout.continuing(s) != continuing[s] ||
            layout.live_after(s) != going_on[s]) {
          detail += (reverse ? "reverse" : "forward") + std::string(" step ") +
                    std::to_string(s) + " differs; ";
        }
      }
    }
    ok = detail.empty();
    return detail;
  });
}

// Layouts whose row counts and buffer offsets pass 2^31 (and 2^32) without
// allocating a single row: every count and offset is int64, and so is the
// element offset of a step's gates, row * G * H, which the layer function
// computes. Checked against 128-bit arithmetic.
void check_layout_beyond_int32() {
  run_check("step layout beyond 2^31 rows", [&](bool& ok) {
    std::string detail;
    auto expect = [&](const char* what, int64_t actual, __int128 expected) {
      if (static_cast<__int128>(actual) != expected) {
        detail += std::string(what) + " differs; ";
      }
    };
    constexpr int64_t kGates = 4, kHidden = 4096;
    const int64_t steps = int64_t(1) << 20, batch = int64_t(1) << 12;
    for (const bool reverse : {false, true}) {
      const fusedrnn::SequenceLayout dense(steps, batch, reverse);
      expect("dense rows", dense.rows(), static_cast<__int128>(steps) * batch);
      const int64_t last = steps - 1;
      expect("dense offset", dense.offset(last),
             static_cast<__int128>(last) * batch);
      expect("dense gate offset", dense.offset(last) * kGates * kHidden,
             static_cast<__int128>(last) * batch * kGates * kHidden);
      expect("dense continuing", dense.continuing(steps - 1), batch);
    }
    // Packed: two steps of 2^31 + 7 sequences, then 5 of them.
    const int64_t wide = (int64_t(1) << 31) + 7;
    const Tensor batch_sizes = at::tensor(std::vector<int64_t>{wide, wide, 5});
    for (const bool reverse : {false, true}) {
      const fusedrnn::SequenceLayout packed(batch_sizes, reverse);
      expect("packed rows", packed.rows(), static_cast<__int128>(wide) * 2 + 5);
      expect("packed offset", packed.offset(2), static_cast<__int128>(wide) * 2);
      expect("packed gate offset", packed.offset(2) * kGates * kHidden,
             static_cast<__int128>(wide) * 2 * kGates * kHidden);
      expect("packed batch", packed.batch(), wide);
      // Forward: step 1 continues all of step 0's rows, step 2 five;
      // reverse (steps 2, 1, 0): step 1 continues the five of step 2.
      expect("packed continuing", packed.continuing(1), reverse ? 5 : wide);
      expect("packed live_after", packed.live_after(1), reverse ? wide : 5);
    }
    ok = detail.empty();
    return detail;
  });
}

}  // namespace

int main() {
  // The ops register themselves when libfusedrnn_ops loads; if the linker
  // dropped the library (--as-needed), the lookups below fail.
  std::optional<Ops> ops;
  run_check("ops are registered", [&](bool& ok) {
    auto& dispatcher = c10::Dispatcher::singleton();
    ops = Ops{dispatcher.findSchemaOrThrow("fusedrnn::lstm_layer_forward", "")
                  .typed<ForwardFn>(),
              dispatcher.findSchemaOrThrow("fusedrnn::lstm_layer_backward", "")
                  .typed<BackwardFn>()};
    ok = true;
    return std::string();
  });

  if (ops.has_value()) {
    uint64_t seed = 0;
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      for (const bool reverse : {false, true}) {
        for (const bool with_bias : {true, false}) {
          check_case(*ops, dtype, reverse, with_bias, ++seed);
        }
      }
    }
    check_empty_sequence(*ops);
  }
  check_packed_layout();
  check_layout_beyond_int32();

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
