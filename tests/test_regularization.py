"""Regularization inside the recurrence: recurrent dropout, zoneout (of h
and of the LSTM's c) and weight drop.

The reference is checked against hand-written formulas; the kernels against
the reference on the same masks (the same seed draws the same masks on
either path), forward and every gradient, dense and packed, both
directions, in float64, float32 and bfloat16; gradients with gradcheck.
"""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn import reference, regularization
from fusedrnn.reference import Regularization

BF16 = "bfloat16" in fusedrnn.build_info()["cpu_dtypes"]

ALL_ON = dict(recurrent_dropout=0.3, zoneout=0.2, weight_drop=0.25)


def make(kind, *args, cell_zoneout=0.0, **kwargs):
    if kind == "lstm":
        return fusedrnn.LSTM(*args, cell_zoneout=cell_zoneout, **kwargs)
    if kind == "lstm_proj":
        return fusedrnn.LSTM(*args, proj_size=3, cell_zoneout=cell_zoneout, **kwargs)
    if kind == "gru":
        return fusedrnn.GRU(*args, **kwargs)
    return fusedrnn.RNN(*args, nonlinearity=kind.split("_")[1], **kwargs)


KINDS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"]


# ---- the reference against the formulas ----

def test_reference_rnn_step_formulas():
    """One tanh RNN layer with every mask, against a loop written out here."""
    torch.manual_seed(0)
    T, B, I, H, p_rec, p_zone = 4, 3, 5, 6, 0.4, 0.3
    x, h0 = torch.randn(T, B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    w_ih, w_hh = torch.randn(H, I, dtype=torch.float64), torch.randn(H, H, dtype=torch.float64)
    b_ih, b_hh = torch.randn(H, dtype=torch.float64), torch.randn(H, dtype=torch.float64)
    keep = torch.rand(B, H) > p_rec
    zone = torch.rand(T, B, H) < p_zone
    reg = Regularization(keep, p_rec, zone, p_zone)
    y, (h_n,) = reference.rnn_tanh_layer(x, (h0,), (w_ih, w_hh, b_ih, b_hh, None),
                                         regularization=reg)
    h = h0
    for t in range(T):
        dropped = h * keep.double() / (1 - p_rec)
        new = torch.tanh(x[t] @ w_ih.T + b_ih + dropped @ w_hh.T + b_hh)
        h = torch.where(zone[t], h, new)
        torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(h_n, h)
    # Eval: no mask, zoneout's expectation.
    y, _ = reference.rnn_tanh_layer(x, (h0,), (w_ih, w_hh, b_ih, b_hh, None),
                                    regularization=Regularization(zoneout=p_zone))
    h = h0
    for t in range(T):
        h = p_zone * h + (1 - p_zone) * torch.tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        torch.testing.assert_close(y[t], h)


def test_reference_lstm_cell_zoneout_and_gru_dropout_formulas():
    torch.manual_seed(1)
    T, B, I, H = 3, 2, 4, 5
    d = dict(dtype=torch.float64)
    x = torch.randn(T, B, I, **d)
    h0, c0 = torch.randn(B, H, **d), torch.randn(B, H, **d)
    w = (torch.randn(4 * H, I, **d), torch.randn(4 * H, H, **d), torch.randn(4 * H, **d),
         torch.randn(4 * H, **d), None)
    zone_c = torch.rand(T, B, H) < 0.5
    y, (h_n, c_n) = reference.lstm_layer(x, (h0, c0), w,
                                         regularization=Regularization(cell_zoneout_mask=zone_c,
                                                                       cell_zoneout=0.5))
    h, c = h0, c0
    for t in range(T):
        i, f, g, o = (x[t] @ w[0].T + w[2] + h @ w[1].T + w[3]).chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c_new)  # from the cell's own c'
        c = torch.where(zone_c[t], c, c_new)
        torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(c_n, c)

    # GRU: the mask acts on the h entering W_hh only, not on z * h.
    w = (torch.randn(3 * H, I, **d), torch.randn(3 * H, H, **d), torch.randn(3 * H, **d),
         torch.randn(3 * H, **d), None)
    keep = torch.rand(B, H) > 0.5
    y, _ = reference.gru_layer(x, (h0,), w,
                               regularization=Regularization(recurrent_mask=keep,
                                                             recurrent_dropout=0.5))
    h = h0
    for t in range(T):
        xr, xz, xn = (x[t] @ w[0].T + w[2]).chunk(3, 1)
        hr, hz, hn = ((h * keep / 0.5) @ w[1].T + w[3]).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        torch.testing.assert_close(y[t], h)


# ---- kernels against the reference, on the same masks ----

def _run(model, x, hx, seed, packed_lengths=None):
    """Output, final states and every gradient of one seeded forward+backward."""
    model.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    hx = tuple(s.detach().clone().requires_grad_(True) for s in hx)
    inp = x
    if packed_lengths is not None:
        inp = pack_padded_sequence(x, packed_lengths, enforce_sorted=False)
    torch.manual_seed(seed)
    out, final = model(inp, hx if len(hx) == 2 else hx[0])
    if packed_lengths is not None:
        out = out.data
    final = final if isinstance(final, tuple) else (final,)
    loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out).to(out.dtype)).sum()
    loss = loss + sum((s * s).sum() for s in final)
    loss.backward()
    grads = [x.grad, *(s.grad for s in hx)] + [p.grad for p in model.parameters()]
    return [out, *final, *grads]


def _states(model, B, dtype):
    D = 2 if model.bidirectional else 1
    h = torch.randn(model.num_layers * D, B, model.proj_size or model.hidden_size, dtype=dtype)
    if model.mode == "LSTM":
        return (h, torch.randn(model.num_layers * D, B, model.hidden_size, dtype=dtype))
    return (h,)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_kernel_matches_reference_float64(kind, packed, training):
    torch.manual_seed(hash((kind, packed, training)) % 1000)
    cell_zoneout = 0.35 if kind.startswith("lstm") else 0.0
    model = make(kind, 5, 6, num_layers=2, bidirectional=True, dtype=torch.float64,
                 cell_zoneout=cell_zoneout, **ALL_ON).train(training)
    T, B = 6, 4
    x = torch.randn(T, B, 5, dtype=torch.float64)
    hx = _states(model, B, torch.float64)
    lengths = torch.tensor([6, 2, 5, 3]) if packed else None
    got = _run(model, x, hx, seed=7, packed_lengths=lengths)
    model._force_reference = True
    expected = _run(model, x, hx, seed=7, packed_lengths=lengths)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_reference_low_precision(kind, dtype):
    if dtype == torch.bfloat16 and not BF16:
        pytest.skip("no bfloat16 kernels on this CPU")
    torch.manual_seed(3)
    model = make(kind, 16, 70, dtype=dtype, cell_zoneout=0.3 if kind == "lstm" else 0.0,
                 **ALL_ON)
    x = torch.randn(7, 5, 16, dtype=dtype)
    hx = _states(model, 5, dtype)
    got = _run(model, x, hx, seed=11)
    model._force_reference = True
    expected = _run(model, x, hx, seed=11)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=0.1, atol=0.1)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.float(), e.float(), **tol)


@pytest.mark.parametrize("kind", KINDS)
def test_each_regularizer_alone_matches_reference(kind):
    """Each option on its own (the kernel's passes are independent)."""
    options = [dict(recurrent_dropout=0.5), dict(zoneout=0.5), dict(weight_drop=0.5)]
    if kind.startswith("lstm"):
        options.append(dict(cell_zoneout=0.5))
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    for opts in options:
        torch.manual_seed(5)
        model = make(kind, 4, 6, dtype=torch.float64, **opts)
        hx = _states(model, 3, torch.float64)
        got = _run(model, x, hx, seed=2)
        model._force_reference = True
        for g, e in zip(got, _run(model, x, hx, seed=2)):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_relu"])
def test_gradcheck_through_the_kernel(kind):
    torch.manual_seed(0)
    cell_zoneout = 0.4 if kind.startswith("lstm") else 0.0
    model = make(kind, 3, 4, dtype=torch.float64, cell_zoneout=cell_zoneout,
                 recurrent_dropout=0.3, zoneout=0.3)
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    hx = [s.requires_grad_(True) for s in _states(model, 2, torch.float64)]

    def f(x, *rest):
        states, weights = rest[:len(hx)], rest[len(hx):]
        torch.manual_seed(9)  # the same masks at every evaluation
        out, final = torch.func.functional_call(
            model, dict(zip(names, weights)),
            (x, tuple(states) if len(states) == 2 else states[0]))
        return (out, *(final if isinstance(final, tuple) else (final,)))

    assert torch.autograd.gradcheck(f, (x, *hx, *params))


def test_gradgradcheck_through_the_kernel():
    """Double backward differentiates the reference on the saved masks."""
    torch.manual_seed(0)
    model = fusedrnn.GRU(2, 3, dtype=torch.float64, recurrent_dropout=0.3, zoneout=0.4)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def f(x):
        torch.manual_seed(4)
        return model(x)[0]

    assert torch.autograd.gradgradcheck(f, (x,))


# ---- what each option does ----

def test_eval_without_zoneout_is_the_plain_layer():
    torch.manual_seed(0)
    model = fusedrnn.LSTM(4, 5, num_layers=2, recurrent_dropout=0.5, weight_drop=0.5).eval()
    plain = nn.LSTM(4, 5, num_layers=2).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(6, 3, 4)
    torch.testing.assert_close(model(x)[0], plain(x)[0])


def test_zoneout_of_one_freezes_the_state_in_training():
    model = fusedrnn.LSTM(3, 4, zoneout=1.0, cell_zoneout=1.0)
    x = torch.randn(5, 2, 3)
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    out, (h_n, c_n) = model(x, (h0, c0))
    torch.testing.assert_close(out, h0.expand(5, 2, 4))
    torch.testing.assert_close(c_n, c0)


def test_same_seed_same_result_other_seed_other_result():
    model = fusedrnn.GRU(4, 8, num_layers=2, **ALL_ON)
    x = torch.randn(10, 3, 4)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(model(x)[0])
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])


def test_mask_rates():
    """The masks' keep rates, over enough units that chance cannot pass a wrong rate."""
    settings = regularization.Settings(recurrent_dropout=0.3, zoneout=0.1, cell_zoneout=0.6)
    torch.manual_seed(0)
    x = torch.zeros(50, 40, 1)
    reg = regularization.draw(settings, True, x, None, out_size=100, hidden=100,
                              has_cell_state=True)
    for mask, rate in ((reg.recurrent_mask, 0.7), (reg.zoneout_mask, 0.1),
                       (reg.cell_zoneout_mask, 0.6)):
        assert mask.dtype == torch.bool
        n = mask.numel()
        sigma = (rate * (1 - rate) / n) ** 0.5
        assert abs(mask.float().mean().item() - rate) < 5 * sigma
    assert reg.recurrent_mask.shape == (40, 100)
    assert reg.zoneout_mask.shape == (50, 40, 100)
    w = torch.ones(300, 300)
    dropped = regularization.drop_weight(w, 0.25, True)
    kept = (dropped != 0).float().mean().item()
    assert abs(kept - 0.75) < 5 * (0.75 * 0.25 / w.numel()) ** 0.5
    torch.testing.assert_close(dropped[dropped != 0], torch.full_like(dropped[dropped != 0],
                                                                      1 / 0.75))


def test_weight_drop_masks_the_gradient_and_leaves_the_weight():
    torch.manual_seed(0)
    model = fusedrnn.RNN(3, 50, weight_drop=0.5)
    before = model.weight_hh_l0.detach().clone()
    model(torch.randn(4, 2, 3))[0].sum().backward()
    assert torch.equal(model.weight_hh_l0, before)
    zero = (model.weight_hh_l0.grad == 0).float().mean().item()
    assert 0.4 < zero < 0.6


def test_no_new_state_dict_keys_and_checkpoint_keeps_the_options(tmp_path):
    model = fusedrnn.LSTM(3, 4, zoneout=0.1, cell_zoneout=0.2, recurrent_dropout=0.3)
    assert list(model.state_dict()) == list(nn.LSTM(3, 4).state_dict())
    path = tmp_path / "m.pt"
    torch.save(model, path)
    loaded = torch.load(path)
    assert (loaded.zoneout, loaded.cell_zoneout, loaded.recurrent_dropout) == (0.1, 0.2, 0.3)
    assert "zoneout=0.1" in repr(loaded)


@pytest.mark.parametrize("kwargs, message", [
    (dict(zoneout=1.5), "zoneout"),
    (dict(zoneout=-0.1), "zoneout"),
    (dict(recurrent_dropout=1.0), "recurrent_dropout"),
    (dict(weight_drop="x"), "weight_drop"),
])
def test_bad_probabilities(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fusedrnn.LSTM(3, 4, **kwargs)


def test_cell_zoneout_needs_a_cell_state():
    with pytest.raises(ValueError, match="cell_zoneout"):
        fusedrnn.GRU(3, 4, cell_zoneout=0.1)


def test_op_checks_the_masks():
    x, h0 = torch.randn(3, 2, 4), torch.zeros(2, 5)
    w_ih, w_hh = torch.randn(15, 4), torch.randn(15, 5)
    op = torch.ops.fusedrnn.gru_layer_forward
    with pytest.raises(RuntimeError, match="zoneout_keep"):
        op(x, h0, None, w_ih, w_hh, None, None, None, None, False,
           zoneout_keep=torch.ones(3, 2, 5), zoneout=0.5)
    with pytest.raises(RuntimeError, match="recurrent_keep"):
        op(x, h0, None, w_ih, w_hh, None, None, None, None, False,
           recurrent_keep=torch.ones(3, 5, dtype=torch.bool), recurrent_dropout=0.5)
    with pytest.raises(RuntimeError, match="cell_zoneout"):
        op(x, h0, None, w_ih, w_hh, None, None, None, None, False, cell_zoneout=0.5)
    with pytest.raises(RuntimeError, match="recurrent_dropout"):
        op(x, h0, None, w_ih, w_hh, None, None, None, None, False,
           recurrent_keep=torch.ones(2, 5, dtype=torch.bool), recurrent_dropout=1.0)


def test_nan_passes_through_dropped_and_zoned_units():
    """NaN in h0 reaches the output where the reference sends it (NaN * 0 is NaN)."""
    torch.manual_seed(0)
    model = fusedrnn.GRU(3, 4, recurrent_dropout=0.5, zoneout=0.5)
    x = torch.randn(4, 2, 3)
    h0 = torch.randn(1, 2, 4)
    h0[0, 1, 2] = float("nan")
    torch.manual_seed(1)
    got = model(x, h0)[0]
    model._force_reference = True
    torch.manual_seed(1)
    expected = model(x, h0)[0]
    assert torch.equal(got.isnan(), expected.isnan())
    torch.testing.assert_close(got.nan_to_num(), expected.nan_to_num())


def test_revert_and_onnx_refuse_what_nn_cannot_express(tmp_path):
    with pytest.raises(ValueError, match="recurrent_dropout"):
        fusedrnn.revert(fusedrnn.LSTM(3, 4, recurrent_dropout=0.1))
    pytest.importorskip("onnx")
    model = fusedrnn.GRU(3, 4, zoneout=0.1).eval()
    with pytest.raises(Exception, match="zoneout"):
        torch.onnx.export(model, (torch.randn(2, 1, 3),), str(tmp_path / "m.onnx"), dynamo=False)


# ---- the masks' random numbers ----

def test_random_mask_reproducible_thread_independent_and_fair():
    shape = (64, 33, 100)
    torch.manual_seed(3)
    a = regularization.random_mask(shape, 0.3, "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(3)
        b = regularization.random_mask(shape, 0.3, "cpu")
    finally:
        torch.set_num_threads(threads)
    assert a.dtype == torch.bool and a.shape == shape
    assert torch.equal(a, b)
    assert not torch.equal(a, regularization.random_mask(shape, 0.3, "cpu"))
    n = a.numel()
    assert abs(a.float().mean().item() - 0.3) < 5 * (0.3 * 0.7 / n) ** 0.5
    # Neighbouring units are independent: the pair (unit, next unit) is
    # (True, True) at p^2.
    flat = a.flatten()
    both = (flat[:-1] & flat[1:]).float().mean().item()
    assert abs(both - 0.09) < 5 * (0.09 * 0.91 / n) ** 0.5
    assert regularization.random_mask((5, 7), 0.0, "cpu").sum() == 0
    assert regularization.random_mask((5, 7), 1.0, "cpu").all()


def test_random_mask_op():
    seed = torch.tensor([12345])
    torch.library.opcheck(torch.ops.fusedrnn.random_mask.default, (seed, [4, 5], 0.5))
    with pytest.raises(RuntimeError, match="seed"):
        torch.ops.fusedrnn.random_mask(torch.tensor([1.0]), [3], 0.5)
    with pytest.raises(RuntimeError, match="p must be"):
        torch.ops.fusedrnn.random_mask(seed, [3], 1.5)


def test_compile_fullgraph_with_regularization():
    """torch.compile traces the mask drawing and the ops; under inductor the
    seed comes from inductor's own generator (as for F.dropout), so a
    compiled run is reproducible under a seed but draws other masks than
    eager."""
    model = fusedrnn.GRU(4, 8, recurrent_dropout=0.2, zoneout=0.1, weight_drop=0.3)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(5, 3, 4)
    torch.manual_seed(0)
    first = compiled(x)[0]
    torch.manual_seed(0)
    second = compiled(x)[0]
    assert torch.equal(first, second)
    first.sum().backward()
    assert model.weight_hh_l0.grad is not None


@pytest.mark.parametrize("training", [True, False])
def test_opcheck_with_masks(training):
    """The forward and backward ops with every regularization argument:
    schema, fake kernel, autograd registration (torch.library.opcheck)."""
    torch.manual_seed(0)
    T, B, I, H = 4, 3, 5, 6
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    w_ih = torch.randn(4 * H, I, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(4 * H, H, dtype=torch.float64, requires_grad=True)
    if training:
        reg = (torch.rand(B, H) < 0.7, 0.3, torch.rand(T, B, H) < 0.2, 0.2,
               torch.rand(T, B, H) < 0.4, 0.4)
    else:
        reg = (None, 0.0, None, 0.2, None, 0.4)
    args = (x, h0, c0, w_ih, w_hh, None, None, None, None, False, *reg)
    torch.library.opcheck(torch.ops.fusedrnn.lstm_layer_forward.default, args)
    with torch.no_grad():
        y, h_n, c_n, saved, cells = torch.ops.fusedrnn.lstm_layer_forward(*args)
    plain = [t.detach() for t in (x, h0, c0, w_ih, w_hh)]
    torch.library.opcheck(
        torch.ops.fusedrnn.lstm_layer_backward.default,
        (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n), *plain, None, None,
         y, saved, cells, False, True, True, *reg))
