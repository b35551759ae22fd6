"""What a latency case could at best reach on this machine.

A case's limit is the shortest time the machine could take for it, the
larger of two lower bounds:
  matmul  its FLOPs at the rate of a large oneDNN matmul (measure.machine_peak,
          the limit of the default grid)
  read    the weight bytes it must move at the rate the cores stream data
          from the cache that holds them (measure.read_bandwidth)
Small batches do little arithmetic per weight, so there the read bound is
usually the larger.

Which cache: the L2 rate when the case's weights, split evenly over the
threads, fit in one core's L2 (1 MiB per core on Zen 4; read from sysfs
where Linux tells); otherwise the L3 rate. A weight too large for L2 comes
from L3 (or memory) at every step, whatever the code does, while one that
fits can stay in L2 between steps. The weights are every parameter the case
reads, except that the decoding loop reads one row of its embedding table
per token, not the table.

The share of the limit a run reaches, limit / time, is what a reader
compares: what keeps an implementation below 1 is per-call overhead,
elementwise work, synchronisation between threads, weights read from
further away than they could be. It can pass 1 where the limit assumes too
much: torch's int8 peer reads a quarter of the float32 bytes counted here;
a sequence whose recurrent weights alone fit in L2 re-reads them from
there although its weights as a whole count as L3; and a machine shared
with other jobs moves the rates and the times, measured at different
moments.
"""
from pathlib import Path

import torch

from .cells import CELLS
from .measure import machine_peak, read_bandwidth

FLOAT32_BYTES = 4  # the latency group runs float32
DEFAULT_L2_BYTES = 2**20
L2_BUFFER_BYTES = 512 * 2**10  # fits one core's L2 with room to spare
L3_BUFFER_BYTES = 16 * 2**20   # too large for L2, fits the L3 of the machines we run on
# How many times a fwd+bwd step touches its weights: the forward reads W,
# the backward reads it again (for the input and state gradients) and writes
# a gradient of the same size. The same x3 as the FLOP count of the grid.
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
    """The machine's rates at the current torch thread count."""
    peak = machine_peak("cpu", torch.float32, min_run_time, n=matmul_n)
    return {"threads": torch.get_num_threads(),
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
    footprint, read = weight_bytes(case)
    per_core = footprint / machine["threads"]
    level = "l2" if per_core <= machine["l2_bytes_per_core"] else "l3"
    matmul_s = flop_count / (machine["matmul_gflops"] * 1e9)
    read_s = read / (machine[f"{level}_read_gbps"] * 1e9)
    return {"s": max(matmul_s, read_s),
            "by": "matmul" if matmul_s >= read_s else f"{level.upper()} read",
            "matmul_s": matmul_s, "read_s": read_s, "flops": flop_count,
            "weight_bytes": footprint, "read_bytes": read}


def _layer_inputs(case):
    """The input width of each layer: the case's input, then the previous
    layer's output (both directions side by side)."""
    return [case.I] + [case.directions * case.H] * (case.layers - 1)


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


def weight_bytes(case):
    """(footprint, read): the bytes of weights `case` touches, and how many
    bytes of them one call must at least move.

    A sequence reads its input weights and biases once (the input
    projection of all steps can be one multiply) but its recurrent weights
    at every step, since each step needs the state of the previous one. The
    decoding loop reads its cell and Linear weights, and one embedding row,
    for every token.
    """
    gates, H = CELLS[case.cell].gates, case.H
    if case.kind == "decode":
        cell = gates * H * (case.I + H) + 2 * gates * H
        linear = H * case.vocab + case.vocab
        footprint = cell + linear + case.I
        return footprint * FLOAT32_BYTES, case.T * footprint * FLOAT32_BYTES
    footprint = read = 0
    for inputs in _layer_inputs(case):
        once = gates * H * inputs + 2 * gates * H  # W_ih and both biases
        recurrent = gates * H * H                  # W_hh
        footprint += case.directions * (once + recurrent)
        read += case.directions * (once + case.T * recurrent)
    factor = BACKWARD_FACTOR if case.mode == "fwd+bwd" else 1
    return footprint * FLOAT32_BYTES, read * FLOAT32_BYTES * factor
