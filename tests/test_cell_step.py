"""The one-step cell ops (fusedrnn::<cell>_cell_step and its gradient-free
twin <cell>_cell_step_inference, csrc/cpu/cell_step.h) and the cell modules
that run them on the CPU: against torch.nn's cells, fusedrnn.reference and
the layer op with one step; gradients, opcheck, NaN, bad arguments,
torch.compile."""
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
    """On the CPU the cells run their step op where a gradient may be taken,
    the inference op where none can (no_grad, or nothing that requires
    grad), and no layer op; no ATen gate math either."""
    _, fused_class, extra = MODULES[name]
    cell = fused_class(3, 4, **extra)
    frozen = fused_class(3, 4, **extra).requires_grad_(False)
    for module, grad, op in ((cell, True, "_cell_step"), (cell, False, "_cell_step_inference"),
                             (frozen, True, "_cell_step_inference")):
        with torch.set_grad_enabled(grad), OpRecorder() as recorder:
            module(torch.randn(2, 3))
        ops = {n for n in recorder.names if n.startswith("fusedrnn.")}
        assert ops == {f"fusedrnn.{name}{op}"}
        assert "aten.sigmoid" not in recorder.names and "aten.tanh" not in recorder.names


def _inference_op(name):
    return getattr(torch.ops.fusedrnn, f"{name}_cell_step_inference")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("B", [0, 1, 13, 70])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", STEP_CELLS)
def test_inference_op_matches_the_step_op(name, dtype, B, bias):
    """The same h and c, bit for bit, as the step op that keeps saved and
    cells: on the dot products and (70 rows) on the layer function."""
    torch.manual_seed(0)
    args = _args(name, B, 19, 37, dtype, bias)
    h, c, _, _ = _op(name)(*args)
    result = _inference_op(name)(*args)
    if CELLS[name].cell_state:
        assert isinstance(result, tuple) and len(result) == 2
        assert torch.equal(result[0], h) and torch.equal(result[1], c)
    else:
        assert isinstance(result, torch.Tensor)
        assert torch.equal(result, h)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_inference_op_refuses_inputs_that_require_grad(name):
    """Under grad mode with an input that requires grad it raises at once
    (it has no backward); where no gradient can be taken it runs, and its
    results require none."""
    torch.manual_seed(0)
    args = _args(name, 2, 3, 4, torch.float32, requires_grad=True)
    with pytest.raises(RuntimeError, match=rf"_inference has no backward: .* "
                                           rf"\(fusedrnn::{name}_cell_step is the same step"):
        _inference_op(name)(*args)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            result = _inference_op(name)(*args)
        for t in result if isinstance(result, tuple) else (result,):
            assert not t.requires_grad
    plain = [None if t is None else t.detach() for t in args]
    result = _inference_op(name)(*plain)
    assert not (result[0] if isinstance(result, tuple) else result).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_inference_opcheck(name, dtype):
    """Schema, fake kernel and dispatch (inputs that require no grad: the
    op has no backward to check)."""
    torch.manual_seed(0)
    for B in (3, 70):
        torch.library.opcheck(_inference_op(name).default, _args(name, B, 4, 5, dtype))


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
@pytest.mark.parametrize("suffix", ["", "_inference"])
def test_bad_arguments_raise(suffix, index, bad, message):
    args = _replace(_args("lstm", 2, 4, 5, torch.float32), index, bad)
    with pytest.raises(RuntimeError, match=message):
        getattr(torch.ops.fusedrnn, f"lstm_cell_step{suffix}")(*args)


@pytest.mark.parametrize("suffix", ["", "_inference"])
def test_c0_is_refused_without_a_cell_state(suffix):
    args = _replace(_args("gru", 2, 4, 5, torch.float32), 2, torch.randn(2, 5))
    with pytest.raises(RuntimeError, match="c0 is not taken"):
        getattr(torch.ops.fusedrnn, f"gru_cell_step{suffix}")(*args)


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


# --- The step's backward op (fusedrnn::<cell>_cell_step_backward) ----------

ALL_GRADS = (True,) * 6


def _backward_op(name):
    return getattr(torch.ops.fusedrnn, f"{name}_cell_step_backward")


def _step_and_backward(name, args, grad_h, grad_c, mask=None):
    """The step op, then its backward op on its results, as _cell_ops.py's
    autograd calls it; by default with every gradient the step has."""
    cell = CELLS[name]
    x, h0, c0, w_ih, w_hh, b_ih, _ = args
    if mask is None:
        mask = (*ALL_GRADS[:5], b_ih is not None)
    h, _, saved, cells = _op(name)(*args)
    if cell.saved_is_output:
        saved = h.unsqueeze(0).to(saved.dtype)
    return _backward_op(name)(grad_h, grad_c, x, h0, c0, w_ih, w_hh, h, saved,
                              cells if cell.cell_state else None, mask)


def _output_grads(name, B, H, dtype):
    grad_h = torch.randn(B, H, dtype=torch.float64).to(dtype)
    grad_c = torch.randn(B, H, dtype=torch.float64).to(dtype) if CELLS[name].cell_state \
        else None
    return grad_h, grad_c


def _reference_grads(name, args, grad_h, grad_c, dtype):
    """Every input's gradient by torch.autograd through fusedrnn.reference's
    cell, in `dtype`, on the same (rounded) values; None where the input is
    None."""
    cell = CELLS[name]
    leaves = [None if t is None else t.detach().to(dtype).requires_grad_() for t in args]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = leaves
    states = (h0, c0) if cell.cell_state else (h0,)
    outputs = cell.reference_cell(x, states, (w_ih, w_hh, b_ih, b_hh, None))
    pairs = [(outputs[0], grad_h)] + ([(outputs[1], grad_c)] if cell.cell_state else [])
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad([o for o, _ in pairs], present,
                                     [g.to(dtype) for _, g in pairs], allow_unused=True))
    return [None if t is None else next(grads) for t in leaves]


def _kernel_grads(name, grads):
    """The backward op's results in the order of the step's inputs (x, h0,
    c0, w_ih, w_hh, b_ih, b_hh), grad_b_hh filled in where the cell gives
    both biases one gradient."""
    grads = list(grads)
    if not CELLS[name].split_recurrent_grad:
        grads[6] = grads[5]
    return grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("H,I", SIZES)
@pytest.mark.parametrize("B", [1, 3, 16])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", STEP_CELLS)
def test_backward_op_matches_autograd_through_the_reference(name, dtype, B, H, I, bias):
    """Every gradient of the backward op against torch.autograd through the
    reference on fresh random inputs, and (float32, float64) against the
    layer's backward op with one step."""
    torch.manual_seed(B * 1000 + H)
    cell = CELLS[name]
    args = _args(name, B, I, H, dtype, bias)
    grad_h, grad_c = _output_grads(name, B, H, dtype)
    grads = _kernel_grads(name, _step_and_backward(name, args, grad_h, grad_c))
    wide = torch.float32 if dtype == torch.bfloat16 else dtype
    expected = _reference_grads(name, args, grad_h, grad_c, wide)
    tolerance = {torch.float32: 1e-4, torch.float64: 1e-10, torch.bfloat16: 2e-2}[dtype]
    for index, (actual, wanted) in enumerate(zip(grads, expected)):
        if wanted is None:
            assert actual.numel() == 0, index
            continue
        assert actual.dtype == dtype and actual.shape == wanted.shape, index
        assert actual.is_contiguous()
        # Absolute error up to the tolerance of the gradient's largest value:
        # a weight's gradient sums B products, and bfloat16's h (the Elman
        # cell's saved value) is rounded before 1 - h^2 is taken of it.
        scale = max(1.0, wanted.abs().max().item()) if wanted.numel() else 1.0
        torch.testing.assert_close(actual.to(wide), wanted, atol=tolerance * scale,
                                   rtol=tolerance,
                                   msg=lambda m, i=index: f"gradient {i}: {m}")
    if dtype == torch.bfloat16:
        return
    # The layer's backward op with one step, which the step ran before.
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    layer = getattr(torch.ops.fusedrnn, f"{name}_layer_forward")
    y, _, _, saved, cells = layer(x.unsqueeze(0), h0, c0, w_ih, w_hh, b_ih, b_hh, None, None,
                                  False)
    layer_grads = getattr(torch.ops.fusedrnn, f"{name}_layer_backward")(
        None, grad_h, grad_c, x.unsqueeze(0), h0, c0, w_ih, w_hh, None, None, y, saved,
        cells if cell.cell_state else None, False)
    layer_grads = _kernel_grads(name, [layer_grads[0].view(B, I), *layer_grads[1:7]])
    for index, (actual, wanted) in enumerate(zip(grads, layer_grads)):
        if index in (5, 6) and not bias:
            continue
        if expected[index] is not None:
            torch.testing.assert_close(actual, wanted, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_backward_op_gives_only_the_wanted_gradients(name):
    """Each subset of the mask gives exactly the full call's values for the
    gradients it wants and empty tensors for the others."""
    torch.manual_seed(0)
    cell = CELLS[name]
    args = _args(name, 5, 19, 21, torch.float32)
    grad_h, grad_c = _output_grads(name, 5, 21, torch.float32)
    full = _step_and_backward(name, args, grad_h, grad_c)
    for mask in [(True, False, False, False, False, False),
                 (False, True, False, False, False, False),
                 (False, False, True, False, False, False),
                 (False, False, False, True, True, True),
                 (False, True, True, True, False, False),
                 (True, False, False, False, True, False)]:
        some = _step_and_backward(name, args, grad_h, grad_c, mask)
        wants = (*mask, mask[5] and cell.split_recurrent_grad)
        for index, (want, a, e) in enumerate(zip(wants, some, full)):
            if want and (index != 2 or cell.cell_state):
                assert torch.equal(a, e), (mask, index)
            else:
                assert a.numel() == 0, (mask, index)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_backward_op_takes_missing_output_grads_as_zeros(name):
    torch.manual_seed(0)
    cell = CELLS[name]
    args = _args(name, 3, 7, 9, torch.float64)
    grad_h, grad_c = _output_grads(name, 3, 9, torch.float64)
    cases = [(grad_h, None), (None, None)] + ([(None, grad_c)] if cell.cell_state else [])
    for given_h, given_c in cases:
        actual = _step_and_backward(name, args, given_h, given_c)
        expected = _step_and_backward(name, args, torch.zeros_like(grad_h) if given_h is None
                                      else given_h,
                                      None if grad_c is None else
                                      (torch.zeros_like(grad_c) if given_c is None
                                       else given_c))
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, atol=0, rtol=0)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_backward_op_is_deterministic_across_thread_counts(name):
    """Blocks of columns and of rows, sums in a fixed order: one thread and
    two give the same bits, at sizes that split over both."""
    torch.manual_seed(0)
    args = _args(name, 3, 200, 256, torch.float32)
    grad_h, grad_c = _output_grads(name, 3, 256, torch.float32)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_step_and_backward(name, args, grad_h, grad_c))
    finally:
        torch.set_num_threads(previous)
    for a, e in zip(*results):
        assert torch.equal(a, e)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", STEP_CELLS)
def test_backward_op_across_blocks(name, dtype):
    """Sizes past one block of the products (cpu/cell_step_backward.h: 256
    columns; W's rows in several blocks), ragged at both ends, against
    autograd through the reference."""
    torch.manual_seed(1)
    B, I, H = 2, 300, 270
    args = _args(name, B, I, H, dtype)
    grad_h, grad_c = _output_grads(name, B, H, dtype)
    grads = _kernel_grads(name, _step_and_backward(name, args, grad_h, grad_c))
    wide = torch.float32 if dtype == torch.bfloat16 else dtype
    expected = _reference_grads(name, args, grad_h, grad_c, wide)
    tolerance = {torch.float32: 1e-4, torch.float64: 1e-10, torch.bfloat16: 2e-2}[dtype]
    for actual, wanted in zip(grads, expected):
        if wanted is not None:
            scale = max(1.0, wanted.abs().max().item())
            torch.testing.assert_close(actual.to(wide), wanted, atol=tolerance * scale,
                                       rtol=tolerance)


def test_backward_op_runs_the_layer_backward_past_small_batches():
    """A batch past the backward kernel's 16 rows (70: the forward runs the
    layer function too) runs the layer backward: the same gradients, only
    the wanted ones."""
    torch.manual_seed(0)
    args = _args("gru", 70, 6, 7, torch.float64)
    grad_h, _ = _output_grads("gru", 70, 7, torch.float64)
    grads = _kernel_grads("gru", _step_and_backward("gru", args, grad_h, None))
    expected = _reference_grads("gru", args, grad_h, None, torch.float64)
    for actual, wanted in zip(grads, expected):
        if wanted is None:  # (c0)
            assert actual.numel() == 0
        else:
            torch.testing.assert_close(actual, wanted, atol=1e-10, rtol=1e-10)
    masked = _step_and_backward("gru", args, grad_h, None,
                                (False, True, False, False, True, False))
    assert [t.numel() for t in masked] == [0, 70 * 7, 0, 0, 21 * 7, 0, 0]


@pytest.mark.parametrize("B", [1, 3, 16])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_gradcheck_through_the_step_op(name, B):
    """float64 gradcheck of the step op's autograd (the backward op) with
    the gradient of every input, then of a few inputs only."""
    torch.manual_seed(0)
    args = _args(name, B, 3, 5, torch.float64, requires_grad=True)

    def step(*inputs):
        h, c, _, _ = _op(name)(*inputs)
        return (h, c) if CELLS[name].cell_state else h

    assert torch.autograd.gradcheck(step, args)
    some = [None if t is None else t.detach().requires_grad_(k in (1, 4))
            for k, t in enumerate(args)]
    assert torch.autograd.gradcheck(step, some)


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("B", [1, 3, 16])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_module_gradients_match_nn(name, B, unbatched):
    """The cells' gradients (through the backward op) against torch.nn's,
    with the input's gradient and without it."""
    if unbatched and B > 1:
        pytest.skip("an unbatched step has one row")
    torch.manual_seed(B)
    nn_class, fused_class, extra = MODULES[name]
    ours = fused_class(24, 40, **extra)
    theirs = nn_class(24, 40, **extra)
    theirs.load_state_dict(ours.state_dict())
    shape = () if unbatched else (B,)
    x = torch.randn(*shape, 24)
    states = [torch.randn(*shape, 40) for _ in range(2 if name == "lstm" else 1)]
    for input_grad in (True, False):
        outputs = []
        for module in (ours, theirs):
            leaves = [x.clone().requires_grad_(input_grad),
                      *[s.clone().requires_grad_() for s in states]]
            hx = tuple(leaves[1:]) if name == "lstm" else leaves[1]
            result = _states(name, module(leaves[0], hx))
            loss = sum((t * (k + 0.5)).cos().sum() for k, t in enumerate(result))
            wrt = [t for t in leaves if t.requires_grad] + list(module.parameters())
            outputs.append(torch.autograd.grad(loss, wrt))
        for a, e in zip(*outputs):
            torch.testing.assert_close(a, e, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("B", [3, 16])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_backward_op_propagates_nan_like_autograd(name, B):
    """A NaN in one row of grad_h and an infinity in W_ih: the pattern of
    NaN and infinities of autograd through torch.nn's cell."""
    torch.manual_seed(0)
    cell = CELLS[name]
    args = list(_args(name, B, 6, 20, torch.float32))
    args[3][5, 1] = float("inf")
    grad_h, grad_c = _output_grads(name, B, 20, torch.float32)
    grad_h[1, 7] = float("nan")
    grads = _kernel_grads(name, _step_and_backward(name, args, grad_h, grad_c))
    expected = _reference_grads(name, args, grad_h, grad_c, torch.float32)
    for a, e in zip(grads, expected):
        if e is None:
            continue
        assert torch.equal(a.isnan(), e.isnan())
        assert torch.equal(a.isinf(), e.isinf())
        finite = a.isfinite()
        torch.testing.assert_close(a[finite], e[finite], atol=1e-4, rtol=1e-4)
    assert grads[0].isnan().any() and grads[3].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name", STEP_CELLS)
def test_opcheck_backward_op(name, dtype):
    torch.manual_seed(0)
    cell = CELLS[name]
    for B, mask in [(3, ALL_GRADS), (2, (False, True, True, False, True, False)),
                    (70, ALL_GRADS)]:
        args = _args(name, B, 4, 5, dtype)
        x, h0, c0, w_ih, w_hh, _, _ = args
        h, _, saved, cells = _op(name)(*args)
        if cell.saved_is_output:
            saved = h.unsqueeze(0).to(saved.dtype)
        grad_h, grad_c = _output_grads(name, B, 5, dtype)
        torch.library.opcheck(_backward_op(name).default,
                              (grad_h, grad_c, x, h0, c0, w_ih, w_hh, h, saved,
                               cells if cell.cell_state else None, list(mask)))


def test_backward_op_is_not_differentiable():
    torch.manual_seed(0)
    args = _args("rnn_tanh", 2, 3, 4, torch.float64, requires_grad=True)
    grad_h, _ = _output_grads("rnn_tanh", 2, 4, torch.float64)
    grads = _step_and_backward("rnn_tanh", args, grad_h.requires_grad_(), None)
    with pytest.raises(RuntimeError, match="rnn_tanh_cell_step_backward is not differentiable"):
        grads[1].sum().backward()


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(saved=a["saved"][:, :, 1:]), "expected saved of size"),
    (lambda a: a.update(saved=a["saved"].double()), "expected saved of dtype"),
    (lambda a: a.update(cells=None), "cells are required"),
    (lambda a: a.update(cells=a["cells"][:, :1]), "expected cells of size"),
    (lambda a: a.update(h=a["h"][:1]), "expected h of size"),
    (lambda a: a.update(grad_h=a["grad_h"].double()), "grad_h has dtype"),
    (lambda a: a.update(grad_c=a["grad_c"][:, 1:]), "expected grad_c of size"),
    (lambda a: a.update(w_hh=a["w_hh"][1:]), "expected w_hh of size"),
])
def test_backward_op_bad_arguments_raise(change, message):
    torch.manual_seed(0)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _args("lstm", 2, 4, 5, torch.float32)
    h, _, saved, cells = torch.ops.fusedrnn.lstm_cell_step(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    grad_h, grad_c = _output_grads("lstm", 2, 5, torch.float32)
    a = dict(grad_h=grad_h, grad_c=grad_c, input=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, h=h,
             saved=saved, cells=cells)
    change(a)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.lstm_cell_step_backward(*a.values(), list(ALL_GRADS))


def test_backward_op_refuses_a_cell_state_for_cells_without_one():
    torch.manual_seed(0)
    args = _args("gru", 2, 4, 5, torch.float32)
    grad_h, _ = _output_grads("gru", 2, 5, torch.float32)
    with pytest.raises(RuntimeError, match="grad_c is not taken"):
        _step_and_backward("gru", args, grad_h, torch.randn(2, 5))


# --- The portable row dot products (csrc/cpu/matmul/row_dots.cpp) ----------

_PORTABLE_SCRIPT = """
import sys, torch, fusedrnn
sys.path.insert(0, {tests!r})
import test_cell_step as t
torch.save(t._portable_case_results(), {out!r})
"""


def _portable_case_results():
    """The step op's results and its backward op's for each cell and dtype,
    at sizes ragged against the AVX-512 kernels' rows and lanes."""
    results = {}
    for name in STEP_CELLS:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            if dtype == torch.bfloat16 and not fusedrnn.build_info()["cpu_bfloat16"]:
                continue
            torch.manual_seed(0)
            args = _args(name, 5, 45, 37, dtype)
            grad_h, grad_c = _output_grads(name, 5, 37, dtype)
            results[name, str(dtype)] = (list(_op(name)(*args)),
                                         list(_step_and_backward(name, args, grad_h, grad_c)))
    return results


def test_portable_row_dots_match_the_avx512_kernels(tmp_path):
    """FUSEDRNN_PORTABLE_ROW_DOTS (read once per process) runs the plain
    loops of row_dots.cpp, which a CPU with AVX-512 never reaches: a second
    Python process computes the step and its backward with them, for
    comparison with this process's (AVX-512 kernels where the CPU has
    them)."""
    import os
    import pathlib
    import subprocess
    import sys

    out = tmp_path / "portable.pt"
    script = _PORTABLE_SCRIPT.format(tests=str(pathlib.Path(__file__).parent), out=str(out))
    env = dict(os.environ, FUSEDRNN_PORTABLE_ROW_DOTS="1")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    portable = torch.load(out)
    ours = _portable_case_results()
    assert portable.keys() == ours.keys()
    differs = False
    for key, (forward, backward) in ours.items():
        tolerance = {"torch.float32": 1e-5, "torch.float64": 1e-12,
                     "torch.bfloat16": 2e-2}[key[1]]
        for a, e in zip(portable[key][0] + portable[key][1], forward + backward):
            torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)
        # Two orders of additions: the forward's float32 sums differ in
        # some last bit, unless both processes ran the same loops.
        if key[1] == "torch.float32":
            differs |= not all(torch.equal(a, e) for a, e in zip(portable[key][0], forward))
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert differs, "the environment variable did not select the portable loops"
