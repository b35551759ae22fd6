"""torch.autograd.gradcheck and gradgradcheck in float64 on the op and on the module."""
import pytest
import torch

import fusedrnn
from op_inputs import lstm_layer_args

VARIANTS = [dict(), dict(bias=False), dict(proj=2), dict(packed=True),
            dict(packed=True, proj=2, B=4)]
VARIANT_IDS = ["dense", "nobias", "proj", "packed", "packed-proj"]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_op_gradcheck(variant, reverse):
    torch.manual_seed(0)
    args = lstm_layer_args(**variant)
    *tensors, batch_sizes = args

    def layer(*tensors):
        y, h_n, c_n, _, _ = torch.ops.fusedrnn.lstm_layer_forward(*tensors, batch_sizes, reverse)
        return y, h_n, c_n

    assert torch.autograd.gradcheck(layer, tuple(tensors))


@pytest.mark.parametrize("packed", [False, True])
def test_op_gradcheck_only_final_state(packed):
    """Backward with no gradient reaching the outputs (many-to-one models)."""
    torch.manual_seed(0)
    *tensors, batch_sizes = lstm_layer_args(packed=packed)

    def last_hidden(*tensors):
        return torch.ops.fusedrnn.lstm_layer_forward(*tensors, batch_sizes, False)[1]

    assert torch.autograd.gradcheck(last_hidden, tuple(tensors))


@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_module_gradcheck(batch_first, bidirectional, proj_size):
    torch.manual_seed(0)
    lstm = fusedrnn.LSTM(2, 3, num_layers=2, bidirectional=bidirectional,
                         batch_first=batch_first, proj_size=proj_size, dtype=torch.float64)
    D = 2 if bidirectional else 1
    batch = 2 if batch_first else 3
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * D, batch, proj_size or 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2 * D, batch, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(lstm.parameters())
    names = [name for name, _ in lstm.named_parameters()]

    def run(x, h0, c0, *weights):
        swapped = dict(zip(names, weights))
        output, (h_n, c_n) = torch.func.functional_call(lstm, swapped, (x, (h0, c0)))
        return output, h_n, c_n

    assert torch.autograd.gradcheck(run, (x, h0, c0, *params))


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_op_gradgradcheck(variant):
    """Double backward of the op itself (a backward with create_graph=True
    differentiates fusedrnn.reference; test_double_backward.py has the
    modules and cells), in reverse: the forward direction runs in the
    module tests."""
    torch.manual_seed(0)
    *tensors, batch_sizes = lstm_layer_args(**variant)

    def layer(*tensors):
        y, h_n, c_n, _, _ = torch.ops.fusedrnn.lstm_layer_forward(*tensors, batch_sizes, True)
        return y, h_n, c_n

    assert torch.autograd.gradgradcheck(layer, tuple(tensors))
