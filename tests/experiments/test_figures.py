"""Tests of iclkit.experiments.figures: each figure is drawn from result rows (synthetic rows with
the sweep's schema, no training) into a valid PNG and a PDF with embedded TrueType fonts; the
CLI redraws from a results folder."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from iclkit import cli
from iclkit.experiments.evaluation import BAYES_FLOOR
from iclkit.experiments.figures import CLIP_FACTOR, draw_figure
from iclkit.experiments.sweep import RESULT_SCHEMA, write_cell
from iclkit.theory.validation import ParameterError


def _rows(figure: str, methods: tuple[str, ...] = ("transformer", "em", "ols")) -> pd.DataFrame:
    rows = []
    axis = {"fig1": [2, 3], "fig2": [32, 256, 2048], "fig3": [2, 4, 8], "fig4": [16, 32, 64]}
    for i, v in enumerate(axis[figure]):
        for snr in (2.0, 10.0):
            for seed in (0, 1):
                for method in methods:
                    for m in [1, 5, 20] if figure == "fig1" else [20]:
                        r = {name: np.nan for name in RESULT_SCHEMA.names}
                        r.update(
                            figure=figure, scale="test", cell_id=f"c{i}{snr}{seed}", seed=seed,
                            method=method, position=m, excess_risk=1.0 / m + 0.1 * i + 0.01 * seed,
                            excess_risk_se=0.01, prompts=100, K=v if figure == "fig1" else 2,
                            d=v if figure == "fig3" else 5, n=20, snr=snr,
                            D=v if figure == "fig4" else 32, layers=2, heads=2,
                            arch="relu_encoder", train_mode="fixed" if figure == "fig2" else "fresh",
                            B=v if figure == "fig2" else None, train_steps=1,
                            config_json="{}", versions_json="{}", git_commit="x",
                        )  # fmt: skip
                        rows.append(r)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("figure", ["fig1", "fig2", "fig3", "fig4"])
def test_figures_are_valid_png_and_truetype_pdf(tmp_path: object, figure: str) -> None:
    res = draw_figure(figure, _rows(figure), os.path.join(str(tmp_path), figure))
    with open(res.png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(res.pdf, "rb") as fh:
        pdf = fh.read()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType (fonttype 42), not Type 3
    # two seeds per point: the drawn mean is their average
    pts = res.points
    assert set(pts["seeds"]) == {2}
    assert set(pts["method"]) == {"transformer", "em"}


def test_fig1_draws_spectral_em_and_the_bayes_floor_and_clips(tmp_path: object) -> None:
    """Figure 1 draws EM from both starts and the Bayes floor; other rows (ols) are left out.
    The y axis stops at CLIP_FACTOR times the largest transformer / floor value + SE: a runaway
    EM point (1e3) is marked off scale, the others are not."""
    methods = ("transformer", "em", "em_spectral", BAYES_FLOOR, "ols")
    rows = _rows("fig1", methods)
    runaway = (rows.method == "em") & (rows.position == 1)
    rows.loc[runaway, "excess_risk"] = 1e3
    res = draw_figure("fig1", rows, os.path.join(str(tmp_path), "fig1"))
    pts = res.points
    assert set(pts["method"]) == set(methods) - {"ols"}
    assert os.path.getsize(res.png) > 1000
    ref = pts[pts.method.isin(["transformer", BAYES_FLOOR])]
    top = CLIP_FACTOR * float((ref.excess_risk + ref.se).max())
    assert set(pts.loc[pts.off_scale, "method"]) == {"em"}
    assert bool((pts.loc[pts.off_scale, "position"] == 1).all())
    assert bool((pts.loc[~pts.off_scale, "excess_risk"] <= top).all())


def test_plot_cli_redraws_from_results(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    rdir = os.path.join(str(tmp_path), "fig3", "results")
    df = _rows("fig3")
    for _cid, g in df.groupby("cell_id"):
        write_cell(rdir, g.drop(columns=["versions_json", "git_commit", "finished_utc"]),
                   {"versions_json": "{}", "git_commit": "x"})  # fmt: skip
    assert cli.main(["plot", "fig3", "--results", str(tmp_path)]) == 0
    assert os.path.getsize(os.path.join(str(tmp_path), "fig3", "fig3.png")) > 1000
    assert '"fig3"' in capsys.readouterr().out


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="figure"):
        draw_figure("fig7", _rows("fig1"), "/tmp/x")
    with pytest.raises(ParameterError, match="no rows"):
        draw_figure("fig2", _rows("fig1"), "/tmp/x")
