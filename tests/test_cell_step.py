"""The one-step cell ops (fusedrnn::<cell>_cell_step, csrc/cpu/cell_step.h)
and the cell modules that run them on the CPU: against torch.nn's cells,
fusedrnn.reference and the layer op with one step; gradients, opcheck,
NaN, bad arguments, torch.compile."""
import pytest
import torch
from torch import nn

import fusedrnn
from fusedrnn.cell_table import CELLS

# The cells with a step op: torch.nn's (layer-normalized cells have none).
STEP_CELLS = [name for name, cell in CELLS.items() if not cell.norms]
from helpers import OpRecorder

BFLOAT16 = pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not fusedrnn.build_info()["cpu_bfloat16"], reason="needs AVX512_BF16"))
DTYPES = [torch.float32, torch.float64, BFLOAT16]
DTYPE_IDS = ["fp32", "fp64", "bf16"]

# cell name -> (nn class, fusedrnn class, constructor kwargs)
MODULES = {
    "lstm": (nn.LSTMCell, fusedrnn.LSTMCell, {}),
    "gru": (nn.GRUCell, fusedrnn.GRUCell, {}),
    "rnn_tanh": (nn.RNNCell, fusedrnn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNNCell, fusedrnn.RNNCell, {"nonlinearity": "relu"}),
}
# H with an input size each: one unit, and sizes ragged against the 16
# units of a block and the 8/16-lane vectors of the dot products.
SIZES = [(1, 3), (17, 40), (64, 64), (130, 33)]


def _op(name):
    return getattr(torch.ops.fusedrnn, f"{name}_cell_step")


def _args(name, B, I, H, dtype, bias=True, requires_grad=False):
    """(input, h0, c0, w_ih, w_hh, b_ih, b_hh) of a random step, the weights
    scaled as torch.nn initialises them, so that gates rarely saturate."""
    cell = CELLS[name]
    G = cell.gates
    scale = (I + H) ** -0.5

    def make(*shape, scale=1.0):
        t = (torch.randn(*shape, dtype=torch.float64) * scale).to(dtype)
        return t.requires_grad_(requires_grad)

    return (make(B, I), make(B, H), make(B, H) if cell.cell_state else None,
            make(G * H, I, scale=scale), make(G * H, H, scale=scale),
            make(G * H, scale=scale) if bias else None,
            make(G * H, scale=scale) if bias else None)


def _nn_cell(name, args):
    """torch.nn's cell holding the step's weights, in their dtype."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    nn_class, _, extra = MODULES[name]
    module = nn_class(x.shape[1], h0.shape[1], bias=b_ih is not None, dtype=x.dtype, **extra)
    with torch.no_grad():
        module.weight_ih.copy_(w_ih)
        module.weight_hh.copy_(w_hh)
        if b_ih is not None:
            module.bias_ih.copy_(b_ih)
            module.bias_hh.copy_(b_hh)
    return module


def _states(name, result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("H,I", SIZES)
@pytest.mark.parametrize("B", [1, 3, 13, 37])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", STEP_CELLS)
def test_op_matches_nn_reference_and_layer(name, dtype, B, H, I, bias):
    """h and c against torch.nn and fusedrnn.reference; saved and cells
    against the layer op at T=1, whose backward the step's autograd runs."""
    torch.manual_seed(0)
    cell = CELLS[name]
    args = _args(name, B, I, H, dtype, bias)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    h, c, saved, cells = _op(name)(*args)
    saved_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
    assert h.shape == (B, H) and h.dtype == dtype
    assert saved.shape == (1, B, cell.saved * H) and saved.dtype == saved_dtype
    if cell.cell_state:
        assert c.shape == (B, H) and c.dtype == dtype
        assert cells.shape == (1, B, H) and cells.dtype == saved_dtype
    else:
        assert c.numel() == 0 and cells.numel() == 0

    # The reference in the compute type, on the very (rounded) values.
    wide = tuple(None if t is None else t.to(saved_dtype) for t in args)
    states = (wide[1], wide[2]) if cell.cell_state else (wide[1],)
    expected = cell.reference_cell(wide[0], states, (*wide[3:], None))
    tolerance = {torch.float32: 2e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2}[dtype]
    for actual, wanted in zip((h, c), expected):
        torch.testing.assert_close(actual.to(saved_dtype), wanted, atol=tolerance,
                                   rtol=tolerance)

    # torch.nn's cell in the dtype itself (bfloat16: it rounds every gate
    # to bfloat16, so only to bfloat16's precision).
    with torch.no_grad():
        theirs = _states(name, _nn_cell(name, args)(x, (h0, c0) if cell.cell_state else h0))
    nn_tolerance = 5e-2 if dtype == torch.bfloat16 else tolerance
    for actual, wanted in zip((h, c), theirs):
        torch.testing.assert_close(actual, wanted, atol=nn_tolerance, rtol=nn_tolerance)

    # The layer op with one step: what the backward is handed.
    layer = getattr(torch.ops.fusedrnn, f"{name}_layer_forward")
    _, h_n, c_n, layer_saved, layer_cells = layer(x.unsqueeze(0), h0, c0, w_ih, w_hh, b_ih,
                                                  b_hh, None, None, False)
    saved_tolerance = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(saved, layer_saved, atol=saved_tolerance, rtol=saved_tolerance)
    torch.testing.assert_close(h, h_n, atol=tolerance, rtol=tolerance)
    if cell.cell_state:
        torch.testing.assert_close(cells, layer_cells, atol=saved_tolerance,
                                   rtol=saved_tolerance)
        torch.testing.assert_close(c, c_n, atol=tolerance, rtol=tolerance)


def test_large_weights_run_dot_products_past_16_rows():
    """With 4 MiB of weights or more the dot products take batches up to 64
    rows (cpu/cell_step.cpp): 21 rows, five passes of four and one of one."""
    torch.manual_seed(0)
    args = _args("rnn_tanh", 21, 800, 700, torch.float32)
    assert sum(t.numel() for t in args[3:5]) * 4 >= 4 << 20
    h, _, saved, _ = torch.ops.fusedrnn.rnn_tanh_cell_step(*args)
    x, h0, _, w_ih, w_hh, b_ih, b_hh = args
    _, h_n, _, layer_saved, _ = torch.ops.fusedrnn.rnn_tanh_layer_forward(
        x.unsqueeze(0), h0, None, w_ih, w_hh, b_ih, b_hh, None, None, False)
    torch.testing.assert_close(h, h_n, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(saved, layer_saved, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_op_reads_strided_arguments(name):
    """Transposed weights, a broadcast state and a sliced input: copied where
    they are not contiguous, never read as if they were."""
    torch.manual_seed(0)
    cell = CELLS[name]
    B, I, H = 3, 5, 18
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _args(name, B, I, H, torch.float32)
    x_strided = torch.randn(B, 2 * I)[:, ::2]
    x_strided.copy_(x)
    w_hh_strided = w_hh.t().contiguous().t()
    h0_broadcast = h0[:1].expand(B, H)
    b_ih_strided = torch.randn(2 * cell.gates * H)[::2]
    b_ih_strided.copy_(b_ih)
    actual = _op(name)(x_strided, h0_broadcast, c0, w_ih, w_hh_strided, b_ih_strided, b_hh)
    expected = _op(name)(x, h0[:1].expand(B, H).contiguous(), c0, w_ih, w_hh, b_ih, b_hh)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=0, rtol=0)


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_modules_match_nn_with_and_without_grad(name, bias, batched):
    torch.manual_seed(0)
    nn_class, fused_class, extra = MODULES[name]
    ours = fused_class(20, 33, bias=bias, **extra)
    theirs = nn_class(20, 33, bias=bias, **extra)
    theirs.load_state_dict(ours.state_dict())
    shape = (5,) if batched else ()
    x = torch.randn(*shape, 20)
    hx = torch.randn(*shape, 33)
    hx = (hx, torch.randn_like(hx)) if name == "lstm" else hx
    with torch.no_grad():
        for a, e in zip(_states(name, ours(x, hx)), _states(name, theirs(x, hx))):
            torch.testing.assert_close(a, e, atol=2e-5, rtol=2e-5)
    outputs = []
    for module in (ours, theirs):
        inputs = [t.detach().clone().requires_grad_() for t in [x, *_states(name, hx)]]
        result = _states(name, module(inputs[0], tuple(inputs[1:]) if name == "lstm"
                                      else inputs[1]))
        loss = sum((t * (k + 1.5)).sin().sum() for k, t in enumerate(result))
        outputs.append((*result, *torch.autograd.grad(loss, inputs + list(module.parameters()))))
    for a, e in zip(*outputs):
        torch.testing.assert_close(a, e, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_modules_run_the_step_op(name):
    """On the CPU the cells run their step op, with and without grad, and no
    layer op; no ATen gate math either."""
    _, fused_class, extra = MODULES[name]
    cell = fused_class(3, 4, **extra)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), OpRecorder() as recorder:
            cell(torch.randn(2, 3))
        assert f"fusedrnn.{name}_cell_step" in recorder.names
        assert not any(n.endswith("_layer_forward") for n in recorder.names)
        assert "aten.sigmoid" not in recorder.names and "aten.tanh" not in recorder.names


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_gradcheck_through_the_modules(name, bias):
    torch.manual_seed(0)
    _, fused_class, extra = MODULES[name]
    module = fused_class(3, 5, bias=bias, dtype=torch.float64, **extra)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
              for _ in range(2 if name == "lstm" else 1)]
    names = [n for n, _ in module.named_parameters()]

    def step(x, *rest):
        hx = tuple(rest[:len(states)]) if name == "lstm" else rest[0]
        weights = dict(zip(names, rest[len(states):]))
        return torch.func.functional_call(module, weights, (x, hx))

    inputs = (x, *states, *module.parameters())
    assert torch.autograd.gradcheck(step, inputs)
    # Double backward: the step's backward under create_graph=True
    # differentiates the reference.
    assert torch.autograd.gradgradcheck(step, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_opcheck(name, bias, dtype):
    torch.manual_seed(0)
    for requires_grad in (True, False):
        args = _args(name, 3, 4, 5, dtype, bias, requires_grad=requires_grad)
        torch.library.opcheck(_op(name).default, args)


def test_opcheck_on_the_layer_fallback():
    """A batch above the dot products' limit runs the layer function."""
    torch.manual_seed(0)
    torch.library.opcheck(_op("lstm").default,
                          _args("lstm", 70, 4, 5, torch.float64, requires_grad=True))


@pytest.mark.parametrize("name", STEP_CELLS)
def test_nan_and_inf_propagate_like_nn(name):
    """A NaN in one input row and an infinity in one weight give torch.nn's
    pattern of NaN and infinities, in the outputs and every gradient."""
    torch.manual_seed(0)
    nn_class, fused_class, extra = MODULES[name]
    ours = fused_class(6, 20, **extra)
    theirs = nn_class(6, 20, **extra)
    with torch.no_grad():
        ours.weight_hh[3, 2] = float("inf")
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6)
    x[1, 4] = float("nan")
    states = [torch.randn(3, 20) for _ in range(2 if name == "lstm" else 1)]
    results = []
    for module in (ours, theirs):
        leaves = [t.clone().requires_grad_() for t in (x, *states)]
        hx = tuple(leaves[1:]) if name == "lstm" else leaves[1]
        outputs = _states(name, module(leaves[0], hx))
        loss = sum((t * (k + 1)).sum() for k, t in enumerate(outputs))
        results.append([*outputs, *torch.autograd.grad(loss, leaves + list(module.parameters()))])
    for a, e in zip(*results):
        assert torch.equal(a.isnan(), e.isnan())
        assert torch.equal(a.isinf(), e.isinf())
        assert torch.equal(a[a.isinf()], e[e.isinf()])
        finite = a.isfinite()
        torch.testing.assert_close(a[finite], e[finite], atol=2e-5, rtol=2e-5)
    assert results[0][0].isnan().any()


def _replace(args, index, value):
    args = list(args)
    args[index] = value
    return args


@pytest.mark.parametrize("index,bad,message", [
    (0, torch.randn(1, 2, 4), "expected a 2-D"),
    (0, torch.randn(2, 5), "expected w_ih of size"),
    (0, torch.randn(2, 4).half(), "support float32, float64 and bfloat16"),
    (1, torch.randn(3, 5), "expected h0 of size"),
    (1, torch.randn(2, 6), "expected h0 of size"),
    (1, torch.randn(2, 5, dtype=torch.float64), "h0 has dtype"),
    (2, torch.randn(2, 6), "expected c0 of size"),
    (2, None, "c0 is required"),
    (3, torch.randn(19, 4), "expected w_ih of size"),
    (4, torch.randn(19, 5), r"expected w_hh of size \(4H, H\)"),
    (4, torch.randn(20, 6), "expected w_hh of size"),
    (4, torch.randn(20), r"expected w_hh of size \(4H, H\)"),
    (5, torch.randn(19), "expected b_ih of size"),
    (5, None, "both biases or neither"),
    (6, torch.randn(20, dtype=torch.float64), "b_hh has dtype"),
])
def test_bad_arguments_raise(index, bad, message):
    args = _replace(_args("lstm", 2, 4, 5, torch.float32), index, bad)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.lstm_cell_step(*args)


def test_c0_is_refused_without_a_cell_state():
    args = _replace(_args("gru", 2, 4, 5, torch.float32), 2, torch.randn(2, 5))
    with pytest.raises(RuntimeError, match="c0 is not taken"):
        torch.ops.fusedrnn.gru_cell_step(*args)


def test_empty_batch():
    h, c, saved, cells = torch.ops.fusedrnn.lstm_cell_step(*_args("lstm", 0, 4, 5,
                                                                  torch.float32))
    assert h.shape == (0, 5) and c.shape == (0, 5) and saved.shape == (1, 0, 20)


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_compiled_step_matches_eager(name, grad):
    torch._dynamo.reset()
    torch.manual_seed(0)
    _, fused_class, extra = MODULES[name]
    module = fused_class(4, 6, **extra)

    def decode(x, hx, steps):
        for _ in range(steps):
            hx = module(x, hx)
            x = (hx[0] if isinstance(hx, tuple) else hx)[:, :4]
        return hx

    x = torch.randn(2, 4)
    hx = torch.randn(2, 6)
    hx = (hx, torch.randn(2, 6)) if name == "lstm" else hx
    compiled = torch.compile(decode, fullgraph=True)
    with torch.set_grad_enabled(grad):
        actual, expected = _states(name, compiled(x, hx, 3)), _states(name, decode(x, hx, 3))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    if grad:
        grads = [torch.autograd.grad(result[0].square().sum(), list(module.parameters()))
                 for result in (actual, expected)]
        for a, e in zip(*grads):
            torch.testing.assert_close(a, e)
    torch._dynamo.reset()
