"""The README's quick start is what CI runs."""
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _quick_start_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_two_commands_and_ci_runs_the_test_one():
    main_job, tests = _quick_start_commands()
    assert main_job.endswith("python -m bench")
    assert tests.endswith("python -m pytest -q")
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()
