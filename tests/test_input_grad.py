"""The backward skips the input's gradient when the input needs none (the
first layer over raw features): the backward op is told so, and the
parameters' gradients do not change."""
import pytest
import torch

from helpers import OpRecorder, twin_modules
from op_inputs import lstm_layer_args


def _backward_calls(module, x):
    with OpRecorder() as recorder:
        output, _ = module(x)
        output.sum().backward()
    return [args for name, args in recorder.calls if name.endswith("_layer_backward")]


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_input_without_grad_skips_its_gradient(mode):
    torch.manual_seed(0)
    _, ours = twin_modules(mode, 4, 5, 2, dtype=torch.float32)
    x = torch.randn(6, 3, 4)
    calls = _backward_calls(ours, x)
    # Layer 1's input is layer 0's output, which needs a gradient; layer 0's
    # input is data. (The dispatcher drops an argument equal to its default,
    # input_grad=True.)
    input_grad = [args[14] if len(args) > 14 else True for args in reversed(calls)]
    assert input_grad == [False, True]
    without = [p.grad.clone() for p in ours.parameters()]
    ours.zero_grad()
    _backward_calls(ours, x.clone().requires_grad_(True))
    for a, e in zip(without, (p.grad for p in ours.parameters())):
        torch.testing.assert_close(a, e, atol=0, rtol=0)


def test_opcheck_backward_without_input_grad():
    torch.manual_seed(0)
    args = lstm_layer_args(torch.float32, packed=True, proj=2, B=4, requires_grad=False)
    y, h_n, c_n, saved, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, False)
    x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = args
    backward = torch.ops.fusedrnn.lstm_layer_backward.default
    grads = backward(torch.randn_like(y), None, None, x, h0, c0, w_ih, w_hh, w_hr,
                     batch_sizes, y, saved, cells, False, False)
    assert grads[0].numel() == 0
    full = backward(torch.randn_like(y), None, None, x, h0, c0, w_ih, w_hh, w_hr,
                    batch_sizes, y, saved, cells, False, True)
    assert full[0].shape == x.shape
    torch.library.opcheck(backward, (torch.randn_like(y), None, None, x, h0, c0, w_ih, w_hh,
                                     w_hr, batch_sizes, y, saved, cells, False, False))
