"""fusedrnn.LSTM against torch.nn.LSTM: outputs, final states and gradients."""
import itertools

import pytest
import torch

from helpers import run_and_grad, twin_lstms

CONFIGS = list(itertools.product([1, 2], [False, True], [False, True], [False, True],
                                 [False, True]))
CONFIG_IDS = [f"layers{n}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tm'}-"
              f"{'bias' if bias else 'nobias'}-{'hx' if hx else 'nohx'}"
              for n, bi, bf, bias, hx in CONFIGS]

# (T, B, I, H): a small size and the larger one.
SIZES = {"small": (5, 3, 4, 6), "t100": (100, 16, 64, 64)}
TOLERANCES = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-4)}


def assert_close_all(actual, expected, atol):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=atol, rtol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias,with_hx", CONFIGS,
                         ids=CONFIG_IDS)
def test_matches_nn(num_layers, bidirectional, batch_first, bias, with_hx, size, dtype):
    torch.manual_seed(0)
    T, B, I, H = SIZES[size]
    theirs, ours = twin_lstms(I, H, num_layers, bias=bias, batch_first=batch_first,
                              bidirectional=bidirectional, dtype=dtype)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    hx = None
    if with_hx:
        D = 2 if bidirectional else 1
        hx = (torch.randn(num_layers * D, B, H, dtype=dtype),
              torch.randn(num_layers * D, B, H, dtype=dtype))
    out_atol, grad_atol = TOLERANCES[dtype]
    expected, expected_grads = run_and_grad(theirs, x, hx)
    actual, actual_grads = run_and_grad(ours, x, hx)
    assert_close_all(actual, expected, out_atol)
    assert_close_all(actual_grads, expected_grads, grad_atol)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_reference_fp64(bidirectional):
    """The fused path against the package's own oracle, not only nn."""
    from fusedrnn import reference
    from fusedrnn.stack import run_stack

    torch.manual_seed(1)
    _, ours = twin_lstms(3, 5, 2, bidirectional=bidirectional)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    D = 2 if bidirectional else 1
    hx = (torch.randn(2 * D, 2, 5, dtype=torch.float64),
          torch.randn(2 * D, 2, 5, dtype=torch.float64))
    output, (h_n, c_n) = ours(x, hx)
    ref_out, (ref_h, ref_c) = run_stack(
        x, hx, ours._layer_weights(), reference.lstm_layer, num_layers=2,
        bidirectional=bidirectional, dropout=0.0, training=False)
    assert_close_all((output, h_n, c_n), (ref_out, ref_h, ref_c), 1e-12)
