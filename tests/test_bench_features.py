"""The features group of the benchmark suite (python -m bench features): a
smoke run at toy sizes and its JSON file."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_run_writes_every_case(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "features", "--tiny", "--min-run-time", "0.001",
         "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [path] = tmp_path.glob("features-*.json")
    document = json.loads(path.read_text())
    groups = [(case["group"], case["cell"]) for case in document["cases"]]
    assert groups == [("regularization", "lstm"), ("regularization", "gru"),
                      ("layernorm", "lstm"), ("layernorm", "gru")]
    lstm = document["cases"][0]
    assert set(lstm["ratio_to_plain"]) == {"recurrent_dropout", "zoneout", "cell_zoneout",
                                           "weight_drop", "all"}
    assert all(ratio > 0 for ratio in lstm["ratio_to_plain"].values())
    layernorm = document["cases"][2]
    assert set(layernorm["ratio"]) == {"eager loop", "plain fused"}
    assert "over plain" in result.stdout and "LayerNormLSTM" in result.stdout
