"""LayerNormLSTM / LayerNormGRU on their fused kernels (the ops
fusedrnn::layernorm_{lstm,gru}_layer_{forward,backward}) against the
reference they replace (fusedrnn.reference.layernorm_*_cell, itself checked
against the formula in test_layernorm.py): the same module run with
_force_reference, on fresh random inputs, weights and layer-norm gains and
biases; forward and every gradient (input, states, weights, layer norms).
"""
import copy
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from helpers import OpRecorder, one_thread  # noqa: F401  (one_thread: a fixture)
from test_layernorm import make, random_hx

BF16 = "bfloat16" in fusedrnn.build_info()["cpu_dtypes"]
MODES = ["LSTM", "GRU"]
OP = {"LSTM": "layernorm_lstm", "GRU": "layernorm_gru"}


pytestmark = pytest.mark.usefixtures("one_thread")


def run(module, x, hx, lengths=None, seed=0):
    """Output, final states and every gradient of one forward and backward
    (the loss weighs every output and final state differently)."""
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    hx = tuple(s.detach().clone().requires_grad_(True) for s in hx) if hx is not None else None
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    torch.manual_seed(seed)
    state = None if hx is None else (hx if module.mode == "LSTM" else hx[0])
    out, final = module(inp, state)
    out = out if lengths is None else out.data
    final = final if isinstance(final, tuple) else (final,)
    weight = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out).to(out.dtype)
    loss = (out * weight).sum() + sum((s * s).sum() for s in final)
    loss.backward()
    grads = [x.grad] + ([s.grad for s in hx] if hx is not None else [])
    grads += [p.grad for p in module.parameters()]
    return [out, *final, *grads]


def twins(mode, dtype, **kwargs):
    kernel = make(mode, 5, 6, **kwargs).to(dtype)
    reference = copy.deepcopy(kernel)
    reference._force_reference = True
    return kernel, reference


def case(mode, layers, bidirectional, packed, with_hx, proj, dtype, **extra):
    kwargs = dict(num_layers=layers, bidirectional=bidirectional, **extra)
    if proj:
        kwargs["proj_size"] = proj
    kernel, reference = twins(mode, torch.float64, **kwargs)
    T, B = 5, 4
    x = torch.randn(T, B, 5, dtype=torch.float64)
    hx = random_hx(kernel, B) if with_hx else None
    if hx is not None and mode == "GRU":
        hx = hx[:1]
    lengths = torch.tensor([3, 5, 1, 4]) if packed else None  # unsorted
    return kernel, reference, x, hx, lengths


FULL = list(itertools.product([1, 2], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 3), ("GRU", 0)])
@pytest.mark.parametrize("layers,bidirectional,packed,with_hx", FULL)
def test_kernel_is_the_reference_float64(mode, proj, layers, bidirectional, packed, with_hx):
    torch.manual_seed(hash((mode, proj, layers, bidirectional, packed, with_hx)) % 10000)
    kernel, reference, x, hx, lengths = case(mode, layers, bidirectional, packed, with_hx,
                                             proj, torch.float64)
    got, expected = run(kernel, x, hx, lengths), run(reference, x, hx, lengths)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 3), ("GRU", 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True])
def test_kernel_is_the_reference_low_precision(mode, proj, dtype, packed):
    """float32 and bfloat16 (computed in float32) against the float64
    reference on the same (rounded) values."""
    if dtype == torch.bfloat16 and not BF16:
        pytest.skip("no bfloat16 kernels on this CPU")
    torch.manual_seed(5)
    kernel, reference, x, hx, lengths = case(mode, 2, True, packed, True, proj, torch.float64,
                                             bias=True)
    kernel = kernel.to(dtype)
    reference = copy.deepcopy(kernel).double()
    reference._force_reference = True
    x = x.to(dtype)
    hx = tuple(s.to(dtype) for s in hx)
    got = run(kernel, x, hx, lengths)
    expected = run(reference, x.double(), tuple(s.double() for s in hx), lengths)
    for g, e in zip(got, expected):
        assert g.dtype == dtype
        if dtype == torch.float32:
            torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-4)
        else:
            # bfloat16 in and out, float32 inside: single sums of many
            # rounded terms (the norms' bias gradients) move by more than an
            # elementwise tolerance allows; the error relative to the whole
            # tensor is 3e-2 at most here (the reference run in bfloat16:
            # 6e-2).
            assert ((g.double() - e).norm() / e.norm()).item() < 6e-2


@pytest.mark.parametrize("mode", MODES)
def test_without_bias(mode):
    torch.manual_seed(1)
    kernel, reference, x, hx, lengths = case(mode, 1, True, False, True, 0, torch.float64,
                                             bias=False)
    for g, e in zip(run(kernel, x, hx), run(reference, x, hx)):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


REGULARIZATION = [dict(recurrent_dropout=0.3), dict(zoneout=0.4), dict(weight_drop=0.3),
                  dict(recurrent_dropout=0.3, zoneout=0.2, weight_drop=0.25)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", REGULARIZATION + [dict(cell_zoneout=0.4, zoneout=0.2)],
                         ids=lambda o: "+".join(o))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("packed", [False, True])
def test_regularization_kernel_is_the_reference(mode, options, training, packed):
    """The same seed draws the same masks on either path."""
    if "cell_zoneout" in options and mode == "GRU":
        pytest.skip("the GRU has no cell state")
    torch.manual_seed(2)
    kernel, reference, x, hx, lengths = case(mode, 2, True, packed, True, 0, torch.float64,
                                             **options)
    kernel.train(training)
    reference.train(training)
    got, expected = run(kernel, x, hx, lengths, seed=7), run(reference, x, hx, lengths, seed=7)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 2), ("GRU", 0)])
def test_gradcheck_through_the_module(mode, proj):
    torch.manual_seed(0)
    module = make(mode, 3, 4, bidirectional=True, **({"proj_size": proj} if proj else {}))
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    h0, c0 = (s.requires_grad_(True) for s in random_hx(module, 2))

    def f(x, h0, c0, *params):
        state = (h0, c0) if mode == "LSTM" else h0
        out, final = torch.func.functional_call(module, dict(zip(names, params)), (x, state))
        final = final if isinstance(final, tuple) else (final,)
        return (out, *final)

    inputs = (x, h0, c0 if mode == "LSTM" else c0.detach(), *params)
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("mode", MODES)
def test_double_backward_differentiates_the_reference(mode):
    """create_graph=True: the gradients are differentiated again (through
    the reference with its eps and norms), as the reference's are."""
    torch.manual_seed(4)
    kernel, reference, x, hx, lengths = case(mode, 1, False, False, True, 0, torch.float64,
                                             layernorm_eps=1e-3)

    def penalty(module):
        xs = x.clone().requires_grad_(True)
        out, _ = module(xs, hx if mode == "LSTM" else hx[0])
        params = list(module.parameters())
        grads = torch.autograd.grad(out.pow(2).sum(), [xs, *params], create_graph=True)
        total = sum((g * g).sum() for g in grads)
        return torch.autograd.grad(total, [xs, *params])

    for g, e in zip(penalty(kernel), penalty(reference)):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_the_kernel_runs_and_force_reference_runs_the_reference(mode):
    kernel, reference, x, hx, lengths = case(mode, 2, True, False, False, 0, torch.float64)
    for module, fused in ((kernel, True), (reference, False)):
        with OpRecorder() as recorder:
            out, _ = module(x.clone().requires_grad_(True))
            out.sum().backward()
        names = recorder.names
        forward_op, backward_op = f"fusedrnn.{OP[mode]}_layer_forward", \
            f"fusedrnn.{OP[mode]}_layer_backward"
        if fused:
            assert names.count(forward_op) == 4 and names.count(backward_op) == 4
            # No per-step ATen math: the reference runs sigmoid and layer norm each step.
            assert "aten.sigmoid" not in names and "aten.native_layer_norm" not in names
        else:
            assert forward_op not in names and "aten.native_layer_norm" in names
    out, _ = kernel(x.clone().requires_grad_(True))
    assert "fusedrnn" in type(out.grad_fn).__name__.lower() or out.grad_fn is not None


def ln_layer_args(mode, dtype=torch.float64, *, T=4, B=3, I=2, H=3, proj=0, packed=False):
    G = 4 if mode == "LSTM" else 3
    P = proj or H
    batch_sizes = torch.tensor([3, 2, 2, 1]) if packed else None
    rows = int(batch_sizes.sum()) if packed else None
    d = dict(dtype=dtype, requires_grad=True)
    x = torch.randn(rows, I, **d) if packed else torch.randn(T, B, I, **d)
    c0 = torch.randn(B, H, **d) if mode == "LSTM" else None
    norms = [torch.rand(G * H, **d) + 0.5, torch.randn(G * H, **d),
             torch.rand(G * H, **d) + 0.5, torch.randn(G * H, **d)]
    if mode == "LSTM":
        norms += [torch.rand(H, **d) + 0.5, torch.randn(H, **d)]
    norms = torch.cat(norms).detach().requires_grad_(True)  # the ops' packed layout
    return (x, torch.randn(B, P, **d), c0, torch.randn(G * H, I, **d),
            torch.randn(G * H, P, **d), torch.randn(G * H, **d), torch.randn(G * H, **d),
            torch.randn(P, H, **d) if proj else None, batch_sizes), norms


NO_REG = (None, 0.0, None, 0.0, None, 0.0)
OP_VARIANTS = [("LSTM", dict()), ("LSTM", dict(proj=2)), ("LSTM", dict(packed=True)),
               ("GRU", dict()), ("GRU", dict(packed=True))]


@pytest.mark.parametrize("mode,variant", OP_VARIANTS)
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck(mode, variant, reverse):
    torch.manual_seed(0)
    args, norms = ln_layer_args(mode, **variant)
    forward = getattr(torch.ops.fusedrnn, f"{OP[mode]}_layer_forward")
    backward = getattr(torch.ops.fusedrnn, f"{OP[mode]}_layer_backward")
    torch.library.opcheck(forward.default, (*args, reverse, *NO_REG, norms, 1e-5))
    with torch.no_grad():
        y, h_n, c_n, saved, cells = forward(*args, reverse, *NO_REG, norms, 1e-5)
    x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = (
        a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    grads = (torch.randn_like(y), torch.randn_like(h_n),
             torch.randn_like(c_n) if mode == "LSTM" else None)
    torch.library.opcheck(backward.default,
                          (*grads, x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, saved,
                           cells if mode == "LSTM" else None, reverse, True, True, *NO_REG,
                           norms.detach(), 1e-5))


def test_op_checks_the_norms():
    args, norms = ln_layer_args("LSTM")
    op = torch.ops.fusedrnn.layernorm_lstm_layer_forward
    with pytest.raises(RuntimeError, match="norms.*required"):
        op(*args, False)
    with pytest.raises(RuntimeError, match="expected norms of size"):
        op(*args, False, *NO_REG, norms[:-1], 1e-5)
    with pytest.raises(RuntimeError, match="eps must be positive"):
        op(*args, False, *NO_REG, norms, 0.0)
    with pytest.raises(RuntimeError, match="not taken by"):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False, *NO_REG, norms, 1e-5)
