"""The custom ops: opcheck, argument checks, and that the module uses them."""
import pytest
import torch

import fusedrnn
from helpers import OpRecorder
from op_inputs import lstm_layer_args

VARIANTS = [dict(), dict(bias=False), dict(proj=2), dict(packed=True),
            dict(packed=True, proj=2, B=4)]
VARIANT_IDS = ["dense", "nobias", "proj", "packed", "packed-proj"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck_forward(reverse, variant, dtype):
    torch.manual_seed(0)
    torch.library.opcheck(torch.ops.fusedrnn.lstm_layer_forward.default,
                          (*lstm_layer_args(dtype, **variant), reverse))


@pytest.mark.parametrize("with_output_grad", [True, False])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck_backward(reverse, variant, with_output_grad):
    torch.manual_seed(0)
    args = lstm_layer_args(**variant, requires_grad=False)
    y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, reverse)
    grads = (torch.randn_like(y) if with_output_grad else None,
             torch.randn_like(h_n), torch.randn_like(c_n))
    x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = args
    torch.library.opcheck(torch.ops.fusedrnn.lstm_layer_backward.default,
                          (*grads, x, h0, c0, w_ih, w_hh, w_hr, batch_sizes, y, gates, cells,
                           reverse))


def _ops_run(lstm, x):
    with OpRecorder() as recorder:
        output, _ = lstm(x)
        output.sum().backward()
    return recorder.names


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_module_runs_the_fused_op(dtype):
    lstm = fusedrnn.LSTM(4, 5, num_layers=2, bidirectional=True, dtype=dtype)
    names = _ops_run(lstm, torch.randn(3, 2, 4, dtype=dtype, requires_grad=True))
    assert names.count("fusedrnn.lstm_layer_forward") == 4
    assert names.count("fusedrnn.lstm_layer_backward") == 4
    # No per-step ATen math: the reference would run sigmoid/tanh every step.
    assert "aten.sigmoid" not in names and "aten.tanh" not in names


@pytest.mark.parametrize("proj_size", [0, 2])
def test_packed_and_projected_inputs_run_the_fused_op(proj_size):
    lstm = fusedrnn.LSTM(4, 5, proj_size=proj_size, bidirectional=True)
    x = torch.nn.utils.rnn.pack_sequence([torch.randn(3, 4), torch.randn(2, 4)])
    with OpRecorder() as recorder:
        output, _ = lstm(x)
        output.data.sum().backward()
    assert recorder.names.count("fusedrnn.lstm_layer_forward") == 2
    assert "aten.sigmoid" not in recorder.names


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_16_bit_modules_run_the_kernel(dtype):
    """bfloat16 runs on the bfloat16 kernels where the CPU has AVX512_BF16;
    float16, and bfloat16 elsewhere, run on the float32 kernels."""
    torch.manual_seed(0)
    ours = fusedrnn.LSTM(4, 5, 2, dtype=dtype)
    theirs = torch.nn.LSTM(4, 5, 2, dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 2, 4, dtype=dtype, requires_grad=True)
    with OpRecorder() as recorder:
        output, (h_n, c_n) = ours(x)
    kernel_inputs = [args[0].dtype for name, args in recorder.calls
                     if name == "fusedrnn.lstm_layer_forward"]
    bfloat16_kernels = dtype == torch.bfloat16 and fusedrnn.build_info()["cpu_bfloat16"]
    assert kernel_inputs == [dtype if bfloat16_kernels else torch.float32] * 2
    expected, (expected_h, expected_c) = theirs(x)
    for a, e in ((output, expected), (h_n, expected_h), (c_n, expected_c)):
        assert a.dtype == dtype
        torch.testing.assert_close(a, e, atol=2e-2, rtol=2e-2)
    (grad,) = torch.autograd.grad(output.float().sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.float().sum(), x)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad, expected_grad, atol=5e-2, rtol=5e-2)


def test_cpu_bfloat16_without_avx512_bf16_runs_in_float32(monkeypatch):
    """What a CPU without AVX512_BF16 does (fusedrnn._ops reads it from
    build_info at import): the float32 kernels, results in bfloat16."""
    monkeypatch.setitem(fusedrnn._ops._KERNEL_DTYPES, "cpu", (torch.float32, torch.float64))
    monkeypatch.setitem(fusedrnn._ops._FLOAT32_DTYPES, "cpu", (torch.float16, torch.bfloat16))
    torch.manual_seed(0)
    ours = fusedrnn.LSTM(4, 5, dtype=torch.bfloat16)
    theirs = torch.nn.LSTM(4, 5, dtype=torch.bfloat16)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 2, 4, dtype=torch.bfloat16)
    with OpRecorder() as recorder:
        output, _ = ours(x)
    assert [args[0].dtype for name, args in recorder.calls
            if name == "fusedrnn.lstm_layer_forward"] == [torch.float32]
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output, theirs(x)[0], atol=2e-2, rtol=2e-2)


def test_devices_without_kernels_use_the_reference():
    lstm = fusedrnn.LSTM(4, 5, device="meta")
    with OpRecorder() as recorder:
        output, (h_n, _) = lstm(torch.empty(3, 2, 4, device="meta"))
    assert output.shape == (3, 2, 5) and h_n.shape == (1, 2, 5)
    assert "fusedrnn.lstm_layer_forward" not in recorder.names
    assert "aten.sigmoid" in recorder.names


@pytest.mark.parametrize("index,bad,message", [
    (1, torch.randn(3, 5), "expected h0 of size"),
    (2, torch.randn(2, 6), "expected c0 of size"),
    (3, torch.randn(20, 3), "expected w_ih of size"),
    (4, torch.randn(20, 4), r"expected w_hh of size \(4H, H\) without a projection"),
    (4, torch.randn(19, 5), r"expected w_hh of size \(4H, P\)"),
    (7, torch.randn(5, 4), "expected w_hr of size"),
    (8, torch.tensor([2, 1, 1]), "expected a 2-D packed input"),
    (5, torch.randn(19), "expected b_ih of size"),
    (1, torch.randn(2, 5, dtype=torch.float64), "h0 has dtype"),
    (0, torch.randn(3, 2, 4).half(), "support float32, float64 and bfloat16"),
    (0, torch.randn(2, 4), "3-D time-major input"),
    (0, torch.randn(0, 2, 4), "Expected sequence length to be larger than 0"),
])
def test_kernel_rejects_bad_arguments(index, bad, message):
    args = list(lstm_layer_args(torch.float32, T=3, B=2, I=4, H=5, requires_grad=False))
    args[index] = bad
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


@pytest.mark.parametrize("batch_sizes,message", [
    (torch.tensor([2, 1, 1]), "batch_sizes sum to 4 but the packed input has 5 rows"),
    (torch.tensor([1, 2, 1]), "positive and non-increasing"),
    (torch.tensor([2.0, 1.0, 1.0]), "1-D int64 CPU tensor"),
])
def test_kernel_rejects_bad_batch_sizes(batch_sizes, message):
    args = list(lstm_layer_args(torch.float32, T=3, B=2, packed=True, requires_grad=False))
    args[8] = batch_sizes
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


def test_kernel_rejects_one_bias():
    args = list(lstm_layer_args(torch.float32, requires_grad=False))
    args[6] = None
    with pytest.raises(RuntimeError, match="both biases or neither"):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


def test_build_info():
    info = fusedrnn.build_info()
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert "lstm_layer" in info["cpu_kernels"]
