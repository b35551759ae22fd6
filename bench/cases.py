"""What gets measured: sizes, the default and quick grids, one Case each.

A case is one (cell, size, input kind, dtype, device, mode). Input kinds:
"dense" (a (T, B, I) tensor), "packed" (a PackedSequence with lengths drawn
uniformly from [T/2, T]) and "proj" (dense input, proj_size = H/2).
"""
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from .cells import CELLS


class Shape(NamedTuple):
    T: int  # sequence length
    B: int  # batch
    I: int  # input features
    H: int  # hidden size


SIZES = {
    "small": Shape(50, 8, 128, 128),
    "medium": Shape(100, 16, 256, 256),
    "fastrnns": Shape(100, 64, 512, 512),  # the size of PyTorch's own fastrnns benchmark
    "large": Shape(100, 64, 1024, 1024),
    "stream1": Shape(1, 1, 256, 256),      # batch-1 latency: one step...
    "stream100": Shape(100, 1, 256, 256),  # ...and a whole sequence
    "long": Shape(1024, 16, 768, 768),
}
GPU_ONLY_SIZES = {"long"}  # too slow for a CPU run of the default grid

INPUTS = ("dense", "packed", "proj")
MODES = ("fwd", "fwd+bwd")
DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_size(text):
    """A size name from SIZES or a custom "T,B,I,H": returns (name, Shape)."""
    if text in SIZES:
        return text, SIZES[text]
    try:
        shape = Shape(*(int(part) for part in text.split(",")))
    except (TypeError, ValueError):
        raise ValueError(f"size {text!r} is neither one of {', '.join(SIZES)} "
                         "nor T,B,I,H (four integers)") from None
    if min(shape) < 1:
        raise ValueError(f"size {text!r}: every dimension must be at least 1")
    return text, shape


@dataclass(frozen=True)
class Case:
    cell: str
    size: str
    shape: Shape
    input: str
    dtype: str
    device: str
    mode: str

    @property
    def id(self):
        """Stable key of the case, used to match cases across runs."""
        return "/".join((self.cell, self.size, self.input, self.dtype, self.device, self.mode))

    @property
    def proj_size(self):
        return self.shape.H // 2 if self.input == "proj" else 0


def grid(cells, devices, quick=False, sizes=None, dtypes=None, inputs=None, modes=None):
    """The cases to run, in run order.

    Without `sizes`, the default (or quick) grid filtered by the other
    arguments. With `sizes` (names or T,B,I,H strings), exactly those sizes,
    each with every input kind in `dtypes` (float32 if not given).
    """
    rows = []  # (device, size name, shape, input kind, dtype)
    for device in devices:
        if sizes is None:
            plan = _quick_plan() if quick else _default_plan(device)
        else:
            plan = [(*parse_size(size), kind, dtype)
                    for size in sizes for dtype in (dtypes or ["float32"]) for kind in INPUTS]
        rows += [(device, *row) for row in plan]

    return [Case(cell, name, shape, kind, dtype, device, mode)
            for cell in cells
            for device, name, shape, kind, dtype in rows
            if (dtypes is None or dtype in dtypes) and (inputs is None or kind in inputs)
            and (kind != "proj" or CELLS[cell].has_proj)
            and (sizes is not None or CELLS[cell].grid_sizes is None
                 or name in CELLS[cell].grid_sizes)
            for mode in MODES if modes is None or mode in modes]


def _default_plan(device):
    sizes = [name for name in SIZES if device != "cpu" or name not in GPU_ONLY_SIZES]
    plan = [(name, SIZES[name], "dense", "float32") for name in sizes]
    plan.append(("medium", SIZES["medium"], "dense", "float64"))
    plan += [(name, SIZES[name], kind, "float32")
             for name in ("medium", "fastrnns") for kind in ("packed", "proj")]
    return plan


def _quick_plan():
    """Small sizes only: the whole suite in under a minute on an idle 2-core machine (CI)."""
    plan = [(name, SIZES[name], "dense", "float32") for name in ("small", "stream1", "stream100")]
    plan += [("small", SIZES["small"], kind, "float32") for kind in ("packed", "proj")]
    return plan


def flops(case, tokens):
    """Forward FLOPs of one layer-direction over `tokens` time-step rows
    (T*B dense, the sum of the lengths packed); x3 with the backward.

    Each step multiplies the input (I) and the recurrent state (P, the
    projection size or H) by a gates*H-row weight; a projection adds an
    H -> P matmul. Elementwise work is not counted.
    """
    _, _, inputs, hidden = case.shape
    recurrent = case.proj_size or hidden
    forward = 2 * tokens * CELLS[case.cell].gates * hidden * (inputs + recurrent)
    if case.proj_size:
        forward += 2 * tokens * hidden * case.proj_size
    return forward * (3 if case.mode == "fwd+bwd" else 1)


def make_input(case, generator):
    """The module input of `case` and the tensor to differentiate against.

    Returns (input, leaf, tokens): `leaf` is the dense tensor or the packed
    data; it requires grad in fwd+bwd mode. `tokens` is the number of
    time-step rows the cell processes.
    """
    T, B, I, _ = case.shape
    # Drawn on the CPU so that every device gets the same numbers.
    x = torch.randn(T, B, I, generator=generator, dtype=DTYPES[case.dtype]).to(case.device)
    grad = case.mode == "fwd+bwd"
    if case.input != "packed":
        leaf = x.requires_grad_(grad)
        return leaf, leaf, T * B

    lengths = torch.randint((T + 1) // 2, T + 1, (B,), generator=generator)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    # A fresh leaf as the packed data, so that the backward stops there and
    # does not time the unpacking of the padded tensor.
    leaf = packed.data.detach().requires_grad_(grad)
    packed = PackedSequence(leaf, packed.batch_sizes, packed.sorted_indices,
                            packed.unsorted_indices)
    return packed, leaf, int(lengths.sum())
