"""Regularization inside the recurrence: recurrent dropout, zoneout and
weight drop, as module arguments of every fusedrnn layer (off by default).

The masks are drawn here (random_mask: a seed from torch's generator), per
forward, for each (layer, direction) in order, and handed to the layer
function, a kernel or fusedrnn.reference alike: the same seed gives the
same masks, and so the same result, on either. The masks are bool tensors (a byte per unit), which
is also what the backward keeps. reference.Regularization says what each
one does.
"""
from typing import NamedTuple

import torch

from . import _C
from .reference import Regularization


class Settings(NamedTuple):
    """A module's probabilities; all 0 is torch.nn's layer."""
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    cell_zoneout: float = 0.0
    weight_drop: float = 0.0

    def any(self):
        return any(p > 0 for p in self)


def check_settings(settings, has_cell_state):
    """ValueError for a probability out of range, or cell zoneout without a cell state."""
    for name, p in settings._asdict().items():
        # A dropout of 1 would scale by 1 / 0; a zoneout of 1 freezes the state.
        top_allowed = name in ("zoneout", "cell_zoneout")
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not (
                0 <= p <= 1 if top_allowed else 0 <= p < 1):
            bound = "between 0 and 1" if top_allowed else "at least 0 and below 1"
            raise ValueError(f"{name} must be a number {bound}, got {p!r}")
    if settings.cell_zoneout > 0 and not has_cell_state:
        raise ValueError("cell_zoneout acts on the LSTM's cell state; GRU and RNN have none "
                         "(use zoneout for h)")


def draw(settings, training, x, batch_sizes, out_size, hidden, has_cell_state):
    """The Regularization of one layer in one direction, or None when nothing
    acts. x: the layer's input, (T, B, I) or packed (rows, I)."""
    if not settings.any():
        return None
    rows = x.shape[:-1]
    batch = x.shape[1] if batch_sizes is None else int(batch_sizes[0])
    if not training:
        cell_zoneout = settings.cell_zoneout if has_cell_state else 0.0
        if settings.zoneout == 0 and cell_zoneout == 0:
            return None
        return Regularization(zoneout=settings.zoneout, cell_zoneout=cell_zoneout)

    def mask(shape, p_true):
        return random_mask(shape, p_true, x.device)

    reg = Regularization()
    if settings.recurrent_dropout > 0:
        reg = reg._replace(recurrent_mask=mask((batch, out_size), 1 - settings.recurrent_dropout),
                           recurrent_dropout=settings.recurrent_dropout)
    if settings.zoneout > 0:
        reg = reg._replace(zoneout_mask=mask((*rows, out_size), settings.zoneout),
                           zoneout=settings.zoneout)
    if settings.cell_zoneout > 0 and has_cell_state:
        reg = reg._replace(cell_zoneout_mask=mask((*rows, hidden), settings.cell_zoneout),
                           cell_zoneout=settings.cell_zoneout)
    if reg == Regularization():
        return None
    return reg


# Devices with a random_mask kernel; elsewhere torch's bernoulli_ draws the
# masks (reproducible under a seed too, but other bits).
_MASK_KERNEL_DEVICES = ("cpu", "cuda") if _C.build_info()["cuda"] else ("cpu",)


def random_mask(shape, p_true, device):
    """A bool mask of `shape`, True with probability p_true. Its seed comes
    from torch's generator of `device` (torch.manual_seed reproduces it);
    the units are then counter-based random numbers (csrc/core/random_mask.h),
    a few integer operations each, on every core, instead of one call each
    into the generator."""
    device = torch.device(device)
    if device.type not in _MASK_KERNEL_DEVICES:
        return torch.empty(shape, dtype=torch.bool, device=device).bernoulli_(p_true)
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64, device=device)
    return torch.ops.fusedrnn.random_mask(seed, list(shape), float(p_true))


def drop_weight(w_hh, p, training):
    """Weight drop (DropConnect on W_hh, as AWD-LSTM): in training each
    element of W_hh is zeroed with probability p and the rest scaled by
    1 / (1 - p), one mask per forward; W_hh itself in eval."""
    if not training or p == 0:
        return w_hh
    keep = random_mask(w_hh.shape, 1 - p, w_hh.device)
    # torch.where keeps only the bool mask for its backward.
    return torch.where(keep, w_hh * (1 / (1 - p)), 0.0)
