"""``iclkit run-algo`` says how the algorithm ended: converged / max_iter / closed-form, or
diverged with the first non-finite iteration (the same as the library's EMResult)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from iclkit.cli import main
from iclkit.constructions.algorithms import gradient_em


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    out = tmp_path / "prompts.npz"
    argv = ["sample", "--d", "2", "--K", "2", "--n", "20", "--batch", "3", "--seed", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["run-algo", *argv])
    return rc, capsys.readouterr().out.strip()


def test_status_is_printed(
    prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "est.npz")
    rc, line = _run(capsys, "--algo", "em", "--in", str(prompts), "--out", out, "--T-outer", "200")
    assert rc == 0 and line.startswith("em: converged; wrote beta (3, 2, 2)"), line
    rc, line = _run(capsys, "--algo", "em", "--in", str(prompts), "--out", out, "--T-outer", "0")
    assert rc == 0 and line.startswith("em: max_iter; wrote"), line
    rc, line = _run(capsys, "--algo", "ols", "--in", str(prompts), "--out", out)
    assert rc == 0 and line.startswith("ols: closed-form; wrote"), line


def test_divergence_is_printed_with_its_iteration(
    prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "est.npz"
    argv = ["--algo", "gradient-em", "--in", str(prompts), "--out", str(out)]
    rc, line = _run(capsys, *argv, "--T-outer", "200", "--alpha", "1e6")
    assert rc == 0
    match = re.match(
        r"gradient-em: diverged \(first non-finite value at iteration (\d+); (\d+) of 3 prompts "
        r"keep their last finite iterate, not an estimate\); wrote",
        line,
    )
    assert match, line
    with np.load(prompts) as data:
        t = {k: torch.from_numpy(data[k]) for k in ("X", "y", "init", "sigma")}
    ref = gradient_em(t["X"], t["y"], t["init"], t["sigma"], T_outer=200, alpha=1e6)
    assert int(match.group(1)) == ref.first_nonfinite
    assert int(match.group(2)) == int(ref.diverged.sum()) >= 1
    with np.load(out) as est:
        assert np.all(np.isfinite(est["beta"]))  # the last finite iterates, never NaN


def test_truncated_input_is_one_line_and_exit_2(
    prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.npz"
    cut.write_bytes(prompts.read_bytes()[: prompts.stat().st_size // 2])
    rc = main(["run-algo", "--algo", "em", "--in", str(cut), "--out", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(cut) in err, err
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "o.npz").exists()
