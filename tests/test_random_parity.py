"""Property-based parity with nn.LSTM over randomly drawn configurations."""
import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import twin_lstms


@st.composite
def configurations(draw):
    hidden = draw(st.integers(1, 9))
    return dict(
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bias=draw(st.booleans()),
        input_size=draw(st.integers(1, 7)),
        hidden_size=hidden,
        proj_size=draw(st.integers(0, hidden - 1)),
        steps=draw(st.integers(1, 8)),
        batch=draw(st.integers(1, 5)),
        packed=draw(st.booleans()),
        with_hx=draw(st.booleans()),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _run(lstm, config, x, lengths, hx):
    x = x.detach().clone().requires_grad_(True)
    leaves = [x]
    if hx is not None:
        hx = tuple(t.detach().clone().requires_grad_(True) for t in hx)
        leaves += list(hx)
    inputs = x
    if config["packed"]:
        inputs = pack_padded_sequence(x, lengths, batch_first=config["batch_first"],
                                      enforce_sorted=False)
    output, (h_n, c_n) = lstm(inputs, hx)
    output = output.data if config["packed"] else output
    generator = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in (output, h_n, c_n))
    grads = torch.autograd.grad(loss, leaves + list(lstm.parameters()))
    return (output, h_n, c_n) + grads


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_random_configuration_matches_nn(config):
    torch.manual_seed(config["seed"])
    dtype = config["dtype"]
    theirs, ours = twin_lstms(
        config["input_size"], config["hidden_size"], config["num_layers"],
        bias=config["bias"], batch_first=config["batch_first"],
        bidirectional=config["bidirectional"], proj_size=config["proj_size"], dtype=dtype)
    T, B = config["steps"], config["batch"]
    shape = (B, T, config["input_size"]) if config["batch_first"] else (T, B, config["input_size"])
    x = torch.randn(shape, dtype=dtype)
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    hx = None
    if config["with_hx"]:
        layers = config["num_layers"] * (2 if config["bidirectional"] else 1)
        hx = (torch.randn(layers, B, config["proj_size"] or config["hidden_size"], dtype=dtype),
              torch.randn(layers, B, config["hidden_size"], dtype=dtype))
    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    with warnings.catch_warnings():
        # nn.LSTM says it leaves oneDNN for projections; not our concern here.
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        expected = _run(theirs, config, x, lengths, hx)
    actual = _run(ours, config, x, lengths, hx)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)

