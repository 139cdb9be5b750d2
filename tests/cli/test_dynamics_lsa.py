"""Tests of `iclkit dynamics lsa` (iclkit.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iclkit.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["dynamics", "lsa", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_linear_default_json(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "--d", "3", "--n", "6", "--json")
    for key in (
        "G_final",
        "G_star_symbolic",
        "rel_error",
        "loss_final",
        "loss_star",
        "t_final",
        "status",
        "steps",
    ):
        assert key in out
    assert out["status"] == "converged" and out["rel_error"] <= 1e-8
    g = 6 / (6 + 3 + 1)  # Lambda = I: G* = N/(N+d+1) I
    np.testing.assert_allclose(out["G_star_symbolic"], g * np.eye(3), rtol=1e-13)


def test_mor_with_spectrum_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = _run(
        capsys,
        "--data",
        "mor",
        "--d",
        "3",
        "--n",
        "10",
        "--K",
        "3",
        "--pi",
        "0.5,0.3,0.2",
        "--sigma",
        "0.5",
        "--lambda-spectrum",
        "0.5,1,2",
        "--lambda-rotation-seed",
        "3",
        "--plot",
        str(tmp_path),
    )
    assert out["status"] == "converged" and out["rel_error"] <= 1e-8
    assert "G_final" not in out  # matrices only with --json
    assert sorted(Path(p).name for p in out["plots"]) == ["lsa_flow.pdf", "lsa_flow.png"]


def test_symmetric_and_random(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "--data", "mor", "--d", "2", "--n", "5", "--symmetric", "--t-max", "100")
    assert "G* = 0" in out["degenerate_reason"] and out["error_is_absolute"]
    out = _run(capsys, "--d", "2", "--n", "5", "--init", "random", "--sigma", "0.2", "--t-max", "5")
    assert out["flow"] == "full"


def test_scale_violation_warns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(UserWarning, match="condition fails"):
        out = _run(capsys, "--d", "2", "--n", "5", "--init-scale", "3", "--t-max", "50")
    assert out["init"]["condition_holds"] is False


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--d", "2", "--n", "0"], "error: --n"),
        (["--d", "0", "--n", "3"], "error: --d"),
        (["--d", "2", "--n", "3", "--lambda-spectrum", "1,-1"], "--lambda-spectrum"),
        (["--d", "2", "--n", "3", "--lambda-spectrum", "1,2,3"], "--lambda-spectrum"),
        (["--d", "2", "--n", "3", "--sigma", "-1"], "--sigma"),
        (["--d", "2", "--n", "3", "--init-scale", "-1"], "--init-scale"),
        (["--d", "2", "--n", "3", "--init", "random", "--flow", "eigen"], "flow"),
        (["--data", "mor", "--d", "2", "--n", "3", "--K", "3", "--pi", "0.5,0.5"], "pi"),
        (["--data", "mor", "--d", "2", "--n", "3", "--sigma", "0"], "sigma"),
    ],
)
def test_bad_input_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], name: str) -> None:
    assert main(["dynamics", "lsa", *argv]) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err


def test_deprecated_N_spelling_and_progress_flags(capsys: pytest.CaptureFixture[str]) -> None:
    new = _run(capsys, "--d", "2", "--n", "5", "--no-progress", "--json")
    old = _run(capsys, "--d", "2", "--N", "5", "--json")
    assert old["G_final"] == new["G_final"] and old["data"]["N"] == 5


def test_snr_is_not_an_lsa_option(capsys: pytest.CaptureFixture[str]) -> None:
    # --snr sets sigma per prompt elsewhere; the closed-form loss needs one fixed sigma
    with pytest.raises(SystemExit):
        main(["dynamics", "lsa", "--d", "2", "--n", "3", "--snr", "4"])
    capsys.readouterr()
