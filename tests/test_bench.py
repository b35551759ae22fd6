"""The benchmark suite (python -m bench) on a tiny grid: it runs, prints its
table, writes a well-formed JSON file, and `compare` reads two of them."""
import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("torch", "torch-native", "fusedrnn", "reference")


def bench(*args):
    """`python -m bench ARGS` from the repository root, as CI calls it.

    On one thread: these timings mean nothing, and two threads contending
    with other jobs for the cores can stall for milliseconds per op.
    """
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of every input kind and mode at T,B,I,H = 3,2,4,5."""
    out = tmp_path_factory.mktemp("bench")
    result = bench("--size", "3,2,4,5", "--min-run-time", "0.01", "--train-steps", "3",
                   "--out", str(out))
    assert result.returncode == 0, result.stderr
    [path] = out.glob("bench-*.json")
    return result.stdout, path, json.loads(path.read_text())


def test_prints_table(tiny_run):
    stdout, _, _ = tiny_run
    for text in ("LSTM on cpu", "fused/torch", "3,2,4,5", "packed", "proj", "End to end"):
        assert text in stdout


def test_json_describes_the_run(tiny_run):
    _, _, document = tiny_run
    assert document["machine"]["cores"] >= 1
    assert document["machine"]["cpu_capability"]
    assert document["versions"]["torch"]
    assert "torch_version" in document["build_info"]
    assert document["peaks"]["cpu/float32"]["gflops"] > 0


def test_json_has_every_case(tiny_run):
    _, _, document = tiny_run
    cases = document["cases"]
    assert {(case["input"], case["mode"]) for case in cases} == {
        (kind, mode) for kind in ("dense", "packed", "proj") for mode in ("fwd", "fwd+bwd")}
    for case in cases:
        assert case["flops"] > 0
        assert case["proj_size"] == (2 if case["input"] == "proj" else 0)
        assert set(case["results"]) == set(IMPLS)
        for name, result in case["results"].items():
            assert "error" not in result, (case["id"], name, result)
            assert result["median_s"] > 0 and result["iqr_s"] >= 0
            assert result["samples"] >= 3
            assert result["gflops"] > 0 and result["pct_of_peak"] > 0
            assert ("saved_bytes" in result) == (case["mode"] == "fwd+bwd")
        assert isinstance(case["results"]["fusedrnn"]["ops"], list)


def test_json_has_end_to_end(tiny_run):
    _, _, document = tiny_run
    assert {record["cell"] for record in document["train"]} == {"lstm", "gru", "rnn"}
    for record in document["train"]:
        assert record["steps"] == 3
        assert record["torch"]["steps_per_s"] > 0 and record["fusedrnn"]["steps_per_s"] > 0
        assert record["max_loss_diff"] < 1e-3  # same seed, same data: same curve up to rounding


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="no matplotlib")
def test_writes_plot(tiny_run):
    _, path, _ = tiny_run
    assert path.with_suffix(".png").stat().st_size > 0


def test_compare_reports_changes(tiny_run, tmp_path):
    _, path, document = tiny_run
    slower = copy.deepcopy(document)
    case = slower["cases"][0]
    case["results"]["fusedrnn"]["median_s"] *= 10
    new_path = tmp_path / "new.json"
    new_path.write_text(json.dumps(slower))

    forward = bench("compare", str(path), str(new_path))
    assert forward.returncode == 0, forward.stderr
    assert "slower (1)" in forward.stdout and case["id"] in forward.stdout
    assert "faster" not in forward.stdout

    backward = bench("compare", str(new_path), str(path))
    assert "faster (1)" in backward.stdout

