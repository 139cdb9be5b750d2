"""The README's Quick start and .ci/run must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README Quick start has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands() -> None:
    assert len(_quick_start_commands()) == 2


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = _quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run runs the same command, with pip's output kept quiet
    assert test_cmd.replace("pip install ", "pip install -q ") in ci


def test_python_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    """The README's Python example is real code: it runs and prints one error per prompt."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README has no Python example"
    exec(compile(block.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "tensor(" in printed
