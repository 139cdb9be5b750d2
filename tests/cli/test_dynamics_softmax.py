"""Tests of ``iclkit dynamics softmax`` (through iclkit.cli.main)."""

from __future__ import annotations

import json

import pytest

from iclkit.cli import main


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_balanced_json(capsys):
    out = _json(capsys, ["dynamics", "softmax", "--K", "5", "--n", "40", "--balanced", "--json"])
    assert out["status"] == "converged"
    assert [ph["name"] for ph in out["phases"]] == ["target growth", "convergence"]
    assert set(out["time_to_half_attention"]) == {"balanced"}
    assert out["time_to_loss_eps"]["balanced"] > out["time_to_half_attention"]["balanced"] > 0
    assert out["final_loss"]["balanced"] <= 1e-3


def test_imbalanced_json_and_plots(capsys, tmp_path):
    out = _json(
        capsys,
        [
            "dynamics",
            "softmax",
            "--K",
            "6",
            "--n",
            "60",
            "--p-dominant",
            "0.6",
            "--eta",
            "2",
            "--method",
            "mean-field",
            "--eps",
            "1e-2",
            "--json",
            "--plot",
            str(tmp_path),
        ],
    )
    assert set(out["time_to_loss_eps"]) == {"dominant", "under_represented"}
    assert out["n_phases"]["dominant"] == 1
    assert {ph["query"] for ph in out["phases"]} == {"dominant", "under_represented"}
    assert len(out["plots"]) == 4 and (tmp_path / "softmax_attention.pdf").exists()
    assert "stagewise" in out


def test_monte_carlo_and_query_variant_text_output(capsys):
    assert (
        main(
            [
                "dynamics",
                "softmax",
                "--K",
                "3",
                "--n",
                "8",
                "--method",
                "monte-carlo",
                "--batch",
                "64",
                "--max-time",
                "5",
                "--include-query-in-softmax",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "status:" in text and "time to half attention" in text


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--K", "1", "--n", "5"], "--K"),
        (["--K", "4", "--n", "0"], "N"),
        (["--K", "4", "--n", "5", "--d", "3"], "--d"),
        (["--K", "4", "--n", "5", "--p-dominant", "1.5"], "--p-dominant"),
        (["--K", "3", "--n", "5", "--p", "0.5,0.6,0.1"], "--p"),
        (["--K", "4", "--n", "5", "--eta", "-1"], "--eta"),
        (["--K", "4", "--n", "5", "--eps", "0"], "--eps"),
        (["--K", "4", "--n", "5", "--max-time", "-3"], "--max-time"),
    ],
)
def test_bad_input_exit_2(capsys, argv, name):
    assert main(["dynamics", "softmax", *argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {name}" in err and "Traceback" not in err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["dynamics", "softmax", "--help"])
    text = capsys.readouterr().out
    for opt in (
        "--K",
        "--n",
        "--balanced",
        "--p-dominant",
        "--eta",
        "--method",
        "--eps",
        "--include-query-in-softmax",
        "--plot",
        "--json",
        "--scaling-K",
    ):
        assert opt in text
