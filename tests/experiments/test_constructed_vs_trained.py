"""Tests of iclkit.experiments.constructed_vs_trained: the probe recovers a linear target and not
noise, and a tiny end-to-end comparison returns consistent shapes and a drawable figure."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from iclkit.constructions.gradient_em_transformer import ConstructionConfig
from iclkit.experiments.constructed_vs_trained import (
    COMPARISON_TRAINING,
    ComparisonConfig,
    compare_trained_and_constructed,
    draw_comparison,
    probe_r2,
)
from iclkit.theory.validation import ParameterError


def test_probe_r2_linear_target_and_noise() -> None:
    g = torch.Generator().manual_seed(0)
    F = torch.randn(400, 6, generator=g, dtype=torch.float64)
    W = torch.randn(6, 3, generator=g, dtype=torch.float64)
    assert probe_r2(F, F @ W + 1.0) > 0.999  # exactly linear (+ intercept): R^2 = 1 up to ridge
    noise = torch.randn(400, 3, generator=g, dtype=torch.float64)
    assert probe_r2(F, noise) < 0.1  # independent target: held-out R^2 ~ 0 (<= 0 typically)
    with pytest.raises(ParameterError):
        probe_r2(F[:3], noise[:3])


def test_probe_r2_does_not_depend_on_feature_units() -> None:
    # A construction's token row: the estimate (~1) next to scratch coordinates ~10^7 and
    # constants. The target is linear in the small coordinates only; the huge ones must not
    # set the ridge penalty (they did when it was scaled by the raw mean square: R^2 ~ 0).
    g = torch.Generator().manual_seed(1)
    small = torch.randn(200, 4, generator=g, dtype=torch.float64)
    huge = 3e7 * (1 + 0.1 * torch.randn(200, 2, generator=g, dtype=torch.float64))
    const = torch.full((200, 2), 7776.0, dtype=torch.float64)
    W = torch.randn(4, 2, generator=g, dtype=torch.float64)
    F = torch.cat([small, huge, const], 1)
    assert probe_r2(F, small @ W) > 0.999
    assert abs(probe_r2(F * 1e-5, small @ W) - probe_r2(F, small @ W)) < 1e-9  # unit-free
    assert probe_r2(const, small @ W) < 0.05  # constants only: the intercept, R^2 <= ~0


def test_tiny_comparison(tmp_path: object) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine (see test_..._training)
    cfg = ComparisonConfig(
        d=2,
        n=6,
        construction=ConstructionConfig(T_outer=1, relu_terms=4),
        prompts=16,
        D=8,
        layers=1,
        heads=2,
        training=replace(COMPARISON_TRAINING, steps=3),
    )
    try:
        res = compare_trained_and_constructed(cfg)
    finally:
        torch.set_num_threads(threads)
    assert res.y_trained.shape == res.y_constructed.shape == res.y_oracle.shape == (16,)
    assert len(res.probe_trained) == 2  # embedding + 1 layer
    assert len(res.probe_constructed) == res.constructed_layers + 1
    # the gap is the mean squared difference of the two prediction vectors (independent formula)
    gap = float(((res.y_trained - res.y_constructed) ** 2).mean())
    assert res.prediction_gap.mean == pytest.approx(gap, rel=1e-12)
    pdf, png = draw_comparison(res, os.path.join(str(tmp_path), "tvc"))
    assert open(png, "rb").read(4) == b"\x89PNG" and open(pdf, "rb").read(4) == b"%PDF"
    with pytest.raises(ParameterError, match="T_outer"):
        ComparisonConfig(construction=ConstructionConfig(T_outer=0))
