"""fusedrnn.LSTMCell, GRUCell, RNNCell against their torch.nn twins."""
import itertools

import pytest
import torch
from torch import nn

import fusedrnn
from helpers import OpRecorder, requires_gpu

CELLS = {
    "LSTMCell": (nn.LSTMCell, fusedrnn.LSTMCell, {}),
    "GRUCell": (nn.GRUCell, fusedrnn.GRUCell, {}),
    "RNNCell-tanh": (nn.RNNCell, fusedrnn.RNNCell, {"nonlinearity": "tanh"}),
    "RNNCell-relu": (nn.RNNCell, fusedrnn.RNNCell, {"nonlinearity": "relu"}),
}


def _twins(name, *args, dtype=torch.float64, **kwargs):
    nn_class, fused_class, extra = CELLS[name]
    ours = fused_class(*args, dtype=dtype, **extra, **kwargs)
    theirs = nn_class(*args, dtype=dtype, **extra, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return theirs, ours


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _hx(name, batch_shape, hidden, dtype):
    h = torch.randn(*batch_shape, hidden, dtype=dtype)
    return (h, torch.randn_like(h)) if name == "LSTMCell" else h


def _step_and_grads(cell, x, hx):
    leaves = [x] + ([] if hx is None else list(_as_tuple(hx)))
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    hx_in = None if hx is None else (tuple(leaves[1:]) if isinstance(hx, tuple) else leaves[1])
    outputs = _as_tuple(cell(leaves[0], hx_in))
    loss = sum((t * (k + 1.5)).square().sum() for k, t in enumerate(outputs))
    return outputs + torch.autograd.grad(loss, leaves + list(cell.parameters()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("batched,with_hx,bias", list(itertools.product([True, False], repeat=3)))
@pytest.mark.parametrize("name", list(CELLS))
def test_matches_nn(name, batched, with_hx, bias, dtype):
    torch.manual_seed(0)
    theirs, ours = _twins(name, 4, 6, bias=bias, dtype=dtype)
    batch_shape = (3,) if batched else ()
    x = torch.randn(*batch_shape, 4, dtype=dtype)
    hx = _hx(name, batch_shape, 6, dtype) if with_hx else None
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    for a, e in zip(_step_and_grads(ours, x, hx), _step_and_grads(theirs, x, hx)):
        torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)


@requires_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name", list(CELLS))
def test_matches_nn_on_cuda(name, dtype):
    torch.manual_seed(0)
    theirs, ours = _twins(name, 4, 6, dtype=dtype, device="cuda")
    x = torch.randn(3, 4, dtype=dtype, device="cuda")
    hx = tuple(t.cuda() for t in _as_tuple(_hx(name, (3,), 6, dtype)))
    hx = hx if name == "LSTMCell" else hx[0]
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    with OpRecorder() as recorder:
        actual = _step_and_grads(ours, x, hx)
    assert any(op.endswith("_layer_forward") for op in recorder.names)
    for a, e in zip(actual, _step_and_grads(theirs, x, hx)):
        torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck(name):
    torch.manual_seed(0)
    _, cell = _twins(name, 3, 4)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    hx = tuple(t.requires_grad_(True) for t in _as_tuple(_hx(name, (2,), 4, torch.float64)))
    names = [n for n, _ in cell.named_parameters()]
    state_count = len(hx)

    def step(x, *rest):
        states, weights = rest[:state_count], rest[state_count:]
        hx_in = states if state_count == 2 else states[0]
        return torch.func.functional_call(cell, dict(zip(names, weights)), (x, hx_in))

    assert torch.autograd.gradcheck(step, (x, *hx, *cell.parameters()))


@pytest.mark.parametrize("name", list(CELLS))
def test_runs_the_fused_op(name):
    _, cell = _twins(name, 3, 4, dtype=torch.float32)
    with OpRecorder() as recorder:
        cell(torch.randn(2, 3))
    assert any(n.startswith("fusedrnn.") for n in recorder.names)
    assert "aten.sigmoid" not in recorder.names and "aten.tanh" not in recorder.names


@pytest.mark.parametrize("name", list(CELLS))
def test_errors_like_nn(name):
    theirs, ours = _twins(name, 10, 20, dtype=torch.float32)
    lstm = name == "LSTMCell"
    kind = name.split("-")[0]

    def states(*shapes):
        tensors = tuple(torch.randn(*s) for s in shapes)
        return tensors if lstm else tensors[0]

    cases = [
        ((torch.randn(3, 11),), RuntimeError,
         "input has inconsistent input_size: got 11 expected 10"),
        ((torch.randn(3, 10), states((5, 20), (3, 20))), RuntimeError,
         "Input batch size 3 doesn't match hidden0 batch size 5"),
        ((torch.randn(3, 10), states((3, 21), (3, 20))), RuntimeError,
         "hidden0 has inconsistent hidden_size: got 21, expected 20"),
        ((torch.randn(3, 10, 1),), ValueError,
         f"{kind}: Expected input to be 1D or 2D, got 3D instead"),
        ((torch.randn(10), states((1, 1, 1, 20), (20,))), ValueError,
         f"{kind}: Expected {'hx[0]' if lstm else 'hidden'} to be 1D or 2D, got 4D instead"),
    ]
    if lstm:
        cases.append(((torch.randn(3, 10), states((3, 20), (3, 21))), RuntimeError,
                      "hidden1 has inconsistent hidden_size: got 21, expected 20"))
    cases.append(((torch.randn(3, 10, dtype=torch.float64),), RuntimeError,
                  "mat1 and mat2 must have the same dtype, but got Double and Float"))
    for args, error, message in cases:
        for cell in (theirs, ours):
            with pytest.raises(error) as info:
                cell(*args)
            assert str(info.value) == message


def test_compiled_decoding_loop():
    torch._dynamo.reset()
    torch.manual_seed(0)
    cell = fusedrnn.LSTMCell(4, 4)

    def decode(x, steps):
        h = c = torch.zeros(x.size(0), 4)
        for _ in range(steps):
            h, c = cell(x, (h, c))
            x = h
        return h

    x = torch.randn(2, 4)
    compiled = torch.compile(decode, fullgraph=True)
    torch.testing.assert_close(compiled(x, 3), decode(x, 3))
    torch._dynamo.reset()
