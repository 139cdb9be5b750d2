"""CLI tests of the foundation commands: sample, run-algo, demo, and their error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iclkit.cli import main


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    out = tmp_path / "prompts.npz"
    assert (
        main(
            [
                "sample",
                "--d",
                "3",
                "--K",
                "2",
                "--n",
                "60",
                "--batch",
                "4",
                "--seed",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_sample_writes_the_documented_format(prompts: Path) -> None:
    with np.load(prompts) as data:
        assert data["X"].shape == (4, 60, 3) and data["y"].shape == (4, 60)
        assert data["init"].shape == (4, 2, 3) and data["sigma"].shape == (4,)
        assert data["pi"].shape == (4, 2) and data["x_query"].shape == (4, 3)
        assert data["betas"].shape == (4, 2, 3)


@pytest.mark.parametrize("algo", ["em", "gradient-em", "oracle", "ols", "ridge"])
def test_run_algo_round_trip(algo: str, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "est.npz"
    assert (
        main(
            ["run-algo", "--algo", algo, "--in", str(prompts), "--out", str(out), "--T-outer", "5"]
        )
        == 0
    )
    with np.load(out) as est, np.load(prompts) as data:
        K = 1 if algo in ("ols", "ridge") else 2
        assert est["beta"].shape == (4, K, 3) and est["pi"].shape == (4, K)
        assert np.all(np.isfinite(est["beta"]))
        if algo == "oracle":
            np.testing.assert_array_equal(est["beta"], data["betas"])


def test_run_algo_matches_the_api(prompts: Path, tmp_path: Path) -> None:
    import torch

    from iclkit.constructions.algorithms import gradient_em

    out = tmp_path / "est.npz"
    assert (
        main(
            [
                "run-algo",
                "--algo",
                "gradient-em",
                "--in",
                str(prompts),
                "--out",
                str(out),
                "--T-outer",
                "4",
                "--T-inner",
                "3",
                "--alpha",
                "0.5",
                "--symmetric",
            ]
        )
        == 0
    )
    with np.load(prompts) as d, np.load(out) as est:
        ref = gradient_em(
            torch.from_numpy(d["X"]),
            torch.from_numpy(d["y"]),
            torch.from_numpy(d["init"]),
            torch.from_numpy(d["sigma"]),
            T_outer=4,
            T_inner=3,
            alpha=0.5,
            symmetric=True,
        )
        np.testing.assert_array_equal(est["beta"], ref.betas.numpy())


def test_demo_json_is_fast_and_sane(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--d", "3", "--n", "300", "--batch", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["algorithm"]: r for r in out["rows"]}
    assert rows["oracle"]["excess_risk"] == 0.0
    assert 0 < rows["em"]["excess_risk"] < rows["ols"]["excess_risk"]


def test_demo_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--d", "2", "--n", "100", "--batch", "16", "--T", "3"]) == 0
    text = capsys.readouterr().out
    assert "excess risk vs oracle" in text and "gradient_em" in text


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["sample", "--n", "0", "--out", "x.npz"], "--n"),
        (["sample", "--d", "0", "--out", "x.npz"], "--d"),
        (["sample", "--K", "0", "--out", "x.npz"], "--K"),
        (["sample", "--snr", "-1", "--out", "x.npz"], "--snr"),
        (["sample", "--snr", "nan", "--out", "x.npz"], "--snr"),
        (["sample", "--sigma", "-0.1", "--out", "x.npz"], "--sigma"),
        (["sample", "--K", "3", "--pi", "0.5,0.2,0.2", "--out", "x.npz"], "--pi"),
        (["sample", "--batch", "0", "--out", "x.npz"], "--batch"),
        (["demo", "--K", "0"], "--K"),
    ],
)
def test_cli_bad_parameters(
    argv: list[str],
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {name}" in err and "Traceback" not in err


def test_cli_bad_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5))
    init, sigma = rng.normal(size=(2, 2, 3)), np.ones(2)
    cases = [
        (_write(tmp_path / "a.npz", X=X, y=y, sigma=sigma), "em", "init"),  # missing key init
        (_write(tmp_path / "b.npz", X=X, y=y[:, :4], init=init, sigma=sigma), "em", "y"),
        (_write(tmp_path / "c.npz", X=X, y=y, init=init[:, :, :2], sigma=sigma), "em", "init"),
        (_write(tmp_path / "d.npz", X=X * np.nan, y=y, init=init, sigma=sigma), "em", "X"),
        (_write(tmp_path / "e.npz", X=X, y=y + np.inf, init=init, sigma=sigma), "em", "y"),
        (_write(tmp_path / "f.npz", X=X, y=y, init=init, sigma=-sigma), "em", "sigma"),
        (
            _write(tmp_path / "g.npz", X=X, y=y, init=init, sigma=sigma, pi=np.full((2, 2), 0.7)),
            "em",
            "pi",
        ),
        (_write(tmp_path / "h.npz", y=y, init=init, sigma=sigma), "ols", "--in"),
        (_write(tmp_path / "i.npz", X=X, y=y, init=init, sigma=sigma), "oracle", "betas"),
        (tmp_path / "missing.npz", "em", "--in"),
    ]
    for path, algo, name in cases:
        code = main(
            ["run-algo", "--algo", algo, "--in", str(path), "--out", str(tmp_path / "o.npz")]
        )
        err = capsys.readouterr().err
        assert code == 2, (path, err)
        assert f"error: {name}" in err, (path, err)


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "iclkit.cli",
            "sample",
            "--n",
            "0",
            "--out",
            str(tmp_path / "x.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "n must be >= 1" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "iclkit.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
