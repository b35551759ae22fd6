"""The latency group of the benchmark suite (python -m bench latency): a
smoke run at toy sizes, its JSON file, and the peers' numerics: ONNX
Runtime's recurrent nodes built by bench/onnx_peer.py compute what torch
computes, and the decoding loops agree."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import fusedrnn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, as `python -m bench` finds it

from bench import onnx_peer  # noqa: E402
from bench.latency_cases import SCALES, latency_cases  # noqa: E402

THREADS = 1  # one thread: on a shared machine two can stall for milliseconds


@pytest.fixture(scope="module")
def tiny_latency(tmp_path_factory):
    """One run of every latency case at toy sizes."""
    out = tmp_path_factory.mktemp("latency")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "latency", "--tiny", "--threads", str(THREADS),
         "--min-run-time", "0.001", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [path] = out.glob("latency-*.json")
    return result.stdout, json.loads(path.read_text())


def test_prints_a_table_per_thread_count(tiny_latency):
    stdout, _ = tiny_latency
    for text in (f"{THREADS} thread(s), load average", "fused/torch", "%limit", "LSTMCell B=1 H=8",
                 "GRU stream3 2-layer bidir", "decode"):
        assert text in stdout


def test_json_has_every_case_with_limits_and_ratios(tiny_latency):
    _, document = tiny_latency
    assert document["group"] == "latency"
    machine = document["machines"][str(THREADS)]
    for rate in ("matmul_gflops", "l2_read_gbps", "l3_read_gbps"):
        assert machine[rate] > 0
    cases = document["cases"]
    assert [case["name"] for case in cases] == [case.name for case in latency_cases(SCALES["tiny"])]
    for case in cases:
        assert case["threads"] == THREADS
        limit = case["limit"]
        assert limit["s"] == max(limit["matmul_s"], limit["read_s"]) > 0
        assert limit["flops"] > 0 and limit["read_bytes"] >= limit["weight_bytes"] > 0
        assert limit["by"] in ("matmul", "L2 read", "L3 read", "L2+L3 read")
        assert limit["l2_read_bytes"] + limit["l3_read_bytes"] == limit["read_bytes"]
        assert case["fused_over_torch"] > 0
        for name in ("torch", "fusedrnn"):
            result = case["results"][name]
            assert result["median_s"] > 0 and result["iqr_s"] >= 0
            assert result["limit_over_time"] > 0
        if case["name"].endswith(" bfloat16") and not fusedrnn.build_info()["cpu_bfloat16"]:
            pass  # no bfloat16 kernels on this CPU: the reference runs
        else:
            assert case["results"]["fusedrnn"]["ops"], "fusedrnn's kernel did not run"
        peers = set(case["results"]) - {"torch", "fusedrnn"}
        if case["mode"] == "fwd+bwd" or case["kind"] == "decode":
            assert not peers  # the peers are for inference
        for name in peers:
            assert "error" not in case["results"][name], (case["id"], name)
            assert case["results"][name]["median_s"] > 0
    # The other dtypes' cases: bfloat16 steps and float64 steps and streams.
    names = [case["name"] for case in cases]
    assert sum(name.endswith(" bfloat16") for name in names) == 3
    assert sum(name.endswith(" float64") for name in names) == 10
    decode = [case for case in cases if case["kind"] == "decode"]
    assert decode and all(case["results"]["fusedrnn"]["same_tokens_as_torch"] for case in decode)


def test_int8_peer_runs_the_forward_layers(tiny_latency):
    _, document = tiny_latency
    for case in document["cases"]:
        int8 = (case["kind"] == "layer" and case["mode"] == "fwd"
                and "float64" not in case["name"])
        assert ("torch-int8" in case["results"]) == int8, case["id"]


def test_latency_restores_the_thread_count(monkeypatch):
    from bench import latency

    # One tiny case at two counts: the loop, not the timings, is under test.
    monkeypatch.setattr(latency, "latency_cases", lambda scale: latency_cases(scale)[:1])
    before = torch.get_num_threads()
    document = latency.run_latency("tiny", [1, 2], 0.001, ["onnxruntime"], [])
    assert torch.get_num_threads() == before
    assert set(document["machines"]) == {"1", "2"}
    assert [case["threads"] for case in document["cases"]] == [1, 2]


def test_latency_runs_the_kinds_asked_for(monkeypatch):
    from bench import latency

    # The first step case and the decoding loop, of which only the step runs.
    cases = latency_cases(SCALES["tiny"])
    decode = next(case for case in cases if case.kind == "decode")
    monkeypatch.setattr(latency, "latency_cases", lambda scale: [cases[0], decode])
    document = latency.run_latency("tiny", [1], 0.001, ["onnxruntime"], [], kinds=["step"])
    assert [case["kind"] for case in document["cases"]] == ["step"]
    assert document["settings"]["kinds"] == ["step"]


def test_compare_reads_latency_runs(tiny_latency, tmp_path, capsys):
    """`python -m bench compare` works on two latency files as on grid runs."""
    from bench.compare import compare

    _, document = tiny_latency
    slower = copy.deepcopy(document)
    slower["cases"][0]["results"]["fusedrnn"]["median_s"] *= 10
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(document))
    new.write_text(json.dumps(slower))
    compare(old, new, 0.05)
    assert "slower (1)" in capsys.readouterr().out


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

