"""fusedrnn.LayerNormLSTM / LayerNormGRU and their reference cells.

torch.nn has no layer-normalized layer to compare with, so the oracle here
is the formula itself, written out by hand below (explicit mean and biased
variance, explicit gate slices), independent of fusedrnn.reference and of
F.layer_norm. Inputs and layer-norm parameters are fresh random values
(gains away from 1, biases away from 0) in float64.
"""
import copy
import io
import itertools
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import layernorm, reference
from fusedrnn.reference import Regularization
from helpers import one_thread  # noqa: F401  (the fixture, by name)

EXACT = dict(rtol=1e-10, atol=1e-12)
D64 = torch.float64
CLASSES = {"LSTM": fusedrnn.LayerNormLSTM, "GRU": fusedrnn.LayerNormGRU}


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the formula, by hand ----

def hand_ln(v, gain, bias, eps):
    n = v.shape[-1]
    mean = v.sum(-1, keepdim=True) / n
    var = ((v - mean) ** 2).sum(-1, keepdim=True) / n
    return (v - mean) / torch.sqrt(var + eps) * gain + bias


def hand_lstm_step(x, h, c, p, eps, h_rec=None):
    """p: one (layer, direction)'s parameters by short name (hand_params)."""
    H = c.shape[1]
    h_rec = h if h_rec is None else h_rec
    a = hand_ln(x @ p["w_ih"].T + p["b_ih"], p["ln_ih_w"], p["ln_ih_b"], eps)
    b = hand_ln(h_rec @ p["w_hh"].T + p["b_hh"], p["ln_hh_w"], p["ln_hh_b"], eps)
    pre = a + b
    i = torch.sigmoid(pre[:, 0 * H:1 * H])
    f = torch.sigmoid(pre[:, 1 * H:2 * H])
    g = torch.tanh(pre[:, 2 * H:3 * H])
    o = torch.sigmoid(pre[:, 3 * H:4 * H])
    c_new = f * c + i * g
    h_new = o * torch.tanh(hand_ln(c_new, p["ln_c_w"], p["ln_c_b"], eps))
    if p["w_hr"] is not None:
        h_new = h_new @ p["w_hr"].T
    return h_new, c_new


def hand_gru_step(x, h, p, eps, h_rec=None):
    H = h.shape[1]
    h_rec = h if h_rec is None else h_rec
    gx = hand_ln(x @ p["w_ih"].T + p["b_ih"], p["ln_ih_w"], p["ln_ih_b"], eps)
    gh = hand_ln(h_rec @ p["w_hh"].T + p["b_hh"], p["ln_hh_w"], p["ln_hh_b"], eps)
    r = torch.sigmoid(gx[:, :H] + gh[:, :H])
    z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def hand_params(module, layer, suffix):
    """A (layer, direction)'s parameters, looked up by their public names."""
    def get(name):
        return getattr(module, f"{name}_l{layer}{suffix}", None)
    p = {"w_ih": get("weight_ih"), "w_hh": get("weight_hh"), "w_hr": get("weight_hr"),
         "b_ih": get("bias_ih"), "b_hh": get("bias_hh")}
    p = {k: (0.0 if v is None and k.startswith("b_") else v) for k, v in p.items()}
    for norm in ("ih", "hh", "cell"):
        short = "c" if norm == "cell" else norm
        p[f"ln_{short}_w"] = get(f"layernorm_{norm}_weight")
        p[f"ln_{short}_b"] = get(f"layernorm_{norm}_bias")
    return p


def hand_stack(module, x, h0, c0=None, residual=False):
    """The whole module on time-major dense x, one step at a time, by hand."""
    lstm = module.mode == "LSTM"
    D = 2 if module.bidirectional else 1
    eps = module.layernorm_eps
    layer_input, h_n, c_n = x, [], []
    for layer in range(module.num_layers):
        outputs = []
        for direction in range(D):
            p = hand_params(module, layer, "_reverse" if direction else "")
            index = layer * D + direction
            h, c = h0[index], (c0[index] if lstm else None)
            ys = [None] * x.shape[0]
            for t in (reversed(range(x.shape[0])) if direction else range(x.shape[0])):
                if lstm:
                    h, c = hand_lstm_step(layer_input[t], h, c, p, eps)
                else:
                    h = hand_gru_step(layer_input[t], h, p, eps)
                ys[t] = h
            outputs.append(torch.stack(ys))
            h_n.append(h)
            c_n.append(c)
        output = torch.cat(outputs, -1)
        if residual and layer > 0:
            output = output + layer_input
        layer_input = output
    return layer_input, torch.stack(h_n), (torch.stack(c_n) if lstm else None)


# ---- building cases ----

def randomize_layernorm(module):
    """Gains and biases away from their initial 1 and 0."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("layernorm_"):
                p.copy_(torch.rand_like(p) + 0.5 if "_weight_" in name
                        else 0.5 * torch.randn_like(p))
    return module


def make(mode, *args, **kwargs):
    kwargs.setdefault("dtype", D64)
    return randomize_layernorm(CLASSES[mode](*args, **kwargs))


def random_hx(module, batch):
    D = 2 if module.bidirectional else 1
    L = module.num_layers * D
    h0 = torch.randn(L, batch, module.proj_size or module.hidden_size, dtype=D64)
    c0 = torch.randn(L, batch, module.hidden_size, dtype=D64)
    return h0, c0


def as_hx(module, h0, c0):
    return (h0, c0) if module.mode == "LSTM" else h0


def states(module, final):
    return final if module.mode == "LSTM" else (final,)


def layernorm_names(mode, num_layers, bidirectional):
    norms = ("ih", "hh", "cell") if mode == "LSTM" else ("ih", "hh")
    return [f"layernorm_{norm}_{kind}_l{layer}{suffix}"
            for layer in range(num_layers)
            for suffix in (("", "_reverse") if bidirectional else ("",))
            for norm in norms for kind in ("weight", "bias")]


def random_cell_weights(mode, I, H, P=None, bias=True):
    G = 4 if mode == "LSTM" else 3
    out = P or H

    def r(*shape):
        return torch.randn(*shape, dtype=D64) * 0.5

    w = [r(G * H, I), r(G * H, out), r(G * H) if bias else None, r(G * H) if bias else None,
         r(P, H) if P else None,
         torch.rand(G * H, dtype=D64) + 0.5, r(G * H), torch.rand(G * H, dtype=D64) + 0.5,
         r(G * H)]
    w += [torch.rand(H, dtype=D64) + 0.5, r(H)] if mode == "LSTM" else [None, None]
    return tuple(w)


def cell_params(weights):
    keys = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "ln_ih_w", "ln_ih_b", "ln_hh_w", "ln_hh_b",
            "ln_c_w", "ln_c_b")
    p = dict(zip(keys, weights, strict=True))
    p["b_ih"] = 0.0 if p["b_ih"] is None else p["b_ih"]
    p["b_hh"] = 0.0 if p["b_hh"] is None else p["b_hh"]
    return p


# ---- the reference cells against the formula ----

@pytest.mark.parametrize("P", [None, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_reference_lstm_cell_is_the_formula(P, bias, masked):
    B, I, H, eps = 5, 4, 3, 1e-3
    weights = random_cell_weights("LSTM", I, H, P, bias)
    x, h, c = (torch.randn(B, I, dtype=D64), torch.randn(B, P or H, dtype=D64),
               torch.randn(B, H, dtype=D64))
    h_rec = torch.randn_like(h) if masked else None
    got = reference.layernorm_lstm_cell(x, (h, c), weights, h_rec, eps=eps)
    want = hand_lstm_step(x, h, c, cell_params(weights), eps, h_rec)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **EXACT)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_reference_gru_cell_is_the_formula(bias, masked):
    B, I, H, eps = 5, 4, 3, 1e-3
    weights = random_cell_weights("GRU", I, H, bias=bias)
    x, h = torch.randn(B, I, dtype=D64), torch.randn(B, H, dtype=D64)
    # The masked h feeds W_hh only; z * h uses the state itself.
    h_rec = torch.randn_like(h) if masked else None
    (got,) = reference.layernorm_gru_cell(x, (h,), weights, h_rec, eps=eps)
    torch.testing.assert_close(got, hand_gru_step(x, h, cell_params(weights), eps, h_rec),
                               **EXACT)


def test_eps_is_inside_the_square_root():
    # A row with a tiny spread: eps decides how far it is stretched.
    B, I, H = 2, 3, 4
    weights = random_cell_weights("GRU", I, H)
    x, h = 1e-3 * torch.randn(B, I, dtype=D64), torch.randn(B, H, dtype=D64)
    for eps in (1e-1, 1e-8):
        (got,) = reference.layernorm_gru_cell(x, (h,), weights, eps=eps)
        torch.testing.assert_close(got, hand_gru_step(x, h, cell_params(weights), eps),
                                   **EXACT)


def test_reference_layers_take_regularization():
    # Zoneout's eval expectation, through the shared recurrent_layer.
    T, B, I, H, p = 4, 3, 2, 3, 0.3
    x = torch.randn(T, B, I, dtype=D64)
    weights = random_cell_weights("LSTM", I, H)
    h, c = torch.randn(B, H, dtype=D64), torch.randn(B, H, dtype=D64)
    reg = Regularization(zoneout=p, cell_zoneout=p / 2)
    y, (h_n, c_n) = reference.layernorm_lstm_layer(x, (h, c), weights, regularization=reg,
                                                   eps=1e-5)
    for t in range(T):
        h_new, c_new = hand_lstm_step(x[t], h, c, cell_params(weights), 1e-5)
        h, c = p * h + (1 - p) * h_new, p / 2 * c + (1 - p / 2) * c_new
        torch.testing.assert_close(y[t], h, **EXACT)
    torch.testing.assert_close((h_n, c_n), (h, c), **EXACT)

    weights = random_cell_weights("GRU", I, H)
    (h,) = h0 = (torch.randn(B, H, dtype=D64),)
    y, _ = reference.layernorm_gru_layer(x, h0, weights, reverse=True,
                                         regularization=Regularization(zoneout=p), eps=1e-5)
    for t in reversed(range(T)):
        h = p * h + (1 - p) * hand_gru_step(x[t], h, cell_params(weights), 1e-5)
        torch.testing.assert_close(y[t], h, **EXACT)


# ---- the modules against the formula ----

@pytest.mark.parametrize("mode, num_layers, bidirectional, batch_first, with_hx, extra", [
    *[("LSTM", *case, {}) for case in itertools.product([1, 2], [False, True], [False, True],
                                                        [False, True])],
    *[("GRU", *case, {}) for case in itertools.product([1, 2], [False, True], [False, True],
                                                       [False, True])],
    ("LSTM", 2, True, False, True, {"proj_size": 2}),
    ("LSTM", 1, False, True, True, {"proj_size": 1, "bias": False}),
    ("GRU", 2, False, False, True, {"bias": False, "layernorm_eps": 1e-2}),
    ("LSTM", 3, True, False, True, {"residual": True}),
    ("GRU", 3, False, True, False, {"residual": True}),
])
def test_module_is_the_formula(mode, num_layers, bidirectional, batch_first, with_hx, extra):
    T, B, I, H = 4, 3, 4, 3
    module = make(mode, I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first,
                  **extra)
    x = torch.randn(T, B, I, dtype=D64)
    h0, c0 = random_hx(module, B)
    if not with_hx:
        h0, c0 = torch.zeros_like(h0), torch.zeros_like(c0)
    hx = as_hx(module, h0, c0) if with_hx else None
    y, final = module(x.transpose(0, 1) if batch_first else x, hx)
    if batch_first:
        y = y.transpose(0, 1)
    want_y, want_h, want_c = hand_stack(module, x, h0, c0, residual=extra.get("residual", False))
    torch.testing.assert_close(y, want_y, **EXACT)
    torch.testing.assert_close(states(module, final),
                               (want_h, want_c) if mode == "LSTM" else (want_h,), **EXACT)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_layer_norm_acts(mode):
    # With gains 1, biases 0 and a tiny eps the layer is not torch.nn's ...
    torch.manual_seed(0)
    ours = CLASSES[mode](3, 4, dtype=D64, layernorm_eps=1e-12)
    theirs = getattr(nn, mode)(3, 4, dtype=D64)
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(5, 2, 3, dtype=D64)
    assert (ours(x)[0] - theirs(x)[0]).abs().max() > 1e-2
    # ... and, being normalized, it ignores the scale of each side's
    # pre-activations (gains and biases of the norms are random here).
    randomize_layernorm(ours)
    before = ours(x)[0]
    with torch.no_grad():
        for name in ("weight_ih_l0", "bias_ih_l0"):
            getattr(ours, name).mul_(7.0)
        for name in ("weight_hh_l0", "bias_hh_l0"):
            getattr(ours, name).mul_(0.25)
    torch.testing.assert_close(ours(x)[0], before, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("mode, num_layers, bidirectional, batch_first, with_hx",
                         [(m, *case) for m in ("LSTM", "GRU")
                          for case in itertools.product([1, 2], [False, True], [False, True],
                                                        [False, True])])
def test_packed_is_each_sequence_alone(mode, num_layers, bidirectional, batch_first, with_hx):
    I, H = 3, 3
    module = make(mode, I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    lengths = [3, 5, 1, 4]  # unsorted
    xs = [torch.randn(n, I, dtype=D64) for n in lengths]
    h0, c0 = random_hx(module, len(lengths))
    hx = as_hx(module, h0, c0) if with_hx else None
    out, final = module(pack_sequence(xs, enforce_sorted=False), hx)
    padded, out_lengths = pad_packed_sequence(out, batch_first=batch_first)
    assert out_lengths.tolist() == lengths
    final = states(module, final)
    for b, x in enumerate(xs):
        alone_hx = as_hx(module, h0[:, b], c0[:, b]) if with_hx else None
        y, alone_final = module(x, alone_hx)  # unbatched
        got = padded[b, :len(x)] if batch_first else padded[:len(x), b]
        torch.testing.assert_close(got, y, **EXACT)
        for s, alone in zip(final, states(module, alone_final), strict=True):
            torch.testing.assert_close(s[:, b], alone, **EXACT)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_unbatched_is_batch_of_one(mode):
    module = make(mode, 3, 4, 2, bidirectional=True, batch_first=True)
    x = torch.randn(5, 3, dtype=D64)
    h0, c0 = random_hx(module, 1)
    y, final = module(x, as_hx(module, h0[:, 0], c0[:, 0]))
    y1, final1 = module(x.unsqueeze(0), as_hx(module, h0, c0))
    torch.testing.assert_close(y, y1[0], **EXACT)
    for a, b in zip(states(module, final), states(module, final1), strict=True):
        torch.testing.assert_close(a, b[:, 0], **EXACT)
    # An empty batch gives empty results, as torch.nn's.
    y0, _ = module(torch.randn(0, 5, 3, dtype=D64))
    assert y0.shape == (0, 5, 8)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradcheck(mode):
    T, B, I, H = 3, 2, 2, 2
    module = make(mode, I, H, bidirectional=True, **({"proj_size": 1} if mode == "LSTM" else {}))
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    h0, c0 = random_hx(module, B)
    x, h0, c0 = (t.requires_grad_(True) for t in (torch.randn(T, B, I, dtype=D64), h0, c0))

    def run(x, h0, c0, *params):
        hx = as_hx(module, h0, c0)
        y, final = torch.func.functional_call(module, dict(zip(names, params)), (x, hx))
        return (y, *states(module, final))

    inputs = (x, h0, c0, *params) if mode == "LSTM" else (x, h0, torch.zeros(0), *params)
    assert torch.autograd.gradcheck(run, inputs)


# ---- parameters, state_dict, checkpoints ----

@pytest.mark.parametrize("mode, kwargs", [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(num_layers=2, proj_size=2, bias=False)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
])
def test_state_dict_is_nn_then_layernorm(mode, kwargs):
    torch.manual_seed(3)
    ours = CLASSES[mode](3, 4, **kwargs)
    torch.manual_seed(3)
    theirs = getattr(nn, mode)(3, 4, **kwargs)
    nn_keys = list(theirs.state_dict())
    ln_keys = layernorm_names(mode, kwargs["num_layers"], kwargs.get("bidirectional", False))
    assert list(ours.state_dict()) == nn_keys + ln_keys
    # nn's Parameters stay nn's: flat weights, shapes, and (same seed) values.
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert ours._all_weights == theirs._all_weights
    for key in nn_keys:
        assert torch.equal(ours.state_dict()[key], theirs.state_dict()[key])
    G = 4 if mode == "LSTM" else 3
    for key in ln_keys:
        value = ours.state_dict()[key]
        assert value.shape == ((4,) if "_cell_" in key else (G * 4,))
        assert torch.equal(value, torch.ones_like(value) if "_weight_" in key
                           else torch.zeros_like(value))

    # torch.nn -> ours: the layer norms are missing and keep their values.
    randomize_layernorm(ours)
    kept = {key: ours.state_dict()[key].clone() for key in ln_keys}
    theirs = getattr(nn, mode)(3, 4, **kwargs)
    result = ours.load_state_dict(theirs.state_dict(), strict=False)
    assert result.missing_keys == ln_keys and result.unexpected_keys == []
    for key in nn_keys:
        assert torch.equal(ours.state_dict()[key], theirs.state_dict()[key])
    for key in ln_keys:
        assert torch.equal(ours.state_dict()[key], kept[key])
    # ours -> torch.nn: the layer norms are unexpected, the rest identical.
    again = getattr(nn, mode)(3, 4, **kwargs)
    result = again.load_state_dict(ours.state_dict(), strict=False)
    assert result.unexpected_keys == ln_keys and result.missing_keys == []
    for key in nn_keys:
        assert torch.equal(again.state_dict()[key], ours.state_dict()[key])


def test_reset_parameters_keeps_nn_init_and_resets_the_norms():
    module = randomize_layernorm(fusedrnn.LayerNormLSTM(3, 4, 2, dtype=D64))
    module.reset_parameters()
    bound = 1 / 4 ** 0.5
    for name, p in module.named_parameters():
        if name.startswith("layernorm_"):
            assert torch.equal(p, torch.full_like(p, 1.0 if "_weight_" in name else 0.0))
        else:
            assert p.abs().max() <= bound and p.std() > bound / 4


def _outputs(module, x):
    with torch.no_grad():
        y, final = module(x)
    return (y, *states(module, final))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_save_load_deepcopy_and_to(mode, tmp_path):
    module = make(mode, 3, 4, 2, bidirectional=True, layernorm_eps=1e-3, residual=True,
                  zoneout=0.1).eval()
    x = torch.randn(5, 2, 3, dtype=D64)
    expected = _outputs(module, x)
    torch.save(module, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt")  # weights_only=True
    for other in (loaded, copy.deepcopy(module)):
        assert type(other) is type(module) and not other.training
        assert other.extra_repr() == module.extra_repr()
        assert "layernorm_eps=0.001" in other.extra_repr()
        for a, b in zip(_outputs(other, x), expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for (name, a), (_, b) in zip(other.named_parameters(), module.named_parameters(),
                                     strict=True):
            assert torch.equal(a, b) and a is not b, name
    # Only plain data on the instance (what keeps the weights_only load working).
    assert all(isinstance(v, (bool, int, float, str, list, tuple, set, dict, type(None)))
               for k, v in vars(module).items() if k != "_flat_weight_refs")
    # to() moves the layer norms with nn's parameters; nn's machinery still works.
    module.float()
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    assert all(w.dtype == torch.float32 for w in module._flat_weights)
    module.flatten_parameters()
    torch.testing.assert_close(_outputs(module, x.float())[0], expected[0].float(),
                               rtol=1e-4, atol=1e-5)
    assert "layernorm_eps" not in CLASSES[mode](3, 4).extra_repr()


def test_meta_device_and_default_dtype():
    module = fusedrnn.LayerNormLSTM(3, 4, device="meta")
    assert {p.device.type for p in module.parameters()} == {"meta"}
    assert fusedrnn.LayerNormGRU(3, 4).layernorm_hh_weight_l0.dtype == torch.float32


# ---- regularization ----

@pytest.mark.parametrize("mode, options", [
    ("LSTM", dict(zoneout=0.2, cell_zoneout=0.3, recurrent_dropout=0.25, weight_drop=0.3)),
    ("LSTM", dict(recurrent_dropout=0.4)),
    ("GRU", dict(zoneout=0.2, recurrent_dropout=0.25, weight_drop=0.3)),
])
def test_regularization_follows_the_seed(mode, options):
    module = make(mode, 3, 4, 2, bidirectional=True, dropout=0.3, **options)
    plain = make(mode, 3, 4, 2, bidirectional=True, dropout=0.3)
    plain.load_state_dict(module.state_dict())
    x = torch.randn(5, 2, 3, dtype=D64)

    def seeded(seed):
        torch.manual_seed(seed)
        return _outputs(module, x)

    first = seeded(1)
    for a, b in zip(seeded(1), first, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(seeded(2)[0], first[0])
    # The masks act: not the unregularized layer with the same dropout draw.
    torch.manual_seed(1)
    assert not torch.allclose(_outputs(plain.train(), x)[0], first[0])

    module.eval()
    once, twice = _outputs(module, x), _outputs(module, x)
    for a, b in zip(once, twice, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if "zoneout" not in options:  # recurrent dropout and weight drop: nothing in eval
        for a, b in zip(once, _outputs(plain.eval(), x), strict=True):
            torch.testing.assert_close(a, b, **EXACT)


def test_regularized_gradients_flow_to_the_norms():
    module = make("LSTM", 3, 4, recurrent_dropout=0.3, zoneout=0.2, weight_drop=0.2)
    y, _ = module(torch.randn(4, 2, 3, dtype=D64))
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


# ---- errors ----

@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_errors_are_nn_errors(mode):
    ours, theirs = CLASSES[mode](3, 4), getattr(nn, mode)(3, 4)
    for bad in (torch.randn(1, 2, 3, 3), torch.randn(5, 2, 2)):
        with pytest.raises((ValueError, RuntimeError)) as nn_error:
            theirs(bad)
        with pytest.raises(nn_error.type, match=None) as our_error:
            ours(bad)
        assert str(our_error.value) == str(nn_error.value)
    with pytest.raises(RuntimeError, match="should also be 3-D"):
        ours(torch.randn(5, 2, 3), as_hx(ours, torch.zeros(1, 4), torch.zeros(1, 4)))


@pytest.mark.parametrize("eps", [0, -1e-5, 0.0, float("nan"), float("inf"), True, "1e-5", None])
def test_layernorm_eps_must_be_positive(eps):
    for cls in CLASSES.values():
        with pytest.raises(ValueError, match="layernorm_eps"):
            cls(3, 4, layernorm_eps=eps)


def test_gru_has_no_projection():
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        fusedrnn.LayerNormGRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        fusedrnn.LayerNormGRU(3, 4, 1, True, False, 0.0, False, 2)  # nn.GRU's 8th positional


def test_constructor_errors_are_nn_errors():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        fusedrnn.LayerNormLSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="cell_zoneout acts on the LSTM's cell state"):
        fusedrnn.LayerNormGRU(3, 4, cell_zoneout=0.1)
    with pytest.raises(TypeError, match="bias should be of type bool"):
        fusedrnn.LayerNormLSTM(3, 4, bias=1)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_onnx_export_is_refused(mode, monkeypatch):
    module = CLASSES[mode](3, 4)
    monkeypatch.setattr(layernorm, "exporting_to_onnx", lambda: True)
    with pytest.raises(RuntimeError, match=f"LayerNorm{mode} cannot be exported to ONNX"):
        module(torch.randn(5, 2, 3))


def test_onnx_export_says_why_it_fails():
    # The TorchScript exporter reaches forward at once; the default one
    # (dynamo=True, seconds slower) wraps the same message.
    pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="LayerNormLSTM cannot be exported to ONNX"):
            torch.onnx.export(fusedrnn.LayerNormLSTM(3, 4), (torch.randn(5, 2, 3),),
                              io.BytesIO(), dynamo=False)
