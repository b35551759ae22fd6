"""GRU and Elman RNN: the ops (gradcheck, opcheck) and the nn contract of
their modules (parity is in test_parity.py)."""
import pytest
import torch
from torch import nn

import fusedrnn
from helpers import random_hx, run_and_grad, twin_modules

SINGLE_STATE_MODES = ["GRU", "RNN_TANH", "RNN_RELU"]


def _op_args(mode, packed=False, bias=True, T=4, B=3, I=2, H=3, requires_grad=True):
    """(tensors, trailing flags) for the mode's forward op."""
    gates = 3 if mode == "GRU" else 1
    make = dict(dtype=torch.float64, requires_grad=requires_grad)
    batch_sizes = torch.tensor([3, 3, 2, 1][:T]) if packed else None
    x = torch.randn(int(batch_sizes.sum()), I, **make) if packed else torch.randn(T, B, I, **make)
    tensors = (x, torch.randn(B, H, **make), torch.randn(gates * H, I, **make),
               torch.randn(gates * H, H, **make),
               torch.randn(gates * H, **make) if bias else None,
               torch.randn(gates * H, **make) if bias else None)
    return tensors, batch_sizes


def _op(mode, direction):
    return getattr(torch.ops.fusedrnn, f"{mode.lower()}_layer_{direction}").default


def _forward(mode, tensors, batch_sizes, reverse):
    """The forward op on (x, h0, w_ih, w_hh, b_ih, b_hh): no c0, no projection."""
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors
    return _op(mode, "forward")(x, h0, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes,
                                reverse)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mode", SINGLE_STATE_MODES)
def test_op_gradcheck(mode, reverse, packed):
    torch.manual_seed(0)
    tensors, batch_sizes = _op_args(mode, packed)

    def layer(*tensors):
        output, h_n, _, _, _ = _forward(mode, tensors, batch_sizes, reverse)
        return output, h_n

    assert torch.autograd.gradcheck(layer, tensors)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("mode", SINGLE_STATE_MODES)
def test_opcheck(mode, packed, bias):
    torch.manual_seed(0)
    tensors, batch_sizes = _op_args(mode, packed, bias, requires_grad=True)
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors
    torch.library.opcheck(_op(mode, "forward"),
                          (x, h0, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, True))
    plain = tuple(t.detach() if t is not None else None for t in tensors)
    output, h_n, _, saved, _ = _forward(mode, plain, batch_sizes, True)
    x, h0, w_ih, w_hh = plain[:4]
    torch.library.opcheck(_op(mode, "backward"),
                          (torch.randn_like(output), torch.randn_like(h_n), None, x, h0, None,
                           w_ih, w_hh, None, batch_sizes, output, saved, None, True))


@pytest.mark.parametrize("mode", SINGLE_STATE_MODES)
def test_module_gradcheck(mode):
    torch.manual_seed(0)
    _, module = twin_modules(mode, 2, 3, 2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = random_hx(module, 2).requires_grad_(True)
    names = [name for name, _ in module.named_parameters()]

    def run(x, h0, *weights):
        return torch.func.functional_call(module, dict(zip(names, weights)), (x, h0))

    assert torch.autograd.gradcheck(run, (x, h0, *module.parameters()))


@pytest.mark.parametrize("mode", SINGLE_STATE_MODES)
def test_parameters_and_state_dict_both_ways(mode):
    theirs, ours = twin_modules(mode, 10, 20, 2, bidirectional=True, bias=False,
                                dtype=torch.float32)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
           [(n, p.shape) for n, p in theirs.named_parameters()]
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.extra_repr() == theirs.extra_repr() and ours.mode == theirs.mode


def _raises_like_nn(make_call, error, message):
    for fused in (False, True):
        with pytest.raises(error) as info:
            make_call(fused)
        assert str(info.value) == message, fused


def test_constructor_errors_like_nn():
    def rnn(*args, **kwargs):
        return lambda fused: (fusedrnn.RNN if fused else nn.RNN)(*args, **kwargs)

    def gru(*args, **kwargs):
        return lambda fused: (fusedrnn.GRU if fused else nn.GRU)(*args, **kwargs)

    _raises_like_nn(rnn(10, 20, 1, "gelu"), ValueError,
                    "Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'.")
    _raises_like_nn(rnn(10, 20, nonlinearity="gelu"), ValueError,
                    "Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'.")
    for make in (rnn, gru):
        _raises_like_nn(make(10, 20, proj_size=5), ValueError,
                        "proj_size argument is only supported for LSTM, not RNN or GRU")
        _raises_like_nn(make(10, 0), ValueError, "hidden_size must be greater than zero")
    assert fusedrnn.RNN(10, 20, 2, "relu").nonlinearity == "relu"


@pytest.mark.parametrize("mode", SINGLE_STATE_MODES)
def test_forward_errors_like_nn(mode):
    theirs, ours = twin_modules(mode, 10, 20, dtype=torch.float32)
    name = "GRU" if mode == "GRU" else "RNN"
    tensor = "" if mode == "GRU" else " tensor"
    cases = [
        ((torch.randn(5, 3, 10, 1),), ValueError,
         f"{name}: Expected input to be 2D or 3D, got 4D{tensor} instead"),
        ((torch.randn(5, 3, 11),), RuntimeError,
         "input.size(-1) must be equal to input_size. Expected 10, got 11"),
        ((torch.randn(5, 3, 10), torch.randn(3, 20)), RuntimeError,
         "For batched 3-D input, hx should also be 3-D but got 2-D tensor"),
        ((torch.randn(5, 10), torch.randn(1, 1, 20)), RuntimeError,
         "For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"),
        ((torch.randn(5, 3, 10), torch.randn(1, 4, 20)), RuntimeError,
         "Expected hidden size (1, 3, 20), got [1, 4, 20]"),
        ((torch.randn(0, 3, 10),), RuntimeError,
         "Expected sequence length to be larger than 0 in RNN"),
    ]
    for args, error, message in cases:
        for module in (theirs, ours):
            with pytest.raises(error) as info:
                module(*args)
            assert str(info.value) == message


@pytest.mark.parametrize("mode", SINGLE_STATE_MODES)
def test_unbatched_and_batch_zero_like_nn(mode):
    torch.manual_seed(0)
    theirs, ours = twin_modules(mode, 4, 5, 2, bidirectional=True)
    x = torch.randn(6, 4, dtype=torch.float64)
    hx = random_hx(ours, 1, unbatched=True)
    expected, expected_grads = run_and_grad(theirs, x, hx)
    actual, actual_grads = run_and_grad(ours, x, hx)
    for a, e in zip(actual + actual_grads, expected + expected_grads):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)
    empty = torch.randn(3, 0, 4, dtype=torch.float64)
    assert ours(empty)[0].shape == theirs(empty)[0].shape


def test_compile_fullgraph_gru_and_rnn():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(fusedrnn.GRU(4, 5, batch_first=True))
    rnn = fusedrnn.RNN(5, 3, 1, "relu", batch_first=True)

    def run(x):
        y, _ = model[0](x)
        return rnn(y)[0].sum()

    x = torch.randn(2, 6, 4, requires_grad=True)
    compiled = torch.compile(run, fullgraph=True)
    torch.testing.assert_close(compiled(x), run(x), atol=1e-5, rtol=1e-5)
    (expected,) = torch.autograd.grad(run(x), x)
    (actual,) = torch.autograd.grad(compiled(x), x)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()
