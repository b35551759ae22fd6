"""What a latency case could at best reach on this machine.

A case's limit is the shortest time the machine could take for it, the
larger of two lower bounds:
  matmul  its FLOPs at the rate of a large oneDNN matmul (measure.machine_peak,
          the limit of the default grid)
  read    the weight bytes it must move at the rate the cores stream data
          from the cache that holds them (measure.read_bandwidth)
Small batches do little arithmetic per weight, so there the read bound is
usually the larger. Both are for the dtype fusedrnn runs the case in
(LatencyCase.dtype): its bytes per weight, and for float64 half the
float32 matmul rate.

Which cache. Each read of weights comes from a working set: the L2 rate
applies when that set, split evenly over the threads, fits in one core's
L2 (1 MiB per core on Zen 4; read from sysfs where Linux tells), the L3
rate otherwise. A set too large for L2 comes from L3 (or memory) on every
pass, whatever the code does; one that fits can stay in L2 between passes.
The working set of a call is all the weights it reads: every parameter,
except that the decoding loop reads one row of its embedding table per
token, not the table. One exception: a sequence re-reads each recurrent
weight matrix W_hh at every step after the first, and each layer and
direction can run its steps back to back, so those re-reads come from a
working set of one W_hh.

The rates are measured on buffers that sit in one level only: 512 KiB
(L2) and 4 MiB (larger than the two cores' L2 together, well inside L3).
A larger L3 buffer shares the L3 with whatever else runs on the machine
and reads slower than the weights of most cases do: limits built on it
were beaten.

The share of the limit a run reaches, limit / time, is what a reader
compares: what keeps an implementation below 1 is per-call overhead,
elementwise work, synchronisation between threads, weights read from
further away than they could be. Above 1 means that the limit assumed too
much: torch's int8 peer reads a quarter of the float32 bytes counted here,
and on a shared machine the rates and the times, measured at different
moments, move with the other jobs.
"""
import os
from pathlib import Path

import torch

from .cells import CELLS
from .measure import machine_peak, read_bandwidth

# Bytes per weight of the dtype fusedrnn runs a case in.
ELEMENT_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2}
DEFAULT_L2_BYTES = 2**20
L2_BUFFER_BYTES = 512 * 2**10  # fits one core's L2 with room to spare
L3_BUFFER_BYTES = 4 * 2**20    # see the module's docstring
# The backward of a step multiplies by every weight again (the input and
# state gradients) and writes a gradient the size of each weight: three
# passes over the weights, as the grid counts three times the FLOPs.
BACKWARD_FACTOR = 3


def l2_bytes_per_core():
    """One core's L2 size from Linux's sysfs, or 1 MiB where it does not say."""
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip()  # e.g. "1024K"
                units = {"K": 2**10, "M": 2**20}
                return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError):
            break
    return DEFAULT_L2_BYTES


def measure_machine(min_run_time, matmul_n=None):
    """The machine's rates at the current torch thread count, and the load
    of the other jobs then: a thread that waits for a core stalls the rest."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    peak = machine_peak("cpu", torch.float32, min_run_time, n=matmul_n)
    return {"threads": torch.get_num_threads(), "load_average": load,
            "matmul_gflops": peak["gflops"], "matmul_how": peak["how"],
            "l2_read_gbps": read_bandwidth(L2_BUFFER_BYTES, min_run_time),
            "l3_read_gbps": read_bandwidth(L3_BUFFER_BYTES, min_run_time),
            "read_how": f"sum of a float32 buffer of {L2_BUFFER_BYTES // 2**10} KiB (L2) "
                        f"and {L3_BUFFER_BYTES // 2**20} MiB (L3)",
            "l2_bytes_per_core": l2_bytes_per_core()}


def case_limit(case, machine):
    """The limit of `case` (a LatencyCase) on `machine` (measure_machine's
    record, at the thread count the case runs at)."""
    flop_count = flops(case)
    # The measured rate is float32's: float64 takes twice as long; bfloat16
    # is taken at float32's rate (its products are summed in float32).
    matmul_s = flop_count / (machine["matmul_gflops"] * 1e9) * (
        2 if case.dtype == "float64" else 1)
    read_bytes = {"l2": 0, "l3": 0}
    for nbytes, working_set in weight_reads(case):
        fits = working_set / machine["threads"] <= machine["l2_bytes_per_core"]
        read_bytes["l2" if fits else "l3"] += nbytes
    read_s = sum(nbytes / (machine[f"{level}_read_gbps"] * 1e9)
                 for level, nbytes in read_bytes.items())
    levels = "+".join(level.upper() for level, nbytes in read_bytes.items() if nbytes)
    return {"s": max(matmul_s, read_s),
            "by": "matmul" if matmul_s >= read_s else f"{levels} read",
            "matmul_s": matmul_s, "read_s": read_s, "flops": flop_count,
            "weight_bytes": _weights(case)[0] * ELEMENT_BYTES[case.dtype],
            "read_bytes": sum(read_bytes.values()),
            "l2_read_bytes": read_bytes["l2"], "l3_read_bytes": read_bytes["l3"]}


def flops(case):
    """Multiply-add FLOPs of one call of `case`: every step multiplies its
    input and state by the gate weights (x3 with the backward); the
    decoding loop adds the Linear to the vocabulary. Elementwise work is not
    counted, as in cases.flops."""
    gates, H, B = CELLS[case.cell].gates, case.H, case.B
    if case.kind == "decode":
        return case.T * 2 * B * (gates * H * (case.I + H) + H * case.vocab)
    forward = sum(2 * case.T * B * gates * H * (inputs + H)
                  for inputs in _layer_inputs(case)) * case.directions
    return forward * (BACKWARD_FACTOR if case.mode == "fwd+bwd" else 1)


def weight_reads(case):
    """The weight bytes one call of `case` must move at least, as
    (bytes, working set in bytes) pairs; see the module's docstring."""
    everything, recurrent = (ELEMENT_BYTES[case.dtype] * count for count in _weights(case))
    if case.kind == "decode":
        return [(case.T * everything, everything)]
    passes = BACKWARD_FACTOR if case.mode == "fwd+bwd" else 1
    reads = [(passes * everything, everything)]
    if case.T > 1:
        # Steps 2..T of the forward re-read W_hh, and so do those of the
        # backward (for the state gradient); its weight gradient is written
        # once, counted above.
        step_passes = 2 if case.mode == "fwd+bwd" else 1
        per_matrix = recurrent // (case.layers * case.directions)
        reads.append((step_passes * (case.T - 1) * recurrent, per_matrix))
    return reads


def _weights(case):
    """(all weights, recurrent weights) of `case`, in numbers of floats."""
    gates, H = CELLS[case.cell].gates, case.H
    cell = [gates * H * (inputs + H) + 2 * gates * H for inputs in _layer_inputs(case)]
    if case.kind == "decode":
        # The cell, the Linear to the vocabulary, one embedding row.
        return sum(cell) + H * case.vocab + case.vocab + case.I, gates * H * H
    return case.directions * sum(cell), case.directions * case.layers * gates * H * H


def _layer_inputs(case):
    """The input width of each layer: the case's input, then the previous
    layer's output (both directions side by side)."""
    return [case.I] + [case.directions * case.H] * (case.layers - 1)
