"""torch.autograd.gradcheck in float64 on the op and on the module."""
import pytest
import torch

import fusedrnn


def _op_inputs(bias, T=4, B=3, I=2, H=3):
    double = dict(dtype=torch.float64, requires_grad=True)
    return (torch.randn(T, B, I, **double), torch.randn(B, H, **double),
            torch.randn(B, H, **double), torch.randn(4 * H, I, **double),
            torch.randn(4 * H, H, **double),
            torch.randn(4 * H, **double) if bias else None,
            torch.randn(4 * H, **double) if bias else None)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_op_gradcheck(reverse, bias):
    torch.manual_seed(0)
    inputs = _op_inputs(bias)

    def layer(*args):
        y, h_n, c_n, _, _ = torch.ops.fusedrnn.lstm_layer_forward(*args, reverse)
        return y, h_n, c_n

    assert torch.autograd.gradcheck(layer, inputs)


def test_op_gradcheck_only_final_state():
    """Backward with no gradient reaching the outputs (many-to-one models)."""
    torch.manual_seed(0)
    inputs = _op_inputs(True)

    def last_hidden(*args):
        return torch.ops.fusedrnn.lstm_layer_forward(*args, False)[1]

    assert torch.autograd.gradcheck(last_hidden, inputs)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_module_gradcheck(bidirectional, batch_first):
    torch.manual_seed(0)
    lstm = fusedrnn.LSTM(2, 3, num_layers=2, bidirectional=bidirectional,
                         batch_first=batch_first, dtype=torch.float64)
    D = 2 if bidirectional else 1
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * D, 2 if batch_first else 3, 3, dtype=torch.float64,
                     requires_grad=True)
    c0 = torch.randn_like(h0, requires_grad=True)
    params = tuple(lstm.parameters())
    names = [name for name, _ in lstm.named_parameters()]

    def run(x, h0, c0, *weights):
        swapped = dict(zip(names, weights))
        output, (h_n, c_n) = torch.func.functional_call(lstm, swapped, (x, (h0, c0)))
        return output, h_n, c_n

    assert torch.autograd.gradcheck(run, (x, h0, c0, *params))


def test_double_backward_is_a_clear_error():
    torch.manual_seed(0)
    inputs = _op_inputs(True)
    y = torch.ops.fusedrnn.lstm_layer_forward(*inputs, False)[0]
    (grad_x,) = torch.autograd.grad(y.sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad_x.sum().backward()
