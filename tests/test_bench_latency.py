"""The latency group of the benchmark suite: ONNX Runtime's recurrent
nodes built by bench/onnx_peer.py compute what torch computes."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, as `python -m bench` finds it

from bench import onnx_peer  # noqa: E402


# --- ONNX Runtime's nodes against torch ------------------------------------------------

TOLERANCE = dict(atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_onnx_layer_matches_torch(cell, layers, bidirectional):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](
        5, 7, num_layers=layers, bidirectional=bidirectional)
    x = torch.randn(4, 3, 5)
    peer = onnx_peer.OnnxRecurrent(module, cell, threads=1)
    with torch.no_grad():
        expected, _ = module(x)
    torch.testing.assert_close(torch.from_numpy(peer.run(peer.feeds(x))), expected, **TOLERANCE)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_onnx_cell_matches_torch(cell):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cell](5, 7)
    x = torch.randn(3, 5)
    states = [torch.randn(3, 7) for _ in range(2 if cell == "lstm" else 1)]
    peer = onnx_peer.OnnxRecurrent(module, cell, threads=1)
    with torch.no_grad():
        expected = module(x, tuple(states) if cell == "lstm" else states[0])
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = peer.run(peer.feeds(x, *states))
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(ours), theirs, **TOLERANCE)


def test_onnx_gate_order_matters(monkeypatch):
    """The checks above would catch a wrong gate order: with torch's order
    left as it is, ONNX computes something else."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = nn.LSTM(5, 7)
    x = torch.randn(4, 3, 5)
    monkeypatch.setitem(onnx_peer.TORCH_BLOCK_OF_ONNX_GATE, "lstm", [0, 1, 2, 3])
    peer = onnx_peer.OnnxRecurrent(module, "lstm", threads=1)
    with torch.no_grad():
        expected, _ = module(x)
    assert not torch.allclose(torch.from_numpy(peer.run(peer.feeds(x))), expected, atol=1e-3)

