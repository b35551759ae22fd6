"""fusedrnn.LSTM against torch.nn.LSTM (cuDNN) on one GPU.

    python -m bench.cuda_bench --out results.json        # measure, print table
    python -m bench.cuda_bench --table results.json      # print a saved table

For each size (T, B, I, H), dtype and mode it times one call of each
implementation on the same weights and input: "forward" under no_grad, and
"train" = forward + backward of the sum of the outputs. Times come from CUDA
events around a group of calls (median of the groups); peak memory is
torch.cuda.max_memory_allocated during one call, above what was allocated
before it (weights and input). The float32 runs use exact float32 products
in both (TF32 off for cuBLAS and cuDNN) unless --tf32. Each forward also
records the largest difference between the two outputs, as a sanity check.

Standalone on purpose (the suite in bench/ is `python -m bench`): it is what
bench/device_check.sh runs on a lent GPU within a few minutes. Run it from
the repository root, so that the in-place built fusedrnn is the one found.
"""
import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

import fusedrnn

SIZES = {  # name: (T, B, I, H)
    "fastrnns": (100, 64, 512, 512),
    "large": (100, 64, 1024, 1024),
    "long": (1024, 16, 768, 768),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "train")
IMPLS = ("cudnn", "fusedrnn")


def make_step(module, x, mode):
    """One call of the measured work, returning the output (forward only)."""
    if mode == "forward":
        def step():
            with torch.no_grad():
                return module(x)[0]
    else:
        def step():
            output, (h_n, c_n) = module(x)
            (output.float().sum() + h_n.float().sum() + c_n.float().sum()).backward()
    return step


def _group_ms(step, calls):
    """Milliseconds of `calls` back-to-back calls, timed with CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def time_per_call(step, min_time_s, max_groups=15):
    """Median seconds per call over groups of calls timed with CUDA events,
    after warming up; the group size grows until a group takes ~20 ms."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    calls = 1
    while _group_ms(step, calls) < 20 and calls < 64:
        calls *= 2
    groups = []
    began = time.perf_counter()
    while len(groups) < 3 or (time.perf_counter() - began < min_time_s
                              and len(groups) < max_groups):
        groups.append(_group_ms(step, calls) / 1e3 / calls)
    return statistics.median(groups), calls, len(groups)


def peak_memory(step):
    """Bytes allocated at the peak of one call, above what was allocated
    before it."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def run_case(size_name, dtype_name, mode, min_time_s, failures):
    """The rows of one case, one per implementation that ran; an
    implementation that raises goes to `failures` instead."""
    T, B, I, H = SIZES[size_name]
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    ours = fusedrnn.LSTM(I, H, device="cuda", dtype=dtype)
    theirs = nn.LSTM(I, H, device="cuda", dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    rows = []
    outputs = {}
    for impl, module in (("cudnn", theirs), ("fusedrnn", ours)):
        try:
            step = make_step(module, x, mode)
            if mode == "forward":
                outputs[impl] = step()
            seconds, calls, groups = time_per_call(step, min_time_s)
            module.zero_grad(set_to_none=True)
            memory = peak_memory(step)
            module.zero_grad(set_to_none=True)
        except Exception as error:  # report it and go on with the others
            failures.append(dict(case=f"{size_name}/{dtype_name}/{mode}/{impl}",
                                 error=repr(error)[:500]))
            continue
        rows.append(dict(size=size_name, T=T, B=B, I=I, H=H, dtype=dtype_name, mode=mode,
                         impl=impl, ms=seconds * 1e3, calls_per_group=calls,
                         groups=groups, peak_mib=memory / 2**20))
    if len(outputs) == 2:
        diff = (outputs["fusedrnn"].float() - outputs["cudnn"].float()).abs().max().item()
        for row in rows:
            row["max_abs_diff_vs_cudnn"] = diff
    del ours, theirs, x, outputs
    torch.cuda.empty_cache()
    return rows


def environment():
    props = torch.cuda.get_device_properties(0)
    return dict(device=props.name, capability=f"{props.major}.{props.minor}",
                torch=torch.__version__, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(), fusedrnn=fusedrnn.build_info(),
                tf32_cublas=torch.backends.cuda.matmul.allow_tf32,
                tf32_cudnn=torch.backends.cudnn.allow_tf32)


def table(results):
    """A short text table: per case, both times, the speedup and memory."""
    lines = [f"{'size':9} {'dtype':5} {'mode':7} {'cudnn ms':>9} {'fused ms':>9} "
             f"{'speedup':>7} {'cudnn MiB':>9} {'fused MiB':>9}"]
    cases = {}
    for row in results["rows"]:
        cases.setdefault((row["size"], row["dtype"], row["mode"]), {})[row["impl"]] = row
    for (size, dtype, mode), impls in cases.items():
        cudnn, fused = impls.get("cudnn"), impls.get("fusedrnn")
        if cudnn is None or fused is None:
            continue
        lines.append(f"{size:9} {dtype:5} {mode:7} {cudnn['ms']:9.2f} {fused['ms']:9.2f} "
                     f"{cudnn['ms'] / fused['ms']:6.2f}x {cudnn['peak_mib']:9.0f} "
                     f"{fused['peak_mib']:9.0f}")
    for failure in results.get("failures", []):
        lines.append(f"FAILED {failure['case']}: {failure['error']}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--table", metavar="JSON", help="print the table of a saved run")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated names")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated names")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated names")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="seconds of timed calls per implementation and case")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="stop starting new cases after this many seconds")
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 in float32 products (cuBLAS and cuDNN)")
    args = parser.parse_args()

    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return 0
    if not torch.cuda.is_available():
        print("cuda_bench: no GPU visible; nothing to measure")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = False
    results = dict(environment=environment(), rows=[], failures=[], skipped=[])
    began = time.perf_counter()
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            for mode in args.modes.split(","):
                case = f"{size}/{dtype}/{mode}"
                if time.perf_counter() - began > args.budget:
                    results["skipped"].append(case)
                    continue
                rows = run_case(size, dtype, mode, args.min_time, results["failures"])
                results["rows"].extend(rows)
                print(f"{case}: " + ", ".join(f"{r['impl']} {r['ms']:.2f} ms" for r in rows),
                      flush=True)
    results["seconds"] = time.perf_counter() - began
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if results["skipped"]:
        print(f"skipped (over budget): {', '.join(results['skipped'])}")
    print(table(results))
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
