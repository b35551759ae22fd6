"""fusedrnn.LSTM, GRU and RNN against torch.nn: outputs, final states and
gradients, over layers x directions x batch_first x bias x packed x hx."""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from fusedrnn import reference
from fusedrnn.stack import run_stack
from helpers import CELLS, random_hx, run_and_grad, twin_modules

MODES = list(CELLS)
TOLERANCES = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-4)}


def _configs(packed_choices):
    names = ("num_layers", "bidirectional", "batch_first", "bias", "with_hx", "packed")
    configs = itertools.product([1, 2], [False, True], [False, True], [False, True],
                                [False, True], packed_choices)
    return [dict(zip(names, c)) for c in configs]


def _config_id(c):
    return (f"L{c['num_layers']}-{'bi' if c['bidirectional'] else 'uni'}-"
            f"{'bf' if c['batch_first'] else 'tm'}-{'bias' if c['bias'] else 'nobias'}-"
            f"{'hx' if c['with_hx'] else 'nohx'}{'-packed' if c['packed'] else ''}")


def _check_parity(mode, config, size, dtype):
    torch.manual_seed(0)
    T, B, I, H = size
    theirs, ours = twin_modules(mode, I, H, config["num_layers"], bias=config["bias"],
                                batch_first=config["batch_first"],
                                bidirectional=config["bidirectional"], dtype=dtype)
    x = torch.randn((B, T, I) if config["batch_first"] else (T, B, I), dtype=dtype)
    hx = random_hx(ours, B, dtype) if config["with_hx"] else None
    if config["packed"]:
        lengths = torch.randint(1, T + 1, (B,))
        lengths[1] = T
        x = pack_padded_sequence(x, lengths, batch_first=config["batch_first"],
                                 enforce_sorted=False)
    out_atol, grad_atol = TOLERANCES[dtype]
    expected, expected_grads = _run(theirs, x, hx)
    actual, actual_grads = _run(ours, x, hx)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=out_atol, rtol=out_atol)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, atol=grad_atol, rtol=grad_atol)


def _run(module, x, hx):
    if not hasattr(x, "batch_sizes"):
        return run_and_grad(module, x, hx)
    # PackedSequence: differentiate through its data.
    data = x.data.detach().clone().requires_grad_(True)
    packed = type(x)(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    output, final = module(packed, hx)
    outputs = (output.data, *(final if isinstance(final, tuple) else (final,)))
    generator = torch.Generator().manual_seed(1234)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in outputs)
    return outputs, torch.autograd.grad(loss, [data] + list(module.parameters()))


SMALL = (5, 3, 4, 6)  # T, B, I, H
LARGER = (100, 16, 64, 64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("config", _configs([False, True]), ids=_config_id)
@pytest.mark.parametrize("mode", MODES)
def test_matches_nn_small(mode, config, dtype):
    _check_parity(mode, config, SMALL, dtype)


# At T=100 the LSTM runs the whole grid; the other cells, sharing its driver,
# a corner of it (the full grid would double the suite's time in CI).
T100_CASES = [("LSTM", c) for c in _configs([False])] + [
    (mode, c) for mode in MODES[1:] for c in _configs([False])
    if c["num_layers"] == 2 and c["bias"] and c["batch_first"] == c["bidirectional"]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("mode,config", T100_CASES,
                         ids=[f"{m}-{_config_id(c)}" for m, c in T100_CASES])
def test_matches_nn_t100(mode, config, dtype):
    _check_parity(mode, config, LARGER, dtype)


REFERENCE_LAYERS = {"LSTM": reference.lstm_layer, "GRU": reference.gru_layer,
                    "RNN_TANH": reference.rnn_tanh_layer, "RNN_RELU": reference.rnn_relu_layer}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_fp64(mode, bidirectional):
    """The fused path against the package's own oracle, not only nn."""
    torch.manual_seed(1)
    _, ours = twin_modules(mode, 3, 5, 2, bidirectional=bidirectional)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    hx = random_hx(ours, 2)
    output, final = ours(x, hx)
    states = hx if isinstance(hx, tuple) else (hx,)
    ref_output, ref_final = run_stack(
        x, states, ours._layer_weights(), REFERENCE_LAYERS[mode], num_layers=2,
        bidirectional=bidirectional, dropout=0.0, training=False)
    final = final if isinstance(final, tuple) else (final,)
    for a, e in zip((output, *final), (ref_output, *ref_final)):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
