"""Tests of iclkit.experiments.loss_plots: the running mean against a direct loop, the figure files,
bad input."""

from __future__ import annotations

import os

import pytest
import torch

from iclkit.experiments.loss_plots import draw_loss_curves, running_mean
from iclkit.theory.validation import ParameterError


def test_running_mean_against_a_loop() -> None:
    x = torch.randn(17, generator=torch.Generator().manual_seed(0))
    for window in (1, 4, 50):
        got = running_mean(x, window)
        want = [float(x[max(0, s - window + 1) : s + 1].double().mean()) for s in range(17)]
        # cumulative sums in float64 against per-window means: equal to round-off
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-12, rtol=0)


def test_draw_writes_pdf_and_png(tmp_path: object) -> None:
    curves = {"gpt2": torch.linspace(5.0, 3.0, 120), "relu_encoder": torch.linspace(5.0, 2.8, 90)}
    stem = os.path.join(str(tmp_path), "loss")
    pdf, png = draw_loss_curves(curves, stem, references={"Var y": 5.25, "oracle": 2.75})
    assert pdf.endswith(".pdf") and png.endswith(".png")
    assert os.path.getsize(pdf) > 0 and os.path.getsize(png) > 0


def test_bad_input(tmp_path: object) -> None:
    stem = os.path.join(str(tmp_path), "loss")
    with pytest.raises(ParameterError, match="curves"):
        draw_loss_curves({}, stem)
    with pytest.raises(ParameterError, match="curves"):
        draw_loss_curves({"a": torch.tensor([1.0, float("nan")])}, stem)
    with pytest.raises(ParameterError, match="references"):
        draw_loss_curves({"a": torch.ones(3)}, stem, references={"r": float("inf")})
    with pytest.raises(ParameterError, match="legend_loc"):
        draw_loss_curves({"a": torch.ones(3)}, stem, legend_loc="top")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="window"):
        running_mean(torch.ones(3), 0)
