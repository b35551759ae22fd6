"""The stack ops (csrc/core/stack_op.cpp): a whole module call in one op.
Checked bit for bit against run_stack, the Python loop over layers and
directions that the reference, the regularization options and the
layer-normalized modules still take, on the same layer ops."""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import fusedrnn
from fusedrnn import _ops
from helpers import CELLS, one_thread, random_hx  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
# mode, proj_size
KINDS = [("LSTM", 0), ("LSTM", 2), ("GRU", 0), ("RNN_TANH", 0), ("RNN_RELU", 0)]


def _module(mode, proj_size, layers, bidirectional, dropout=0.0, **kwargs):
    _, fused_class, cell_kwargs = CELLS[mode]
    if proj_size:
        kwargs["proj_size"] = proj_size
    return fused_class(3, 4, layers, bidirectional=bidirectional, dropout=dropout, dtype=F64,
                       **cell_kwargs, **kwargs)


def _run_stack_path(module):
    """`module` with the stack op turned off: its calls go through run_stack."""
    module._stack_op_fits = False
    return module


def _forward_backward(module, x, hx, seed):
    """Outputs and every gradient (input, hx, parameters) of a forward at
    `seed`, plus the next number of torch's generator (to compare how many
    numbers the forward drew)."""
    torch.manual_seed(seed)
    leaves = [x.data if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x]
    if hx is not None:
        leaves += list(hx) if isinstance(hx, tuple) else [hx]
    output, final = module(x, hx)
    after = torch.rand(1)
    data = output.data if isinstance(output, torch.nn.utils.rnn.PackedSequence) else output
    finals = list(final) if isinstance(final, tuple) else [final]
    loss = (data * torch.randn_like(data)).sum() + sum((f * f).sum() for f in finals)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    return [data, *finals, after, *grads]


def _inputs(module, packed, with_hx, seed):
    torch.manual_seed(seed)
    if packed:
        x = pack_sequence([torch.randn(n, 3, dtype=F64) for n in (5, 3, 2)],
                          enforce_sorted=False)
        x.data.requires_grad_()
    else:
        x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    batch = 3 if packed else 2
    hx = None
    if with_hx:
        hx = random_hx(module, batch)
        hx = tuple(h.requires_grad_() for h in hx) if isinstance(hx, tuple) \
            else hx.requires_grad_()
    return x, hx


@pytest.mark.parametrize("kind,layers,bidirectional", [
    (kind, layers, bidirectional)
    for kind, layers, bidirectional in itertools.product(KINDS, (1, 2, 3), (False, True))])
@pytest.mark.parametrize("packed,with_hx,training", [
    (False, False, False), (False, True, True), (True, False, True), (True, True, False)])
def test_same_bits_as_run_stack(kind, layers, bidirectional, packed, with_hx, training):
    mode, proj_size = kind
    torch.manual_seed(layers)
    # (torch.nn warns of dropout with one layer, where it does nothing.)
    dropout = 0.4 if training and layers > 1 else 0.0
    module = _module(mode, proj_size, layers, bidirectional, dropout=dropout)
    module.train(training)
    x, hx = _inputs(module, packed, with_hx, seed=1)
    got = _forward_backward(module, x, hx, seed=5)
    expected = _forward_backward(_run_stack_path(module), x, hx, seed=5)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_residual_and_no_bias_same_bits(mode):
    torch.manual_seed(0)
    module = _module(mode, 0, 3, True, dropout=0.3, residual=True, bias=False)
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    got = _forward_backward(module, x, None, seed=3)
    expected = _forward_backward(_run_stack_path(module), x, None, seed=3)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


def test_the_module_calls_the_stack_op(monkeypatch):
    """A plain module call never reaches run_stack; the options that draw
    masks in Python and the reference do."""
    module = _module("LSTM", 0, 2, True)
    x = torch.randn(3, 2, 3, dtype=F64)

    def no_run_stack(*args):
        raise AssertionError("run_stack called")

    monkeypatch.setattr(module, "_run_layers", no_run_stack)
    module(x)
    module.train(False)
    with torch.no_grad():
        module(x)
    for fallback in (dict(recurrent_dropout=0.2), dict(zoneout=0.1)):
        other = _module("LSTM", 0, 2, True, **fallback)
        monkeypatch.setattr(other, "_run_layers", no_run_stack)
        with pytest.raises(AssertionError, match="run_stack called"):
            other(x)


def test_functional_call_sees_the_given_parameters():
    torch.manual_seed(0)
    module, twin = _module("GRU", 0, 2, True), _module("GRU", 0, 2, True)
    x = torch.randn(3, 2, 3, dtype=F64)
    got, _ = torch.func.functional_call(module, dict(twin.named_parameters()), (x,))
    assert torch.equal(got, twin(x)[0])


@pytest.mark.parametrize("mode,proj_size", KINDS)
@pytest.mark.parametrize("packed", [False, True])
def test_opcheck(mode, proj_size, packed):
    module = _module(mode, proj_size, 2, True)
    x, hx = _inputs(module, packed, with_hx=True, seed=2)
    data, batch_sizes = (x.data, x.batch_sizes) if packed else (x, None)
    if packed:
        hx = None  # packed states are sorted by the module; zeros need no sorting
    states = [] if hx is None else list(hx) if isinstance(hx, tuple) else [hx]
    weights = [getattr(module, name) for name in module._flat_weights_names]
    torch.library.opcheck(_ops.STACK_OPS[mode],
                          (data.detach(), states, weights, True, 2, 0.0, False, True, False,
                           batch_sizes))


def test_weight_count_error():
    module = _module("LSTM", 0, 2, False)
    weights = [getattr(module, name) for name in module._flat_weights_names][:-1]
    with pytest.raises(RuntimeError, match="7 weights do not make 2"):
        _ops.STACK_OPS["LSTM"](torch.randn(2, 1, 3, dtype=F64), [], weights, True, 2, 0.0,
                               False, False, False, None)
