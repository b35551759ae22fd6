"""The custom ops: opcheck, argument checks, and that the module uses them."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fusedrnn


def _forward_args(dtype=torch.float32, T=3, B=2, I=4, H=5, bias=True, requires_grad=True):
    make = dict(dtype=dtype, requires_grad=requires_grad)
    return [torch.randn(T, B, I, **make), torch.randn(B, H, **make),
            torch.randn(B, H, **make), torch.randn(4 * H, I, **make),
            torch.randn(4 * H, H, **make),
            torch.randn(4 * H, **make) if bias else None,
            torch.randn(4 * H, **make) if bias else None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck_forward(reverse, bias, dtype):
    torch.manual_seed(0)
    torch.library.opcheck(torch.ops.fusedrnn.lstm_layer_forward.default,
                          (*_forward_args(dtype, bias=bias), reverse))


@pytest.mark.parametrize("with_output_grad", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck_backward(reverse, with_output_grad):
    torch.manual_seed(0)
    args = _forward_args(requires_grad=False)
    y, h_n, c_n, gates, cells = torch.ops.fusedrnn.lstm_layer_forward(*args, reverse)
    grads = (torch.randn_like(y) if with_output_grad else None,
             torch.randn_like(h_n), torch.randn_like(c_n))
    x, h0, c0, w_ih, w_hh = args[:5]
    torch.library.opcheck(torch.ops.fusedrnn.lstm_layer_backward.default,
                          (*grads, x, h0, c0, w_ih, w_hh, y, gates, cells, reverse))


class _OpRecorder(TorchDispatchMode):
    """Records the name of every op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _ops_run(lstm, x):
    with _OpRecorder() as recorder:
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


def test_uncovered_inputs_use_the_reference():
    lstm = fusedrnn.LSTM(4, 5, proj_size=2)
    names = _ops_run(lstm, torch.randn(3, 2, 4, requires_grad=True))
    assert "fusedrnn.lstm_layer_forward" not in names
    assert "aten.sigmoid" in names


@pytest.mark.parametrize("index,bad,message", [
    (1, torch.randn(3, 5), "expected h0 of size"),
    (2, torch.randn(2, 6), "expected c0 of size"),
    (3, torch.randn(20, 3), "expected w_ih of size"),
    (4, torch.randn(20, 4), r"expected w_hh of size \(4H, H\)"),
    (5, torch.randn(19), "expected b_ih of size"),
    (1, torch.randn(2, 5, dtype=torch.float64), "h0 has dtype"),
    (0, torch.randn(3, 2, 4).half(), "supports float32 and float64"),
    (0, torch.randn(2, 4), "3-D time-major input"),
    (0, torch.randn(0, 2, 4), "Expected sequence length to be larger than 0"),
])
def test_kernel_rejects_bad_arguments(index, bad, message):
    args = _forward_args(requires_grad=False)
    args[index] = bad
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


def test_kernel_rejects_one_bias():
    args = _forward_args(requires_grad=False)
    args[6] = None
    with pytest.raises(RuntimeError, match="both biases or neither"):
        torch.ops.fusedrnn.lstm_layer_forward(*args, False)


def test_build_info():
    info = fusedrnn.build_info()
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert "lstm_layer" in info["cpu_kernels"]
