"""Runs the cases: builds each case's modules and input, measures every
implementation, and returns JSON-ready records."""
import sys
import time

import torch

from .cases import DTYPES, flops, make_input
from .cells import CELLS
from .impls import IMPLS, make_step
from .measure import machine_peak, probe, time_steps


class Progress:
    """One line per step on stderr, with the time elapsed since the start."""

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.start = time.perf_counter()

    def step(self, what):
        self.done += 1
        self.note(f"[{self.done}/{self.total}] {what}")

    def note(self, text):
        minutes, seconds = divmod(int(time.perf_counter() - self.start), 60)
        print(f"{minutes:3d}:{seconds:02d} {text}", file=sys.stderr, flush=True)


def measure_peaks(cases, min_run_time, progress):
    """The machine's matmul limit for every (device, dtype) among `cases`."""
    peaks = {}
    for device, dtype in dict.fromkeys((case.device, case.dtype) for case in cases):
        progress.note(f"machine limit: {device} {dtype} matmul")
        peaks[f"{device}/{dtype}"] = machine_peak(device, DTYPES[dtype], min_run_time)
    return peaks


def run_case(case, impl_names, min_run_time, peak_gflops, progress):
    """The record of one case: its parameters and each implementation's result."""
    torch.manual_seed(0)
    extra = {"proj_size": case.proj_size} if case.proj_size else {}
    module = CELLS[case.cell].torch_cls(case.shape.I, case.shape.H, dtype=DTYPES[case.dtype],
                                        device=case.device, **extra)
    input, leaf, tokens = make_input(case, torch.Generator().manual_seed(0))
    case_flops = flops(case, tokens)

    results, steps = {}, {}
    for name in impl_names:
        try:
            steps[name], results[name] = _prepare_impl(name, module, input, leaf, case)
        except Exception as error:  # noqa: BLE001 - one failure must not end the run
            message = f"{type(error).__name__}: {str(error).strip()}".splitlines()[0][:300]
            progress.note(f"    {name} failed: {message}")
            results[name] = {"error": message}
    for name, timing in time_steps(steps, min_run_time).items():
        gflops = case_flops / timing["median_s"] / 1e9
        results[name].update(timing, gflops=gflops, pct_of_peak=100 * gflops / peak_gflops)

    return {"id": case.id, "cell": case.cell, "size": case.size, **case.shape._asdict(),
            "proj_size": case.proj_size, "input": case.input, "dtype": case.dtype,
            "device": case.device, "mode": case.mode, "tokens": tokens, "flops": case_flops,
            "results": results}


def _prepare_impl(name, module, input, leaf, case):
    """(step, context) to time for one implementation, and what `probe` saw
    of it: the bytes saved for backward and, for fusedrnn, its ops."""
    impl = IMPLS[name]

    def context():
        return impl.context(case.device)

    with context():
        built = impl.build(module)
        step, leaves = make_step(built, input, leaf, case.mode, case.proj_size or case.shape.H)
        step()  # warm-up: oneDNN primitives, allocator caches, compilation
        # Only fusedrnn's own ops are watched: whether its kernel or its
        # reference fallback ran is what the reader needs to know.
        watched = "fusedrnn" if name == "fusedrnn" else None
        result = probe(step, leaves, case.device, namespace=watched)
    if case.mode == "fwd":
        del result["saved_bytes"]  # nothing is saved without grad
    return (step, context), result
