"""Every example in examples/ trains at a tiny size, and its loss falls."""
import importlib
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).parent.parent / "examples"
# The examples import their shared `common` module as scripts do.
sys.path.insert(0, str(EXAMPLES))

TINY = ["--steps", "40", "--batch", "16", "--hidden", "16", "--threads", "1"]
# (The sentiment classifier sits at chance for its first few dozen steps.)
EXTRA = {"generate": ["--samples", "20"], "sentiment": ["--steps", "100", "--batch", "32"]}


@pytest.fixture(autouse=True)
def keep_thread_count():
    # The examples set torch's thread count (--threads); later tests get theirs back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(name, *flags):
    return importlib.import_module(name).main([*TINY, *EXTRA.get(name, []), *flags])


def _falls(losses):
    first, last = losses[:5], losses[-5:]
    return sum(last) / len(last) < 0.8 * sum(first) / len(first)


@pytest.mark.parametrize("name", ["elman_rnn", "sentiment", "generate", "translate", "tagger"])
def test_example_learns(name, capsys):
    result = _run(name)
    assert _falls(result["losses"]), result["losses"]
    printed = capsys.readouterr().out
    assert "ms/step" in printed and "loss" in printed


def test_elman_layer_is_the_lecture_formula():
    assert _run("elman_rnn")["formula_gap"] < 1e-5


def test_impl_nn_runs_the_same_script():
    fused = _run("tagger")["losses"]
    reference = _run("tagger", "--impl", "nn")["losses"]
    # Same seed, same data, same initial weights: the same training, up to
    # rounding.
    assert reference[0] == pytest.approx(fused[0], rel=1e-4)
    assert _falls(reference)
