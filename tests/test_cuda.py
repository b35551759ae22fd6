"""The CUDA kernels: parity with the CPU kernels and with torch.nn (cuDNN),
gradcheck, opcheck, 16-bit accuracy, streams and devices.

The build-info tests run everywhere. Every other test needs a GPU and an
extension built with CUDA, and skips without them. Set FUSEDRNN_EXPECT_CUDA=1
(as bench/device_check.sh does) to make a build without CUDA a failure
instead of a reason to skip.
"""
import copy
import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn.cell_table import CELLS as CELL_TABLE
from helpers import CELLS, OpRecorder, random_hx, requires_gpu, twin_modules
from op_inputs import lstm_layer_args

# Every cell's layer ops, layer-normalized ones included.
OPS = tuple(f"{name}_layer" for name in CELL_TABLE)
MODES = list(CELLS)
LSTM_VARIANTS = [dict(), dict(bias=False), dict(proj=5), dict(packed=True),
                 dict(packed=True, proj=5, B=6)]
LSTM_VARIANT_IDS = ["dense", "nobias", "proj", "packed", "packed-proj"]
HALF_DTYPES = [torch.float16, torch.bfloat16]


# --- everywhere ---------------------------------------------------------------

def test_build_info_reports_cuda_honestly():
    info = fusedrnn.build_info()
    assert isinstance(info["cuda"], bool)
    for op in OPS:
        for direction in ("forward", "backward"):
            registered = torch._C._dispatch_has_kernel_for_dispatch_key(
                f"fusedrnn::{op}_{direction}", "CUDA")
            assert registered == info["cuda"], (op, direction)
    assert tuple(info["cuda_kernels"]) == (OPS if info["cuda"] else ())
    # The modules send CUDA inputs to the kernels exactly when there are some.
    assert ("cuda" in fusedrnn._ops._KERNEL_DTYPES) == info["cuda"]
    if torch.version.cuda is None:
        assert not info["cuda"]
    if os.environ.get("FUSEDRNN_EXPECT_CUDA") == "1":
        assert info["cuda"], "FUSEDRNN_EXPECT_CUDA=1 but fusedrnn was built without CUDA"


def test_import_and_cpu_run():
    lstm = fusedrnn.LSTM(3, 4)
    output, (h_n, c_n) = lstm(torch.randn(2, 1, 3))
    assert output.shape == (2, 1, 4) and h_n.shape == c_n.shape == (1, 1, 4)


# --- helpers ------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_tf32():
    """Exact float32 products in both cuBLAS and cuDNN, so that float32
    tolerances mean the same as on the CPU."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _to(tensors, device, dtype, requires_grad=False):
    """Copies of the floating tensors (None kept) on device in dtype; integer
    tensors (batch_sizes) stay where they are."""
    def move(t):
        if t is None or not t.is_floating_point():
            return t
        return t.detach().to(device, dtype).requires_grad_(requires_grad)
    return [move(t) for t in tensors]


def _weighting(tensors):
    """Fixed random weights for a loss over `tensors`, drawn on the CPU in
    float64 so that every device and dtype gets the same ones."""
    generator = torch.Generator().manual_seed(1234)
    return [torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in tensors]


def _run_and_grad(module, x, hx=None):
    """Outputs (output, *final states) and the gradients of a fixed random
    weighting of them with respect to x, hx and every parameter; works for
    CUDA and 16-bit modules (helpers.run_and_grad is CPU-only)."""
    states = [] if hx is None else (list(hx) if isinstance(hx, tuple) else [hx])
    leaves = [t.detach().clone().requires_grad_(True) for t in states]
    hx_in = None
    if hx is not None:
        hx_in = tuple(leaves) if isinstance(hx, tuple) else leaves[0]
    if isinstance(x, torch.nn.utils.rnn.PackedSequence):
        data = x.data.detach().clone().requires_grad_(True)
        x_in = torch.nn.utils.rnn.PackedSequence(data, x.batch_sizes, x.sorted_indices,
                                                 x.unsorted_indices)
    else:
        data = x_in = x.detach().clone().requires_grad_(True)
    output, final = module(x_in, hx_in)
    if isinstance(output, torch.nn.utils.rnn.PackedSequence):
        output = output.data
    outputs = [output, *(final if isinstance(final, tuple) else (final,))]
    loss = sum((t.double() * w.to(t.device)).sum()
               for t, w in zip(outputs, _weighting(outputs)))
    grads = torch.autograd.grad(loss, [data, *leaves, *module.parameters()])
    return outputs, list(grads)


def _assert_all_close(actual, expected, tol):
    """Pairwise closeness, with the absolute tolerance scaled by the largest
    expected value (at least 1): weight gradients sum over all rows."""
    for a, e in zip(actual, expected, strict=True):
        e = e.cpu().double()
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        torch.testing.assert_close(a.cpu().double(), e, atol=tol * scale, rtol=tol)


def _module_input(config, T, B, I, dtype):
    """Random input for a module on the CPU: dense, or packed with unsorted
    lengths of which one is T."""
    x = torch.randn((B, T, I) if config.get("batch_first") else (T, B, I), dtype=dtype)
    if config.get("packed"):
        lengths = torch.randint(1, T + 1, (B,))
        lengths[1] = T
        x = pack_padded_sequence(x, lengths, batch_first=config.get("batch_first", False),
                                 enforce_sorted=False)
    return x


def _hx_to(hx, device, dtype):
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return tuple(s.to(device, dtype) for s in hx)
    return hx.to(device, dtype)


# --- the LSTM op against the CPU kernel ---------------------------------------

def _lstm_op_outputs(args, reverse, device, dtype):
    """Forward results and backward results (for fixed random output
    gradients) of the LSTM ops, with args moved to device and dtype."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes = _to(args, device, dtype)
    forward = torch.ops.fusedrnn.lstm_layer_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                                    batch_sizes, reverse)
    y, h_n, c_n, gates, cells = forward
    grads = [w.to(device, dtype) for w in _weighting((y, h_n, c_n))]
    backward = torch.ops.fusedrnn.lstm_layer_backward(
        *grads, x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, gates, cells, reverse)
    return list(forward), [g for g in backward if g.numel() > 0]


@requires_gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("variant", LSTM_VARIANTS, ids=LSTM_VARIANT_IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_op_matches_cpu_kernel(reverse, variant, dtype, tol):
    torch.manual_seed(0)
    sizes = dict(T=6, B=5, I=7, H=16)
    args = lstm_layer_args(**{**sizes, **variant}, requires_grad=False)
    expected = _lstm_op_outputs(args, reverse, "cpu", torch.float64)
    actual = _lstm_op_outputs(args, reverse, "cuda", dtype)
    for a, e in zip(actual, expected, strict=True):
        _assert_all_close(a, e, tol)


@requires_gpu
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_lstm_op_keeps_16_bit_state_in_float32(dtype):
    args = _to(lstm_layer_args(requires_grad=False, proj=2), "cuda", dtype)
    y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, False)
    assert y.dtype == h_n.dtype == c_n.dtype == dtype
    assert gates.dtype == cells.dtype == torch.float32
    grads = torch.ops.fusedrnn.lstm_layer_backward(
        y, h_n, c_n, *args[:5], args[7], args[8], y, gates, cells, False)
    assert all(g.dtype == dtype for g in grads)


# --- gradcheck and opcheck on CUDA ---------------------------------------------

@requires_gpu
@pytest.mark.parametrize("variant", LSTM_VARIANTS, ids=LSTM_VARIANT_IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_op_gradcheck(variant, reverse):
    torch.manual_seed(0)
    *tensors, batch_sizes = _to(lstm_layer_args(**variant), "cuda", torch.float64, True)

    def layer(*tensors):
        return torch.ops.fusedrnn.lstm_layer_forward(*tensors, batch_sizes, reverse)[:3]

    assert torch.autograd.gradcheck(layer, tuple(tensors))


def _single_state_args(gates, *, T=4, B=3, I=2, H=3, packed=False, bias=True):
    """(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes) for the GRU/RNN ops,
    on the CPU in float64; packed lengths as in op_inputs.lstm_layer_args."""
    x, h0, _, _, _, _, _, _, batch_sizes = lstm_layer_args(
        T=T, B=B, I=I, H=H, packed=packed, requires_grad=False)
    return (x, h0, torch.randn(gates * H, I, dtype=torch.float64),
            torch.randn(gates * H, H, dtype=torch.float64),
            torch.randn(gates * H, dtype=torch.float64) if bias else None,
            torch.randn(gates * H, dtype=torch.float64) if bias else None, batch_sizes)


SINGLE_STATE = {"gru": 3, "rnn_tanh": 1, "rnn_relu": 1}  # cell -> gates


def _single_state_call(op, tensors, batch_sizes, reverse):
    """A GRU/RNN forward op on (x, h0, w_ih, w_hh, b_ih, b_hh): no c0, no w_hr."""
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors
    return op(x, h0, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, reverse)


@requires_gpu
@pytest.mark.parametrize("cell", list(SINGLE_STATE))
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_single_state_op_gradcheck(cell, packed, reverse):
    torch.manual_seed(0)
    op = getattr(torch.ops.fusedrnn, f"{cell}_layer_forward")
    *tensors, batch_sizes = _to(_single_state_args(SINGLE_STATE[cell], packed=packed), "cuda",
                                torch.float64, True)

    def layer(*tensors):
        return _single_state_call(op, tensors, batch_sizes, reverse)[:2]

    assert torch.autograd.gradcheck(layer, tuple(tensors))


@requires_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF_DTYPES])
@pytest.mark.parametrize("variant", LSTM_VARIANTS, ids=LSTM_VARIANT_IDS)
def test_lstm_opcheck(variant, dtype):
    torch.manual_seed(0)
    args = _to(lstm_layer_args(**variant), "cuda", dtype, True)
    torch.library.opcheck(torch.ops.fusedrnn.lstm_layer_forward.default, (*args, True))
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes = _to(args, "cuda", dtype)
    y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, False)
    torch.library.opcheck(
        torch.ops.fusedrnn.lstm_layer_backward.default,
        (torch.randn_like(y), torch.randn_like(h_n), None, x, h0, c0, w_ih, w_hh, w_hr,
         batch_sizes, y, gates, cells, False))


@requires_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cell", list(SINGLE_STATE))
def test_single_state_opcheck(cell, dtype):
    torch.manual_seed(0)
    op = getattr(torch.ops.fusedrnn, f"{cell}_layer_forward")
    *tensors, batch_sizes = _to(_single_state_args(SINGLE_STATE[cell], packed=True), "cuda",
                                dtype, True)
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors
    torch.library.opcheck(op.default,
                          (x, h0, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, False))


# --- the modules against torch.nn (cuDNN) and against the CPU ------------------

NN_CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(batch_first=True, bias=False),
    dict(packed=True, bidirectional=True),
    dict(packed=True, batch_first=True, num_layers=2),
]
NN_CONFIG_IDS = ["plain", "L2-bi", "bf-nobias", "packed-bi", "packed-bf-L2"]


def _twins_on_cuda(mode, config, I, H, dtype, proj_size=0):
    kwargs = {k: config[k] for k in ("num_layers", "bidirectional", "batch_first", "bias")
              if k in config}
    if proj_size:
        kwargs["proj_size"] = proj_size
    theirs, ours = twin_modules(mode, I, H, dtype=dtype, **kwargs)
    return theirs.cuda(), ours.cuda()


@requires_gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("config", NN_CONFIGS, ids=NN_CONFIG_IDS)
@pytest.mark.parametrize("mode", MODES)
def test_module_matches_nn_on_cuda(mode, config, dtype, tol):
    torch.manual_seed(0)
    T, B, I, H = 5, 4, 6, 8
    theirs, ours = _twins_on_cuda(mode, config, I, H, dtype)
    x = _module_input(config, T, B, I, dtype).to("cuda", dtype)
    hx = _hx_to(random_hx(ours, B, dtype), "cuda", dtype)
    expected, expected_grads = _run_and_grad(theirs, x, hx)
    actual, actual_grads = _run_and_grad(ours, x, hx)
    _assert_all_close(actual, expected, tol)
    _assert_all_close(actual_grads, expected_grads, tol)


@requires_gpu
@pytest.mark.parametrize("packed", [False, True])
def test_projected_lstm_matches_nn_on_cuda(packed):
    torch.manual_seed(0)
    config = dict(num_layers=2, bidirectional=True, packed=packed)
    theirs, ours = _twins_on_cuda("LSTM", config, 6, 8, torch.float64, proj_size=3)
    x = _module_input(config, 5, 4, 6, torch.float64).to("cuda", torch.float64)
    expected, expected_grads = _run_and_grad(theirs, x)
    actual, actual_grads = _run_and_grad(ours, x)
    _assert_all_close(actual, expected, 1e-10)
    _assert_all_close(actual_grads, expected_grads, 1e-10)


@requires_gpu
@pytest.mark.parametrize("mode", MODES)
def test_module_at_scale_matches_cpu(mode):
    """Sizes past one thread block per step, in float32 against the CPU's
    float64: 64 rows of 512 units (projected to 128 in the LSTM)."""
    torch.manual_seed(0)
    T, B, I, H = 4, 64, 256, 512
    proj_size = 128 if mode == "LSTM" else 0
    kwargs = dict(proj_size=proj_size) if proj_size else {}
    _, cpu_module = twin_modules(mode, I, H, dtype=torch.float64, **kwargs)
    cuda_module = copy.deepcopy(cpu_module).to("cuda", torch.float32)
    x = torch.randn(T, B, I, dtype=torch.float64)
    expected, expected_grads = _run_and_grad(cpu_module, x)
    actual, actual_grads = _run_and_grad(cuda_module, x.to("cuda", torch.float32))
    _assert_all_close(actual, expected, 1e-4)
    _assert_all_close(actual_grads, expected_grads, 1e-4)


# --- 16-bit accuracy ---------------------------------------------------------------

# Largest error allowed, relative to the largest reference value (at least
# 1): outputs and states, then gradients. float16 keeps 11 significant bits,
# bfloat16 8; every step stores h in 16 bits. Where cuDNN's own error in the
# same dtype is larger, 1.5 times that.
HALF_BOUNDS = {torch.float16: (1e-2, 2e-2), torch.bfloat16: (6e-2, 1e-1)}
# A ReLU RNN's bfloat16 gradients depend on which near-zero pre-activations
# rounding moves across 0, not on how carefully the kernels sum. Measured on
# an H100 (2026-11-27): ours 0.15, cuDNN's 0.10 (CPU: ours 0.12, nn's 0.13).
RELU_BFLOAT16_GRAD_BOUND = 0.2


def _relative_errors(actual, expected):
    return [((a.cpu().double() - e).abs().max() / max(1.0, e.abs().max().item())).item()
            for a, e in zip(actual, expected, strict=True)]


@requires_gpu
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_16_bit_modules_against_float64(mode, packed, dtype):
    """16-bit modules on CUDA against a float64 CPU reference that has the
    same 16-bit weights and inputs, so that only the computation differs."""
    torch.manual_seed(0)
    T, B, I, H = 20, 8, 32, 64
    config = dict(packed=packed, bidirectional=True)
    theirs, ours = twin_modules(mode, I, H, dtype=torch.float32, bidirectional=True)
    ours, theirs = ours.to("cuda", dtype), theirs.to("cuda", dtype)
    reference = copy.deepcopy(theirs).to("cpu", torch.float64)
    x = _module_input(config, T, B, I, torch.float32).to("cuda", dtype)
    expected, expected_grads = _run_and_grad(reference, x.to("cpu", torch.float64))
    actual, actual_grads = _run_and_grad(ours, x)
    errors = _relative_errors(actual, expected)
    grad_errors = _relative_errors(actual_grads, expected_grads)
    out_bound, grad_bound = HALF_BOUNDS[dtype]
    if mode == "RNN_RELU" and dtype == torch.bfloat16:
        grad_bound = RELU_BFLOAT16_GRAD_BOUND
    try:
        cudnn, cudnn_grads = _run_and_grad(theirs, x)
        cudnn_errors = _relative_errors(cudnn, expected)
        cudnn_grad_errors = _relative_errors(cudnn_grads, expected_grads)
        out_bound = max(out_bound, 1.5 * max(cudnn_errors))
        grad_bound = max(grad_bound, 1.5 * max(cudnn_grad_errors))
        cudnn_context = f"{cudnn_errors} / grads {cudnn_grad_errors}"
    except RuntimeError as error:  # torch.nn lacks some 16-bit RNNs on some versions
        cudnn_context = f"unavailable ({error})"
    context = (f"fusedrnn errors {errors} / grads {grad_errors}; "
               f"torch.nn {cudnn_context}")
    assert max(errors) <= out_bound, context
    assert max(grad_errors) <= grad_bound, context


# --- the modules use the kernels; streams, devices, determinism, autocast -------

@requires_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF_DTYPES])
@pytest.mark.parametrize("mode", MODES)
def test_modules_run_the_cuda_kernels(mode, dtype):
    _, ours = twin_modules(mode, 4, 5, dtype=dtype)
    ours = ours.cuda()
    x = torch.randn(3, 2, 4, dtype=dtype, device="cuda", requires_grad=True)
    with OpRecorder() as recorder:
        output, _ = ours(x)
        output.float().sum().backward()
    op = mode.lower()
    assert recorder.names.count(f"fusedrnn.{op}_layer_forward") == 1
    assert recorder.names.count(f"fusedrnn.{op}_layer_backward") == 1
    assert "aten.sigmoid" not in recorder.names and "aten.tanh" not in recorder.names


@requires_gpu
def test_runs_on_the_current_stream():
    torch.manual_seed(0)
    _, ours = twin_modules("LSTM", 16, 32, dtype=torch.float32, num_layers=2)
    ours = ours.cuda()
    x = torch.randn(50, 8, 16, device="cuda")
    expected, expected_grads = _run_and_grad(ours, x)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        actual, actual_grads = _run_and_grad(ours, x)
    torch.cuda.current_stream().wait_stream(stream)
    _assert_all_close(actual, expected, 1e-6)
    _assert_all_close(actual_grads, expected_grads, 1e-6)


@requires_gpu
@pytest.mark.parametrize("mode", MODES)
def test_deterministic(mode):
    """No atomics anywhere: two runs agree to the bit."""
    torch.manual_seed(0)
    _, ours = twin_modules(mode, 16, 32, dtype=torch.float32, bidirectional=True)
    ours = ours.cuda()
    x = _module_input(dict(packed=True), 30, 8, 16, torch.float32).to("cuda", torch.float32)
    first, first_grads = _run_and_grad(ours, x)
    second, second_grads = _run_and_grad(ours, x)
    for a, b in zip(first + first_grads, second + second_grads, strict=True):
        assert torch.equal(a, b)


@requires_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_inputs_on_another_gpu():
    torch.manual_seed(0)
    _, ours = twin_modules("LSTM", 4, 8, dtype=torch.float64, proj_size=3)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    expected, expected_grads = _run_and_grad(ours.to("cuda:0"), x.to("cuda:0"))
    with torch.cuda.device(0):
        actual, actual_grads = _run_and_grad(ours.to("cuda:1"), x.to("cuda:1"))
    assert actual[0].device == torch.device("cuda:1")
    _assert_all_close(actual, expected, 1e-10)
    _assert_all_close(actual_grads, expected_grads, 1e-10)


@requires_gpu
@pytest.mark.parametrize("mode", MODES)
def test_autocast_like_nn(mode):
    torch.manual_seed(0)
    theirs, ours = twin_modules(mode, 4, 8, dtype=torch.float32)
    theirs, ours = theirs.cuda(), ours.cuda()
    x = torch.randn(5, 3, 4, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        expected, _ = theirs(x)
        actual, _ = ours(x)
    assert actual.dtype == expected.dtype
    torch.testing.assert_close(actual.float(), expected.float(), atol=1e-2, rtol=1e-2)


@requires_gpu
@pytest.mark.parametrize("index,bad,message", [
    (1, dict(size=(2, 5), device="cpu"), "h0 is on cpu but input is on cuda"),
    (1, dict(size=(2, 5), dtype=torch.float64), "h0 has dtype"),
    (0, dict(size=(3, 2, 4), dtype=torch.int32),
     "support float32, float64, float16 and bfloat16"),
    (3, dict(size=(20, 3)), "expected w_ih of size"),
])
def test_cuda_kernel_rejects_bad_arguments(index, bad, message):
    args = _to(lstm_layer_args(T=3, B=2, I=4, H=5, requires_grad=False), "cuda",
               torch.float32)
    args[index] = torch.zeros(**{"device": "cuda", "dtype": torch.float32, **bad})
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


@requires_gpu
def test_cuda_kernel_wants_batch_sizes_on_the_cpu():
    args = _to(lstm_layer_args(T=3, B=2, packed=True, requires_grad=False), "cuda",
               torch.float32)
    args[8] = args[8].cuda()
    with pytest.raises(RuntimeError, match="1-D int64 CPU tensor"):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


@requires_gpu
def test_backward_rejects_16_bit_saved_values():
    args = _to(lstm_layer_args(requires_grad=False), "cuda", torch.float16)
    y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, False)
    with pytest.raises(RuntimeError, match="expected saved of dtype Float"):
        torch.ops.fusedrnn.lstm_layer_backward(
            y, h_n, c_n, *args[:5], None, None, y, gates.half(), cells, False)


# --- regularization inside the recurrence -------------------------------------

@requires_gpu
def test_random_mask_is_the_same_on_cuda_and_cpu():
    seed = torch.tensor([987654321])
    cpu = torch.ops.fusedrnn.random_mask(seed, [37, 129], 0.3)
    gpu = torch.ops.fusedrnn.random_mask(seed.cuda(), [37, 129], 0.3)
    assert torch.equal(cpu, gpu.cpu())


@requires_gpu
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
@pytest.mark.parametrize("packed", [False, True])
def test_regularization_kernel_matches_reference_on_cuda(mode, packed):
    """Recurrent dropout and zoneout in the CUDA kernels against the
    reference on the same masks (the same seed), forward and gradients."""
    kwargs = dict(recurrent_dropout=0.3, zoneout=0.2, weight_drop=0.25)
    if mode == "LSTM":
        module = fusedrnn.LSTM(5, 7, num_layers=2, bidirectional=True, cell_zoneout=0.3, **kwargs)
    elif mode == "GRU":
        module = fusedrnn.GRU(5, 7, num_layers=2, bidirectional=True, **kwargs)
    else:
        module = fusedrnn.RNN(5, 7, num_layers=2, bidirectional=True, **kwargs)
    module = module.double().cuda()
    x = torch.randn(6, 4, 5, dtype=torch.float64, device="cuda")
    lengths = torch.tensor([6, 3, 5, 2])

    def run():
        module.zero_grad()
        leaf = x.clone().requires_grad_(True)
        inp = pack_padded_sequence(leaf, lengths, enforce_sorted=False) if packed else leaf
        torch.manual_seed(1)
        out, _ = module(inp)
        out = out.data if packed else out
        (out * out).sum().backward()
        return [out, leaf.grad] + [p.grad for p in module.parameters()]

    got = run()
    module._force_reference = True
    expected = run()
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10)
