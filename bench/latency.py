"""The latency group, `python -m bench latency`: batch-1 and small-batch
calls of fusedrnn against torch.nn, ONNX Runtime and torch's int8 LSTM, at
each thread count, with each case's limit on this machine.

For each thread count: measure the machine's rates at that count
(limits.measure_machine), then time every case of latency_cases.py, its
implementations interleaved (measure.time_steps). The thread count torch
had before is restored at the end.
"""
import os
from contextlib import nullcontext
from datetime import datetime, timezone

import torch

from . import onnx_peer
from .environment import describe
from .latency_cases import SCALES, latency_cases
from .latency_peers import PEERS, build_steps
from .limits import case_limit, measure_machine
from .measure import time_steps
from .run import Progress

TINY_MATMUL_N = 256  # the tiny scale's timings mean nothing; save the tests a second


def run_latency(scale_name, thread_counts, min_run_time, skip, argv, kinds=None):
    """The JSON-ready document of one run of the group (of its cases of the
    kinds `kinds`, default all); progress on stderr."""
    started = datetime.now(timezone.utc)
    environment = describe()
    cases = [case for case in latency_cases(SCALES[scale_name])
             if kinds is None or case.kind in kinds]
    unavailable = {} if onnx_peer.available() else {
        "onnxruntime": "onnx or onnxruntime not importable (pip install 'fusedrnn[onnx]')"}
    progress = Progress(len(cases) * len(thread_counts))

    machines, records = {}, []
    original_threads = torch.get_num_threads()
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            progress.note(f"machine limits at {threads} thread(s): matmul, L2 and L3 reads")
            machine = measure_machine(min_run_time,
                                      TINY_MATMUL_N if scale_name == "tiny" else None)
            machines[str(threads)] = machine
            for case in cases:
                progress.step(case.id(threads))
                records.append(_run_case(case, threads, machine, min_run_time, skip))
    finally:
        torch.set_num_threads(original_threads)
    progress.note("done")
    load_at_end = os.getloadavg() if hasattr(os, "getloadavg") else None

    return {"schema": 1, "group": "latency", "date": started.isoformat(timespec="seconds"),
            "argv": argv, **environment,
            "settings": {"scale": scale_name, "threads": list(thread_counts),
                         "kinds": list(kinds) if kinds else ["step", "layer", "decode"],
                         "min_run_time_s": min_run_time,
                         "implementations": [name for name in PEERS
                                             if name not in skip and name not in unavailable],
                         "skipped": list(skip), "unavailable": unavailable},
            "machines": machines, "load_average_at_end": load_at_end, "cases": records}


def _run_case(case, threads, machine, min_run_time, skip):
    steps, notes = build_steps(case, threads, skip)
    limit = case_limit(case, machine)
    results = {name: dict(notes.get(name, {})) for name in (*steps, *notes)}
    # No context to enter: every step runs as it was built.
    timings = time_steps({name: (step, nullcontext) for name, step in steps.items()},
                         min_run_time)
    for name, timing in timings.items():
        results[name].update(timing, limit_over_time=limit["s"] / timing["median_s"])
    fused, baseline = timings.get("fusedrnn"), timings.get("torch")
    return {"id": case.id(threads), "name": case.name, "kind": case.kind, "cell": case.cell,
            "T": case.T, "B": case.B, "I": case.I, "H": case.H, "layers": case.layers,
            "bidirectional": case.bidirectional, "vocab": case.vocab, "mode": case.mode,
            "threads": threads, "limit": limit, "results": results,
            "fused_over_torch": (fused["median_s"] / baseline["median_s"]
                                 if fused and baseline else None)}
