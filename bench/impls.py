"""The implementations compared on every case, and the step each one times.

Every implementation is built from the same torch.nn module (same weights):
  torch              torch.nn as shipped: oneDNN on CPU, cuDNN on GPU
  torch-native       torch.nn with oneDNN / cuDNN switched off (ATen's own loop)
  fusedrnn           the fusedrnn module (its kernel, or its fallback)
  reference          fusedrnn with the kernel bypassed: the pure-PyTorch reference
  reference+compile  that reference under torch.compile (opt-in: compiling
                     unrolls the time loop and takes minutes per case)
"""
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.utils.rnn import PackedSequence

from .cells import fused_twin, reference_twin


@contextmanager
def _vendor_library_off(device):
    """torch.nn without oneDNN (CPU) or cuDNN (GPU)."""
    if device == "cpu":
        # mkldnn.flags() also resets oneDNN's TF32 switch, which makes torch
        # warn that TF32 needs an Intel GPU; the warning says nothing here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=False):
                yield
    else:
        with torch.backends.cudnn.flags(enabled=False):
            yield


def _compiled_reference(module):
    # Forget earlier compilations: every case compiles a new module, and
    # dynamo stops compiling a function after a few recompilations.
    torch.compiler.reset()
    return torch.compile(reference_twin(module))


@dataclass(frozen=True)
class Impl:
    name: str
    build: Callable    # torch.nn module -> module to run
    context: Callable  # device -> context manager its building and timing run in


IMPLS = {impl.name: impl for impl in (
    Impl("torch", lambda module: module, lambda device: nullcontext()),
    Impl("torch-native", lambda module: module, _vendor_library_off),
    Impl("fusedrnn", fused_twin, lambda device: nullcontext()),
    Impl("reference", reference_twin, lambda device: nullcontext()),
    Impl("reference+compile", _compiled_reference, lambda device: nullcontext()),
)}
DEFAULT_IMPLS = ("torch", "torch-native", "fusedrnn", "reference")


def make_step(module, input, leaf, mode, output_size):
    """The function that the timer calls: one forward, or forward + backward.

    Returns (step, leaves): `leaves` are the tensors the backward
    differentiates against (the input and the parameters).
    """
    if mode == "fwd":
        def step():
            with torch.no_grad():
                module(input)
        return step, [leaf]

    leaves = [leaf, *module.parameters()]
    # The output has the leading dims of the input, (T, B) or packed (N,);
    # its gradient is drawn once, outside the timed region.
    grad_output = torch.randn(*leaf.shape[:-1], output_size, dtype=leaf.dtype, device=leaf.device)

    def step():
        output, _ = module(input)
        if isinstance(output, PackedSequence):
            output = output.data
        # autograd.grad rather than backward(): nothing accumulates in .grad
        # across the thousands of timed calls.
        torch.autograd.grad(output, leaves, grad_output)
    return step, leaves
