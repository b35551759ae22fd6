"""Double backward (create_graph=True) through the fused ops: gradgradcheck
in float64 on the layers and cells, and a gradient penalty and a
Hessian-vector product equal to those of fusedrnn.reference."""
import pytest
import torch
from torch import nn

import fusedrnn
from helpers import CELLS, OpRecorder, twin_modules
from op_inputs import lstm_layer_args

F64 = torch.float64

# (mode, constructor kwargs, packed input): small, since gradgradcheck
# differentiates numerically twice over.
LAYER_CASES = [(mode, kwargs, packed)
               for mode in CELLS
               for kwargs, packed in [(dict(), False),
                                      (dict(num_layers=2, bidirectional=True), False),
                                      (dict(bidirectional=True), True),
                                      (dict(bias=False), False)]]
LAYER_CASES += [("LSTM", dict(proj_size=2), False),
                ("LSTM", dict(proj_size=2, num_layers=2, bidirectional=True), True)]


def _case_id(case):
    mode, kwargs, packed = case
    parts = [mode] + [f"{k}={v}" for k, v in kwargs.items()] + (["packed"] if packed else [])
    return "-".join(parts)


def _functional(module, packed):
    """The module as a function of (x, h0[, c0], *parameters) returning every
    output tensor, for gradcheck. Packed input is packed inside from a
    padded x with lengths 3, 1, 2 (unsorted, so the permutations run too)."""
    names = [name for name, _ in module.named_parameters()]
    lstm = module.mode == "LSTM"

    def run(x, *rest):
        states, weights = (rest[:2], rest[2:]) if lstm else (rest[:1], rest[1:])
        hx = tuple(states) if lstm else states[0]
        if packed:
            x = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([3, 1, 2]),
                                                  enforce_sorted=False)
        output, final = torch.func.functional_call(module, dict(zip(names, weights)),
                                                   (x, hx))
        output = output.data if packed else output
        return (output, *final) if lstm else (output, final)

    return run


def _inputs(module, T=3, B=3):
    torch.manual_seed(1)
    layers = module.num_layers * (2 if module.bidirectional else 1)
    make = dict(dtype=F64, requires_grad=True)
    tensors = [torch.randn(T, B, module.input_size, **make),
               torch.randn(layers, B, module.proj_size or module.hidden_size, **make)]
    if module.mode == "LSTM":
        tensors.append(torch.randn(layers, B, module.hidden_size, **make))
    return tensors + [p.detach().clone().requires_grad_(True) for p in module.parameters()]


@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
def test_layer_gradgradcheck(case):
    mode, kwargs, packed = case
    torch.manual_seed(0)
    hidden = 3 if "proj_size" in kwargs else 2  # proj_size < hidden_size
    _, module = twin_modules(mode, 2, hidden, **kwargs)
    # Two layers have a few hundred parameters: fast_mode checks a random
    # projection of the second derivatives instead of every entry, which
    # takes many times longer.
    fast = module.num_layers > 1
    assert torch.autograd.gradgradcheck(_functional(module, packed), tuple(_inputs(module)),
                                        fast_mode=fast)


@pytest.mark.parametrize("cell_class,kwargs", [
    (fusedrnn.LSTMCell, {}), (fusedrnn.GRUCell, {}),
    (fusedrnn.RNNCell, {"nonlinearity": "tanh"}), (fusedrnn.RNNCell, {"nonlinearity": "relu"}),
    (fusedrnn.LSTMCell, {"bias": False})],
    ids=["LSTMCell", "GRUCell", "RNNCell-tanh", "RNNCell-relu", "LSTMCell-nobias"])
def test_cell_gradgradcheck(cell_class, kwargs):
    torch.manual_seed(0)
    cell = cell_class(2, 3, dtype=F64, **kwargs)
    names = [name for name, _ in cell.named_parameters()]
    lstm = cell_class is fusedrnn.LSTMCell
    make = dict(dtype=F64, requires_grad=True)
    states = [torch.randn(2, 3, **make) for _ in range(2 if lstm else 1)]

    def step(x, *rest):
        hx, weights = (tuple(rest[:2]), rest[2:]) if lstm else (rest[0], rest[1:])
        return torch.func.functional_call(cell, dict(zip(names, weights)), (x, hx))

    params = [p.detach().clone().requires_grad_(True) for p in cell.parameters()]
    assert torch.autograd.gradgradcheck(step, (torch.randn(2, 2, **make), *states, *params))


def _fused_and_reference(mode, **kwargs):
    """A fusedrnn module and a copy of it that always runs the reference."""
    torch.manual_seed(0)
    _, fused = twin_modules(mode, 3, 4, **kwargs)
    reference = twin_modules(mode, 3, 4, **kwargs)[1]
    reference.load_state_dict(fused.state_dict())
    reference._force_reference = True
    return fused, reference


def _gradient_penalty_grads(module, x):
    """One WGAN-GP-style step: the gradient with respect to the parameters
    of ||d out / d x||^2 (per sample, minus 1, squared, averaged)."""
    x = x.detach().clone().requires_grad_(True)
    output, _ = module(x)
    score = output.sum(dim=(1, 2))  # one "critic score" per sample (batch_first)
    (grad_x,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    penalty = (grad_x.flatten(1).norm(dim=1) - 1).square().mean()
    return torch.autograd.grad(penalty, list(module.parameters()))


PENALTY_CASES = [("LSTM", {}), ("GRU", {}), ("RNN_TANH", {}), ("RNN_RELU", {}),
                 ("LSTM", dict(proj_size=2, num_layers=2, bidirectional=True)),
                 ("GRU", dict(num_layers=2, bidirectional=True, bias=False))]


@pytest.mark.parametrize("mode,kwargs", PENALTY_CASES,
                         ids=[f"{m}-{len(k)}" for m, k in PENALTY_CASES])
def test_gradient_penalty_equals_the_reference(mode, kwargs):
    fused, reference = _fused_and_reference(mode, batch_first=True, **kwargs)
    x = torch.randn(3, 5, 3, dtype=F64)
    for ours, theirs in zip(_gradient_penalty_grads(fused, x),
                            _gradient_penalty_grads(reference, x), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


def _hessian_vector_product(module, x, vectors):
    params = list(module.parameters())
    output, final = module(x)
    h_n = final[0] if isinstance(final, tuple) else final
    loss = output.data.square().sum() + h_n.sin().sum()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    return torch.autograd.grad(dot, params)


@pytest.mark.parametrize("mode", list(CELLS))
def test_hessian_vector_product_equals_the_reference(mode):
    kwargs = dict(num_layers=2, bidirectional=True)
    if mode == "LSTM":
        kwargs["proj_size"] = 2
    fused, reference = _fused_and_reference(mode, **kwargs)
    x = nn.utils.rnn.pack_sequence([torch.randn(4, 3, dtype=F64), torch.randn(2, 3, dtype=F64)])
    vectors = [torch.randn_like(p) for p in fused.parameters()]
    for ours, theirs in zip(_hessian_vector_product(fused, x, vectors),
                            _hessian_vector_product(reference, x, vectors), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


def test_ordinary_backward_keeps_the_kernel_and_create_graph_the_reference():
    lstm = fusedrnn.LSTM(3, 4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    with OpRecorder() as plain:
        lstm(x)[0].sum().backward()
    assert plain.names.count("fusedrnn.lstm_layer_backward") == 1
    assert "aten.sigmoid" not in plain.names

    with OpRecorder() as double:
        torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)
    assert "fusedrnn.lstm_layer_backward" not in double.names
    assert "aten.sigmoid" in double.names  # the reference's gates


def test_only_some_outputs_reach_the_loss():
    """Outputs without a gradient (None in the backward) are left out of the
    recomputed graph, as the kernel backward leaves them out."""
    fused, reference = _fused_and_reference("LSTM")
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    results = []
    for module in (fused, reference):
        _, (h_n, _) = module(x)
        (grad_x,) = torch.autograd.grad(h_n.sum(), x, create_graph=True)
        results.append(torch.autograd.grad(grad_x.square().sum(), list(module.parameters())))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_double_backward_runs_in_the_input_dtype(dtype):
    torch.manual_seed(0)
    ours = fusedrnn.LSTM(3, 4, dtype=dtype)
    wide = fusedrnn.LSTM(3, 4, dtype=F64)
    wide.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, 3, dtype=dtype)
    ours_grads = _gradient_penalty_grads(ours, x)
    wide_grads = _gradient_penalty_grads(wide, x.to(F64))
    for a, e in zip(ours_grads, wide_grads, strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(a.to(F64), e, atol=0.1, rtol=0.1)


def test_differentiating_the_backward_op_itself_is_a_clear_error():
    torch.manual_seed(0)
    *tensors, batch_sizes = lstm_layer_args()
    x, h0, c0, w_ih, w_hh, _, _, w_hr = tensors
    with torch.no_grad():
        y, h_n, c_n, saved, cells = torch.ops.fusedrnn.lstm_layer_forward(*tensors, batch_sizes,
                                                                           False)
    grad_y = torch.randn_like(y, requires_grad=True)
    grads = torch.ops.fusedrnn.lstm_layer_backward(grad_y, None, None, x, h0, c0, w_ih, w_hh,
                                                   w_hr, batch_sizes, y, saved, cells, False)
    with pytest.raises(RuntimeError, match="lstm_layer_backward is not differentiable"):
        grads[0].sum().backward()


def test_an_input_computed_from_the_weights():
    """The recomputed graph gives each input only its gradient through this
    layer, even where the input itself depends on the weights: the outer
    graph adds the path through the input once."""
    fused, reference = _fused_and_reference("GRU")
    base = torch.randn(4, 2, 3, dtype=F64)
    results = []
    for module in (fused, reference):
        params = list(module.parameters())
        x = base * module.weight_ih_l0[0]  # the input depends on a weight
        output, _ = module(x)
        grads = torch.autograd.grad(output.square().sum(), params, create_graph=True)
        results.append(torch.autograd.grad(sum(g.square().sum() for g in grads), params))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)
