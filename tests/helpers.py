"""Shared helpers for the LSTM tests: twin modules, random inputs, grads."""
import torch
from torch import nn

import fusedrnn


def twin_lstms(*args, dtype=torch.float64, **kwargs):
    """An nn.LSTM and a fusedrnn.LSTM with the same fresh random weights."""
    ours = fusedrnn.LSTM(*args, dtype=dtype, **kwargs)
    theirs = nn.LSTM(*args, dtype=dtype, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return theirs, ours


def random_hx(lstm, batch, dtype=torch.float64, unbatched=False):
    """Random (h0, c0) of the shapes `lstm` expects."""
    layers = lstm.num_layers * (2 if lstm.bidirectional else 1)
    out_size = lstm.proj_size or lstm.hidden_size
    shape_h, shape_c = (layers, batch, out_size), (layers, batch, lstm.hidden_size)
    if unbatched:
        shape_h, shape_c = (layers, out_size), (layers, lstm.hidden_size)
    return (torch.randn(shape_h, dtype=dtype), torch.randn(shape_c, dtype=dtype))


def run_and_grad(module, x, hx=None):
    """Forward, then gradients of a random weighting of every output with
    respect to the input, hx and every parameter. The weighting comes from a
    fixed seed so that two twins get the same one."""
    leaves = [x] + ([] if hx is None else list(hx))
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    x_in = leaves[0]
    hx_in = None if hx is None else tuple(leaves[1:])
    output, (h_n, c_n) = module(x_in, hx_in)
    generator = torch.Generator().manual_seed(1234)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in (output, h_n, c_n))
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
    return (output, h_n, c_n), grads
