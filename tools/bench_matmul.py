"""Benchmarks of the CPU step multiply (csrc/cpu/matmul*) and of the LSTM
layer ops that use it.

    python tools/bench_matmul.py ops       # op forward/backward vs nn.LSTM
    python tools/bench_matmul.py kernel    # GFLOP/s of multiply() alone
    python tools/bench_matmul.py whole     # GFLOP/s of whole_multiply()
    python tools/bench_matmul.py whole --dtype bfloat16

`ops` times whatever `import fusedrnn` finds (put another build first on
PYTHONPATH to compare). `kernel` compiles cpu/matmul.cpp and cpu/matmul/*.cpp
from --csrc (default: this checkout's) into a private extension that times
RightOperand + multiply on the time loop's shapes, next to torch.mm on the
same shapes; no fusedrnn API is involved. Use --openmp to compile it with
-fopenmp, without which at::parallel_for runs on one thread.

Other processes may share the cores: every number is the median of
--repeats measurements.
"""
import argparse
import hashlib
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils import benchmark

ROOT = Path(__file__).resolve().parent.parent

# (T, B, I, H), as in the issue.
OP_SIZES = {"small": (50, 8, 128, 128), "medium": (100, 16, 256, 256),
            "fastrnns": (100, 64, 512, 512), "large": (100, 64, 1024, 1024)}


def median_time(stmt, repeats, **globals_):
    """Median over `repeats` of Timer's median, in seconds."""
    timer = benchmark.Timer(stmt=stmt, globals=globals_,
                            num_threads=torch.get_num_threads())
    return statistics.median(timer.blocked_autorange(min_run_time=0.5).median
                             for _ in range(repeats))


def bench_ops(repeats):
    import fusedrnn  # noqa: F401  (registers torch.ops.fusedrnn)

    ops = torch.ops.fusedrnn
    print(f"threads={torch.get_num_threads()}  times in ms (median of {repeats})")
    print(f"{'size':9} {'T,B,I,H':18} {'op fwd':>8} {'nn fwd':>8} "
          f"{'op bwd':>8} {'nn bwd':>8}")
    for name, (T, B, I, H) in OP_SIZES.items():
        torch.manual_seed(0)
        lstm = torch.nn.LSTM(I, H)
        w_ih, w_hh, b_ih, b_hh = (p.detach() for p in lstm.parameters())
        x, h0, c0 = torch.randn(T, B, I), torch.randn(1, B, H), torch.randn(1, B, H)
        fwd_args = (x, h0[0], c0[0], w_ih, w_hh, b_ih, b_hh, None, None, False)
        y, h_n, c_n, gates, cells = ops.lstm_layer_forward(*fwd_args)
        dy, dh, dc = torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n)
        bwd_args = (dy, dh, dc, x, h0[0], c0[0], w_ih, w_hh, None, None, y, gates,
                    cells, False)
        op_fwd = median_time("ops.lstm_layer_forward(*a)", repeats, ops=ops, a=fwd_args)
        op_bwd = median_time("ops.lstm_layer_backward(*a)", repeats, ops=ops, a=bwd_args)
        with torch.no_grad():
            nn_fwd = median_time("lstm(x, (h0, c0))", repeats, lstm=lstm, x=x, h0=h0, c0=c0)
        out, (hn, cn) = lstm(x, (h0, c0))
        nn_bwd = median_time(
            "torch.autograd.backward((out, hn, cn), (dy, dh[None], dc[None]), "
            "retain_graph=True)", repeats, torch=torch, out=out, hn=hn, cn=cn,
            dy=dy, dh=dh, dc=dc)
        print(f"{name:9} {str((T, B, I, H)):18} {op_fwd * 1e3:8.2f} {nn_fwd * 1e3:8.2f} "
              f"{op_bwd * 1e3:8.2f} {nn_bwd * 1e3:8.2f}")


# The private extension of `kernel`: RightOperand is built once per shape and
# multiply() runs in a C++ loop, as in the time loop, so no Python or
# dispatcher overhead is timed.
BINDING = r"""
#include <torch/extension.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/matmul/packed_multiply.h"
#include "cpu/whole_multiply.h"

using fusedrnn::cpu::RightOperand;

// C = A op(W) + beta C with W (rows, cols) as given; returns C.
at::Tensor multiply(const at::Tensor& a, const at::Tensor& w, bool transpose,
                    double beta, at::Tensor c) {
  // Packed as for a time loop of many steps, whatever a's rows.
  const RightOperand<float> op(w.data_ptr<float>(), w.size(0), w.size(1),
                               transpose, fusedrnn::cpu::kMinRowsToPack);
  fusedrnn::cpu::multiply(a.size(0), a.data_ptr<float>(), a.stride(0), op,
                          static_cast<float>(beta), c.data_ptr<float>(),
                          c.stride(0));
  return c;
}

// Median over `repeats` of the mean time of `steps` multiplies, seconds.
double seconds_per_multiply(const at::Tensor& a, const at::Tensor& w,
                            bool transpose, at::Tensor c, int64_t steps,
                            int64_t repeats) {
  const RightOperand<float> op(w.data_ptr<float>(), w.size(0), w.size(1),
                               transpose, steps * a.size(0));
  std::vector<double> times;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      fusedrnn::cpu::multiply(a.size(0), a.data_ptr<float>(), a.stride(0), op,
                              0.0f, c.data_ptr<float>(), c.stride(0));
    }
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start;
    times.push_back(elapsed.count() / steps);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("multiply", &multiply);
  m.def("seconds_per_multiply", &seconds_per_multiply);
  m.def("whole_multiply", [](const at::Tensor& a, const at::Tensor& b,
                             std::optional<at::Tensor> bias) {
    return fusedrnn::cpu::whole_multiply(a, b, bias);
  });
}
"""


def build_kernel_module(csrc, openmp):
    from torch.utils.cpp_extension import load

    # One build folder per configuration, so that reruns rebuild only what
    # changed.
    tag = hashlib.sha1(f"{csrc}:{openmp}".encode()).hexdigest()[:12]
    build = Path(tempfile.gettempdir()) / f"bench_matmul_{tag}"
    build.mkdir(exist_ok=True)
    binding = build / "binding.cpp"
    if not binding.exists() or binding.read_text() != BINDING:
        binding.write_text(BINDING)
    sources = [binding, csrc / "cpu" / "matmul.cpp",
               csrc / "cpu" / "whole_multiply.cpp",
               csrc / "cpu" / "buffer_pool.cpp",
               *sorted((csrc / "cpu" / "matmul").glob("*.cpp"))]
    flags = ["-O3"] + (["-fopenmp"] if openmp else [])
    return load(name="bench_matmul_ext", sources=[str(s) for s in sources],
                extra_include_paths=[str(csrc)], extra_cflags=flags,
                extra_ldflags=["-fopenmp"] if openmp else [],
                build_directory=str(build), verbose=False)


def kernel_shapes():
    """(label, m, W rows, W cols, transpose) of the time loop's multiplies."""
    for H in (128, 256, 512, 1024):
        for m in (1, 8, 16, 64):
            yield f"fwd H={H}", m, 4 * H, H, True   # h (m, H) @ W_hh^T
            yield f"bwd H={H}", m, 4 * H, H, False  # dgates (m, 4H) @ W_hh


def whole_shapes(dtype):
    """(label, a, b, bias) of the multiplies outside the time loop, per op
    size: the input projection (with b_ih), the input gradient, the weight
    gradient (a transposed left operand)."""
    for name, (T, B, I, H) in OP_SIZES.items():
        x, dgates, w_ih = (torch.randn(T * B, I, dtype=dtype),
                           torch.randn(T * B, 4 * H, dtype=dtype),
                           torch.randn(4 * H, I, dtype=dtype))
        yield f"in-proj {name}", x, w_ih.t(), torch.randn(4 * H, dtype=dtype)
        yield f"grad-in {name}", dgates, w_ih, None
        yield f"grad-w {name}", dgates.t(), x, None


def bench_kernel(csrc, openmp, repeats):
    ext = build_kernel_module(csrc, openmp)
    print(f"csrc={csrc} openmp={openmp} threads={torch.get_num_threads()}  "
          f"GFLOP/s (median of {repeats})")
    print(f"{'shape':18} {'m':>5} {'K':>5} {'N':>5} {'multiply':>9} {'torch.mm':>9}")
    for label, m, rows, cols, transpose in kernel_shapes():
        torch.manual_seed(0)
        w = torch.randn(rows, cols)
        weight = w.t() if transpose else w
        K, N = weight.shape
        a = torch.randn(m, K)
        c = torch.empty(m, N)
        expected = a @ weight
        c0 = torch.randn(m, N)
        ext.multiply(a, w, transpose, 0.0, c)
        torch.testing.assert_close(c, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ext.multiply(a, w, transpose, 1.0, c0.clone()),
                                   expected + c0, rtol=1e-4, atol=1e-4)
        flops = 2 * m * K * N
        steps = max(1, int(2e8 // flops))  # ~ 1 ms per repeat at 200 GFLOP/s
        ours = ext.seconds_per_multiply(a, w, transpose, c, steps, repeats)
        mm = median_time("torch.mm(a, b, out=c)", repeats, torch=torch, a=a,
                         b=weight, c=c)
        print(f"{label:18} {m:5} {K:5} {N:5} {flops / ours / 1e9:9.1f} "
              f"{flops / mm / 1e9:9.1f}")


def bench_whole(csrc, openmp, repeats, dtype):
    ext = build_kernel_module(csrc, openmp)
    print(f"csrc={csrc} openmp={openmp} threads={torch.get_num_threads()} {dtype}  "
          f"GFLOP/s (median of {repeats})")
    print(f"{'shape':18} {'M':>5} {'K':>5} {'N':>5} {'whole':>9} {'torch':>9}")
    for label, a, b, bias in whole_shapes(dtype):
        (m, K), N = a.shape, b.shape[1]
        # The exact product of the same inputs; whole_multiply returns float.
        a64, b64 = a.double(), b.double()
        expected = a64 @ b64 if bias is None else torch.addmm(bias.double(), a64, b64)
        torch.testing.assert_close(ext.whole_multiply(a, b, bias).double(), expected,
                                   rtol=1e-4, atol=1e-3)
        ours = median_time("ext.whole_multiply(a, b, bias)", repeats, ext=ext, a=a,
                           b=b, bias=bias)
        mm = median_time("torch.mm(a, b) if bias is None else torch.addmm(bias, a, b)",
                         repeats, torch=torch, a=a, b=b, bias=bias)
        flops = 2 * m * K * N
        print(f"{label:18} {m:5} {K:5} {N:5} {flops / ours / 1e9:9.1f} "
              f"{flops / mm / 1e9:9.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["ops", "kernel", "whole"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--csrc", type=Path, default=ROOT / "csrc")
    parser.add_argument("--openmp", action="store_true")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads first")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="of `whole` (bfloat16 needs AVX512_BF16)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "ops":
        bench_ops(args.repeats)
    elif args.what == "kernel":
        bench_kernel(args.csrc.resolve(), args.openmp, args.repeats)
    else:
        bench_whole(args.csrc.resolve(), args.openmp, args.repeats,
                    getattr(torch, args.dtype))


if __name__ == "__main__":
    main()
