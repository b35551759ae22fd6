"""NaN and infinity through fusedrnn's layers and cells, as through torch.nn.

torch.nn's recurrent layers are plain float arithmetic: a NaN reaches every
output and gradient that depends on it; sigmoid and tanh saturate to exactly
0, 1 and +-1 at +-inf (ReLU passes +inf on and keeps NaN); and a saturated
gate, or its zero derivative, times an infinite value gives NaN. fusedrnn
must give the same non-finite pattern (where NaN, where +inf, where -inf) in
its outputs, final states and every gradient, and the same finite values
around it.

Only the public modules are used, never the ops themselves.
"""
import copy
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from helpers import CELLS, twin_modules

NAN, INF = float("nan"), float("inf")
VALUES = {"nan": NAN, "+inf": INF, "-inf": -INF}

HAS_BFLOAT16 = fusedrnn.build_info()["cpu_bfloat16"]
DTYPES = [
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.float64, id="fp64"),
    pytest.param(torch.bfloat16, id="bf16", marks=pytest.mark.skipif(
        not HAS_BFLOAT16, reason="this CPU has no AVX512_BF16")),
]
# Finite values are compared to these; bfloat16 only by its non-finite
# pattern (torch.nn's bfloat16 rounds elsewhere than ours: test_cpu_bfloat16
# bounds our values against float64).
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: None}

# Small sizes: T steps, B sequences, I inputs, H hidden units, P projected.
# Dense input has T * B = 18 rows, enough for the CPU kernels to pack the
# weights for their own tile kernels (from 16 rows in all); packed input
# has 13, which go to BLAS (float, double) or read the weights in place
# (bfloat16's few-row kernels). The gradient multiplies run on the tile
# kernels either way.
T, B, I, H, P = 6, 3, 3, 5, 3
LENGTHS = torch.tensor([6, 2, 5])  # of the packed cases; unsorted on purpose


def _category(t):
    """0 finite, 1 NaN, 2 +inf, 3 -inf, elementwise."""
    return (torch.isnan(t) * 1 + torch.isposinf(t) * 2 + torch.isneginf(t) * 3).to(torch.int8)


def _pattern_mismatch(actual, expected, alternative=None):
    """None, or where `actual` and `expected` differ in being finite, NaN,
    +inf or -inf. With `alternative` (the same computation in another
    precision) an element may match that instead, and where `expected` and
    `alternative` disagree between two non-finite results (rounding decided
    between them), any non-finite one will do."""
    a, e = _category(actual), _category(expected)
    differ = a != e
    if alternative is not None:
        f = _category(alternative)
        undecided = (e != f) & (e != 0) & (f != 0) & (a != 0)
        differ &= (a != f) & ~undecided
    if not differ.any():
        return None

    def counts(c):
        return ", ".join(f"{int((c == k).sum())} {kind}"
                         for k, kind in ((1, "NaN"), (2, "+inf"), (3, "-inf")))

    first = tuple(differ.nonzero()[0].tolist())
    return (f"{counts(a)} of {a.numel()}, torch.nn {counts(e)}; first difference at "
            f"{first}: {actual[first].item()} vs torch.nn's {expected[first].item()}")


def assert_like_nn(actual, expected, names, tolerance, reference=None, alternative=None):
    """Each pair has the same non-finite pattern and, within `tolerance`
    (when not None), the same finite values: elementwise, or given the same
    computation in float64 (`reference`), no further from it than a few
    times torch.nn's own error or `tolerance` of its largest value. Given
    `alternative` (torch.nn's results in float32 for bfloat16), each
    element's pattern may match that instead."""
    assert len(actual) == len(expected) == len(names)
    for k, (name, a, e) in enumerate(zip(names, actual, expected)):
        assert a.shape == e.shape and a.dtype == e.dtype, name
        problem = _pattern_mismatch(a, e, None if alternative is None else alternative[k])
        assert problem is None, f"{name}: {problem}"
        if tolerance is None:
            continue
        if reference is None:
            finite = torch.isfinite(e)
            torch.testing.assert_close(a[finite], e[finite], atol=tolerance, rtol=tolerance,
                                       msg=lambda message, name=name: f"{name}: {message}")
            continue
        # Large weights amplify rounding (a gradient through a weight of
        # 1e4 is 1e4 times a rounding error of the gate gradients), in
        # torch.nn as much as here.
        r = reference[k]
        finite = torch.isfinite(e) & torch.isfinite(r)
        if not finite.any():
            continue
        r = r[finite]
        error = (a[finite].double() - r).abs().max().item()
        nn_error = (e[finite].double() - r).abs().max().item()
        bound = 4 * nn_error + tolerance * max(1.0, r.abs().max().item())
        assert error <= bound, f"{name}: {error} from float64, torch.nn {nn_error}"


def _weighting(outputs):
    """A fixed random weighting of the outputs to differentiate (finite
    whatever the outputs hold, so each output's gradient is finite)."""
    generator = torch.Generator().manual_seed(1234)
    return sum((t * torch.randn(t.shape, generator=generator).to(t.dtype)).sum()
               for t in outputs)


def run_module(module, x, states, lengths=None, batch_first=False):
    """(outputs, gradients): the output (the packed data when `lengths` is
    given), the final states, then the gradients of a fixed weighting of
    them with respect to x, the initial states and every parameter."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *states)]
    inputs = leaves[0]
    if lengths is not None:
        inputs = pack_padded_sequence(inputs, lengths, batch_first=batch_first,
                                      enforce_sorted=False)
    hx = None
    if states:
        hx = tuple(leaves[1:]) if module.mode == "LSTM" else leaves[1]
    output, final = module(inputs, hx)
    outputs = [output.data if lengths is not None else output,
               *(final if isinstance(final, tuple) else (final,))]
    grads = torch.autograd.grad(_weighting(outputs), leaves + list(module.parameters()))
    return outputs, list(grads)


def _names(module, states, cell=False):
    """What run_module or run_cell returns, by name."""
    lstm = isinstance(module, nn.LSTMCell) or getattr(module, "mode", None) == "LSTM"
    finals = ["h_n", "c_n"] if lstm else ["h_n"]
    outputs = [f"{f[0]}'" for f in finals] if cell else ["output", *finals]
    leaves = ["input", *(["h0", "c0"][:len(states)])]
    return outputs + [f"grad {name}" for name in leaves] + [
        f"grad {name}" for name, _ in module.named_parameters()]


def _nn_quietly(run, *args, **kwargs):
    with warnings.catch_warnings():
        # nn.LSTM says it leaves oneDNN for projections: not our concern here.
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        return run(*args, **kwargs)


def _float32_alternative(run, module, x, states, *args):
    """torch.nn's outputs and gradients in float32 on the same (bfloat16)
    values. torch.nn's bfloat16 layers round every intermediate to
    bfloat16, ours compute in float32 and round only what they store, so an
    infinity meeting a value that one rounds to 0 can be NaN in one and
    +-inf in the other; the float32 computation says which is right."""
    outputs, grads = _nn_quietly(run, copy.deepcopy(module).float(), x.float(),
                                 [s.float() for s in states], *args)
    return outputs + grads


# ---------------------------------------------------------------------------
# (a) One NaN or infinity, in a chosen place.

def _module_cases():
    for mode in CELLS:
        layouts = ["dense", "packed"] + (["proj"] if mode == "LSTM" else [])
        sites = ["input", "h0"] + (["c0"] if mode == "LSTM" else []) + ["weight", "bias"]
        for layout in layouts:
            for site in sites:
                yield pytest.param(mode, layout, site, id=f"{mode}-{layout}-{site}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", list(VALUES))
@pytest.mark.parametrize("mode,layout,site", list(_module_cases()))
def test_small_layers_one_nonfinite_like_nn(mode, layout, site, value, dtype):
    """Two bidirectional layers. The value goes to step 1 of sequence 1 of
    the input, or else in both directions of the first layer to unit 0 of
    sequence 1's initial state, to W_hh[0, 0], or to the bias of unit 0's
    second gate (the forget gate, z; the RNN's only one). Each direction's
    outputs and final states are separate tensors or halves, so a direction
    that lost the value would show."""
    torch.manual_seed(0)
    kwargs = dict(num_layers=2, bidirectional=True)
    if layout == "proj":
        kwargs["proj_size"] = P
    theirs, ours = twin_modules(mode, I, H, dtype=dtype, **kwargs)
    x = torch.randn(T, B, I).to(dtype)
    states = [torch.randn(4, B, P if layout == "proj" else H).to(dtype)]
    if mode == "LSTM":
        states.append(torch.randn(4, B, H).to(dtype))
    if site == "input":
        x[1, 1, 0] = VALUES[value]
    elif site in ("h0", "c0"):
        states[site == "c0"][:2, 1, 0] = VALUES[value]
    else:
        name, index = ("weight_hh_l0", (0, 0)) if site == "weight" else \
            ("bias_ih_l0", H if mode in ("LSTM", "GRU") else 0)
        for module in (theirs, ours):
            for suffix in ("", "_reverse"):
                with torch.no_grad():
                    getattr(module, name + suffix)[index] = VALUES[value]
    lengths = LENGTHS if layout == "packed" else None
    expected, expected_grads = _nn_quietly(run_module, theirs, x, states, lengths)
    actual, actual_grads = run_module(ours, x, states, lengths)
    alternative = None
    if dtype == torch.bfloat16:
        alternative = _float32_alternative(run_module, theirs, x, states, lengths)
    assert_like_nn(actual + actual_grads, expected + expected_grads,
                   _names(ours, states), TOLERANCES[dtype], alternative=alternative)


def _exact_mismatch(actual, expected):
    """None, or where the two differ in being exactly 0, 1 or -1."""
    for value in (0.0, 1.0, -1.0):
        a, e = actual == value, expected == value
        if not torch.equal(a, e):
            first = tuple((a != e).nonzero()[0].tolist())
            return (f"== {value} at {int(a.sum())} places, torch.nn at {int(e.sum())}; "
                    f"first difference at {first}: {actual[first].item()} vs "
                    f"{expected[first].item()}")
    return None


# Pre-activations on either side of where tanh (float32: 9.01, float64:
# 19.06) and sigmoid (16.64 and -88.72; 36.74 and -709.8) round to +-1, 1
# and 0, far from and at infinity, and near 0 (where tanh(x) rounds to x).
_SATURATION = {
    torch.float32: [8.5, 9.5, 16.0, 17.5, 80.0, 95.0, 1e30, INF, 1e-30, 1e-40, 0.0],
    torch.float64: [18.5, 19.5, 36.0, 37.5, 700.0, 720.0, 1e300, INF, 1e-300, 1e-310, 0.0],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", list(CELLS))
def test_small_layers_saturate_like_nn(mode, dtype):
    """One layer, two steps. sigmoid and tanh are exactly 0, 1 or +-1 where
    torch's are, and only there: the gates' derivatives are exactly 0 where
    torch's are, which decides where a gradient meets 0 * inf. With zero
    weights every gate of unit j computes its bias, values[j]; c0 is 1 so
    that c' shows f. (Against torch.nn as it runs: these values are clear
    of where oneDNN's sigmoid saturates too, see (b) below.)"""
    torch.manual_seed(0)
    values = _SATURATION[torch.float64 if dtype == torch.float64 else torch.float32]
    values = values + [-v for v in values] + [NAN]
    theirs, ours = twin_modules(mode, 1, len(values), dtype=dtype)
    gates = ours.weight_ih_l0.shape[0] // len(values)
    for module in (theirs, ours):
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
            module.bias_ih_l0.copy_(torch.tensor(values).repeat(gates))
    x = torch.zeros(2, 1, 1, dtype=dtype)
    states = [torch.zeros(1, 1, len(values), dtype=dtype)]
    if mode == "LSTM":
        states.append(torch.ones(1, 1, len(values), dtype=dtype))
    expected, expected_grads = run_module(theirs, x, states)
    actual, actual_grads = run_module(ours, x, states)
    names = _names(ours, states)
    alternative = None
    if dtype == torch.bfloat16:
        alternative = _float32_alternative(run_module, theirs, x, states)
    assert_like_nn(actual + actual_grads, expected + expected_grads, names, TOLERANCES[dtype],
                   alternative=alternative)
    if dtype == torch.bfloat16:
        # torch.nn rounds each gate to bfloat16 (sigmoid(8.5) to 1), and
        # the AVX512_BF16 products read denormals as 0: only the pattern.
        return
    for name, a, e in zip(names, actual + actual_grads, expected + expected_grads):
        problem = _exact_mismatch(a, e)
        assert problem is None, f"{name}: {problem}"


CELL_CLASSES = {
    "LSTMCell": (nn.LSTMCell, fusedrnn.LSTMCell, {}),
    "GRUCell": (nn.GRUCell, fusedrnn.GRUCell, {}),
    "RNNCell-tanh": (nn.RNNCell, fusedrnn.RNNCell, {"nonlinearity": "tanh"}),
    "RNNCell-relu": (nn.RNNCell, fusedrnn.RNNCell, {"nonlinearity": "relu"}),
}


def run_cell(cell, x, states):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *states)]
    hx = tuple(leaves[1:]) if len(states) == 2 else leaves[1]
    result = cell(leaves[0], hx)
    outputs = list(result) if isinstance(result, tuple) else [result]
    grads = torch.autograd.grad(_weighting(outputs), leaves + list(cell.parameters()))
    return outputs, list(grads)


def _cell_cases():
    for name in CELL_CLASSES:
        sites = ["input", "h"] + (["c"] if name == "LSTMCell" else []) + ["weight", "bias"]
        for site in sites:
            yield pytest.param(name, site, id=f"{name}-{site}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", list(VALUES))
@pytest.mark.parametrize("name,site", list(_cell_cases()))
def test_small_cells_one_nonfinite_like_nn(name, site, value, dtype):
    torch.manual_seed(0)
    nn_class, fused_class, extra = CELL_CLASSES[name]
    ours = fused_class(I, H, dtype=dtype, **extra)
    theirs = nn_class(I, H, dtype=dtype, **extra)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(B, I).to(dtype)
    states = [torch.randn(B, H).to(dtype) for _ in range(2 if name == "LSTMCell" else 1)]
    if site == "input":
        x[1, 0] = VALUES[value]
    elif site in ("h", "c"):
        states[site == "c"][1, 0] = VALUES[value]
    else:
        parameter, index = ("weight_hh", (0, 0)) if site == "weight" else \
            ("bias_ih", H if name in ("LSTMCell", "GRUCell") else 0)
        for cell in (theirs, ours):
            with torch.no_grad():
                getattr(cell, parameter)[index] = VALUES[value]
    expected, expected_grads = run_cell(theirs, x, states)
    actual, actual_grads = run_cell(ours, x, states)
    alternative = None
    if dtype == torch.bfloat16:
        alternative = _float32_alternative(run_cell, theirs, x, states)
    assert_like_nn(actual + actual_grads, expected + expected_grads,
                   _names(ours, states, cell=True), TOLERANCES[dtype], alternative=alternative)


# ---------------------------------------------------------------------------
# (b) Random shapes and options, with extreme values in random places.
#
# Compared to torch.nn with oneDNN off, that is to ATen's own sigmoid and
# tanh. oneDNN runs torch.nn's float32 dense LSTM without projection
# otherwise, and its sigmoid rounds to 0 below -86.99 (ATen: below -88.72)
# and to 1 from 17.33 (ATen: from 16.64); a gate in between times an
# infinite state is NaN on one and +-inf on the other. fusedrnn follows
# ATen, which torch.nn's GRU, RNN, packed and projected LSTM use too.

def _extremes(dtype):
    tiny = torch.finfo(dtype).tiny
    values = [NAN, INF, -INF, 1e30, -1e30, 1e-30, -1e-30, 0.0, -0.0,
              tiny, -tiny, tiny / 64, -tiny / 64,  # the smallest normal; denormals
              # Either side of where tanh (9.01 in float32, 19.06 in float64)
              # and sigmoid (16.64 and -88.72; 36.74 and -709.8) round to +-1,
              # 1 and 0, and where float32's e^{2x} in tanh overflows (44.36).
              8.5, -8.5, 9.5, -9.5, 16.0, -16.0, 17.5, -17.5, 44.0, -44.0, 45.0, -45.0,
              80.0, -80.0, 95.0, -95.0]
    if dtype == torch.float64:
        values += [19.0, -19.0, 20.0, -20.0, 36.0, -36.0, 38.0, -38.0,
                   700.0, -700.0, 720.0, -720.0, 1e200, -1e200]
    return values


@st.composite
def nonfinite_cases(draw):
    mode = draw(st.sampled_from(["LSTM", "LSTM-proj", "GRU", "RNN_TANH", "RNN_RELU"]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    hidden = draw(st.integers(1, 5))
    case = dict(
        mode=mode.split("-")[0], dtype=dtype, hidden=hidden,
        proj_size=(draw(st.integers(1, hidden - 1))
                   if mode == "LSTM-proj" and hidden > 1 else 0),
        input_size=draw(st.integers(1, 4)), steps=draw(st.integers(1, 6)),
        batch=draw(st.integers(1, 4)), num_layers=draw(st.integers(1, 2)),
        bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
        batch_first=draw(st.booleans()), packed=draw(st.booleans()),
        with_hx=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))
    # (place, index, value): place is "input", a state or a parameter, the
    # index wraps around its size. Values are extremes or any float up to
    # 2^100 (1.3e30) in size: no sum of a few of them overflows, so where
    # they are finite both sides agree whatever their order of summation.
    value = st.one_of(st.sampled_from(_extremes(dtype)),
                      st.floats(-2.0**100, 2.0**100,
                                width=32 if dtype == torch.float32 else 64))
    case["injections"] = draw(st.lists(
        st.tuples(st.sampled_from(["input", "state", "parameter"]),
                  st.integers(0, 2**20), value), min_size=1, max_size=4))
    return case


# Derandomized: the same 40 examples on every run, so that CI cannot turn
# red on a new draw. Where values overflow inside the recurrence (an
# unbounded RNN_RELU with 1e30 weights), whether an element ends +-inf or
# NaN depends on the order of the additions, which no two kernels share.
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(nonfinite_cases())
def test_extreme_values_like_nn(case):
    torch.manual_seed(case["seed"])
    dtype, mode = case["dtype"], case["mode"]
    kwargs = dict(num_layers=case["num_layers"], bias=case["bias"],
                  batch_first=case["batch_first"], bidirectional=case["bidirectional"])
    if case["proj_size"]:
        kwargs["proj_size"] = case["proj_size"]
    theirs, ours = twin_modules(mode, case["input_size"], case["hidden"], dtype=dtype,
                                **kwargs)
    steps, batch = case["steps"], case["batch"]
    x = torch.randn(*((batch, steps) if case["batch_first"] else (steps, batch)),
                    case["input_size"], dtype=dtype)
    layers = case["num_layers"] * (2 if case["bidirectional"] else 1)
    states = []
    if case["with_hx"]:
        states.append(torch.randn(layers, batch, case["proj_size"] or case["hidden"],
                                  dtype=dtype))
        if mode == "LSTM":
            states.append(torch.randn(layers, batch, case["hidden"], dtype=dtype))
    parameters = [(p, q) for p, q in zip(theirs.parameters(), ours.parameters())]
    for place, index, value in case["injections"]:
        if place == "input" or (place == "state" and not states):
            x.view(-1)[index % x.numel()] = value
        elif place == "state":
            state = states[index % len(states)]
            state.view(-1)[index % state.numel()] = value
        else:
            for p in parameters[index % len(parameters)]:
                with torch.no_grad():
                    p.view(-1)[index % p.numel()] = value
    lengths = None
    if case["packed"]:
        lengths = torch.randint(1, steps + 1, (batch,))
        lengths[0] = steps
    with warnings.catch_warnings():
        # (Setting the flags warns that TF32 on oneDNN is for Intel GPUs.)
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            expected, expected_grads = _nn_quietly(run_module, theirs, x, states, lengths,
                                                   case["batch_first"])
        reference = None
        if dtype == torch.float32:
            # The same computation in float64 (torch.nn's float32 and ours
            # both round every step differently from it).
            reference, reference_grads = run_module(
                copy.deepcopy(theirs).double(), x.double(), [s.double() for s in states],
                lengths, case["batch_first"])
            reference += reference_grads
    actual, actual_grads = run_module(ours, x, states, lengths, case["batch_first"])
    assert_like_nn(actual + actual_grads, expected + expected_grads,
                   _names(ours, states), TOLERANCES[dtype], reference)


# ---------------------------------------------------------------------------
# (c) torch.autograd.detect_anomaly names the fused backward.

@pytest.mark.parametrize("value", ["nan", "+inf"])
@pytest.mark.parametrize("mode", list(CELLS))
def test_detect_anomaly_names_the_fused_backward(mode, value):
    """Where the gradients are NaN, anomaly mode stops the backward at the
    first node that returned NaN, by name, as it does for torch.nn's own
    nodes. Here that is the fused layer's: NaN in the input reaches every
    gradient of the layer; +inf in the input leaves the outputs of the
    saturating cells finite but gives 0 * inf = NaN in W_ih's gradient, made
    by the fused backward alone. The node is the autograd Function that
    torch.library.register_autograd makes for the op, named after the op
    and its namespace ("GeneratedBackwardFor_fusedrnn_<op>_defaultBackward")."""
    torch.manual_seed(0)
    _, ours = twin_modules(mode, I, H)
    x = torch.randn(T, B, I, dtype=torch.float64)
    x[1, 1, 0] = VALUES[value]
    x.requires_grad_(True)
    with warnings.catch_warnings():
        # Anomaly mode warns that it is on, and with the forward's traceback.
        warnings.simplefilter("ignore")
        with torch.autograd.detect_anomaly():
            output, _ = ours(x)
            if mode != "RNN_RELU":  # (ReLU passes inf on, to inf - inf)
                assert torch.isnan(output).any() == (value == "nan")
            with pytest.raises(RuntimeError,
                               match=r"(?i)^Function '\w*fusedrnn\w*' returned nan values"):
                output.backward(torch.ones_like(output))
