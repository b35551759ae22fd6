"""Shared helpers for the module tests: twin modules, random inputs, grads."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fusedrnn

# The CUDA cases of every test file: they need a GPU and a CUDA build.
@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny cases: each op at these
    sizes would otherwise wake the second core, and on the shared 2-core
    test machine, with that core busy, F.layer_norm's parallel region cost
    about 12 ms a call at 2 threads against 50 us at 1 (torch 2.14). Use
    with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


requires_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and fusedrnn.build_info()["cuda"]),
    reason="needs a GPU and fusedrnn built with CUDA")

# mode -> (nn class, fusedrnn class, constructor kwargs)
CELLS = {
    "LSTM": (nn.LSTM, fusedrnn.LSTM, {}),
    "GRU": (nn.GRU, fusedrnn.GRU, {}),
    "RNN_TANH": (nn.RNN, fusedrnn.RNN, {"nonlinearity": "tanh"}),
    "RNN_RELU": (nn.RNN, fusedrnn.RNN, {"nonlinearity": "relu"}),
}


def twin_modules(mode, *args, dtype=torch.float64, **kwargs):
    """An nn module and its fusedrnn twin with the same fresh random weights."""
    nn_class, fused_class, cell_kwargs = CELLS[mode]
    ours = fused_class(*args, dtype=dtype, **cell_kwargs, **kwargs)
    theirs = nn_class(*args, dtype=dtype, **cell_kwargs, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return theirs, ours


def twin_lstms(*args, dtype=torch.float64, **kwargs):
    return twin_modules("LSTM", *args, dtype=dtype, **kwargs)


def random_hx(module, batch, dtype=torch.float64, unbatched=False):
    """Random initial states of the shapes `module` expects: (h0, c0) for an
    LSTM, h0 for the others."""
    layers = module.num_layers * (2 if module.bidirectional else 1)
    leading = (layers,) if unbatched else (layers, batch)
    h0 = torch.randn(*leading, module.proj_size or module.hidden_size, dtype=dtype)
    if module.mode != "LSTM":
        return h0
    return h0, torch.randn(*leading, module.hidden_size, dtype=dtype)


def _states(hx):
    return list(hx) if isinstance(hx, tuple) else [hx]


def run_and_grad(module, x, hx=None):
    """Forward, then gradients of a random weighting of every output with
    respect to the input, hx and every parameter. The weighting comes from a
    fixed seed so that two twins get the same one. Returns (outputs, grads)
    with outputs = (output, *final states)."""
    leaves = [x] + ([] if hx is None else _states(hx))
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    hx_in = None
    if hx is not None:
        hx_in = tuple(leaves[1:]) if isinstance(hx, tuple) else leaves[1]
    output, final = module(leaves[0], hx_in)
    outputs = (output, *_states(final))
    generator = torch.Generator().manual_seed(1234)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in outputs)
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
    return outputs, grads


class OpRecorder(TorchDispatchMode):
    """Records every op dispatched while active, by name (`names`) and with
    its arguments (`calls`): shows whether a fused op (fusedrnn.*) or the
    reference's ATen ops ran, and on what."""

    def __init__(self):
        super().__init__()
        self.names = []
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        self.calls.append((self.names[-1], args))
        return func(*args, **(kwargs or {}))
