"""Reproducing the MoR paper's figures: run (or resume) the sweeps, then draw them.

:func:`reproduce_figures` runs the resumable sweep of Figures 1-4 of arXiv 2410.14183
(:func:`iclkit.experiments.sweep.run_sweep`) and draws each figure from its stored results
(:func:`iclkit.experiments.figures.draw_figure`); :func:`redraw_figures` only draws;
:func:`reproduce_constructed` trains a transformer next to the Theorem 3.1 construction and
draws their comparison (:mod:`iclkit.experiments.constructed_vs_trained`);
:func:`reproduce_mechanism` runs the mechanism metrics (:mod:`iclkit.experiments.mechanism_run`)
into ``OUT/mechanism``. Output layout:
``OUT/<figure>/results`` (parquet rows) and ``OUT/<figure>/<figure>.pdf`` / ``.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from iclkit.theory.validation import ParameterError

from .cells import FIGURES, load_preset
from .constructed_vs_trained import (
    COMPARISON_SCALES,
    ComparisonResult,
    compare_trained_and_constructed,
    draw_comparison,
)
from .figures import FigureResult, draw_figure
from .mechanism_run import MECHANISM_SCALES, MechanismRun, run_mechanism
from .sweep import SweepResult, run_sweep

__all__ = [
    "ALL_FIGURES",
    "ConstructedResult",
    "ReproduceResult",
    "figures_named",
    "redraw_figures",
    "reproduce_constructed",
    "reproduce_figures",
    "reproduce_mechanism",
]

#: The name that stands for every figure of :data:`FIGURES`.
ALL_FIGURES = "all"


@dataclass(frozen=True)
class ReproduceResult:
    """The sweep's outcome and the figures drawn from it (figure -> files)."""

    sweep: SweepResult
    figures: dict[str, FigureResult]


@dataclass(frozen=True)
class ConstructedResult:
    """The trained-vs-constructed comparison and the paths of its figure."""

    comparison: ComparisonResult
    pdf: str
    png: str


def figures_named(name: str) -> list[str]:
    """``[name]``, or every figure for ``"all"``."""
    figures = list(FIGURES) if name == ALL_FIGURES else [name]
    for f in figures:
        if f not in FIGURES:
            raise ParameterError(f"figure must be one of {(*FIGURES, ALL_FIGURES)}, got {f!r}")
    return figures


def reproduce_figures(
    figure: str, preset: str, out: str, *, scheduler: str | None = None, progress: bool = True
) -> ReproduceResult:
    """Run (or resume) the sweep of ``figure`` (or ``"all"``) at ``preset`` into ``out`` and
    draw it to ``out/<figure>/<figure>.pdf`` / ``.png``."""
    figures = figures_named(figure)
    if preset.endswith(".toml") and len(figures) > 1:
        raise ParameterError("preset: a .toml path is for one figure; name the figure")
    presets = [load_preset(f, preset) for f in figures]
    sweep = run_sweep(presets, out, scheduler=scheduler, progress=progress)
    drawn = {f: draw_figure(f, sweep.results_dirs[f], os.path.join(out, f, f)) for f in figures}
    return ReproduceResult(sweep, drawn)


def redraw_figures(figure: str, results: str, out: str | None = None) -> dict[str, FigureResult]:
    """Draw ``figure`` (or ``"all"``) from the parquet files under ``results`` (the ``out`` of
    :func:`reproduce_figures`, or a folder of ``cell-*.parquet`` files) to ``out`` (a path
    without extension; default ``results/<figure>/<figure>``)."""
    if not os.path.isdir(results):
        raise ParameterError(f"results: folder not found: {results}")
    figures = figures_named(figure)
    if out is not None and len(figures) > 1:
        raise ParameterError("out: give a figure name (not 'all') with an output path")
    drawn = {}
    for f in figures:
        nested = os.path.join(results, f, "results")
        folder = nested if os.path.isdir(nested) else results
        drawn[f] = draw_figure(f, folder, out or os.path.join(results, f, f))
    return drawn


def reproduce_constructed(preset: str, out: str, *, progress: bool = True) -> ConstructedResult:
    """Train at the scale ``preset`` of :data:`COMPARISON_SCALES` (checkpointed under
    ``out/constructed``), compare with the construction and draw the comparison there."""
    if preset not in COMPARISON_SCALES:
        raise ParameterError(
            f"preset must be one of {tuple(COMPARISON_SCALES)} for 'constructed', got {preset!r}"
        )
    folder = os.path.join(out, "constructed")
    res = compare_trained_and_constructed(
        COMPARISON_SCALES[preset],
        checkpoint=os.path.join(folder, f"trained-{preset}.pt"),
        progress=progress,
    )
    pdf, png = draw_comparison(res, os.path.join(folder, "constructed"))
    return ConstructedResult(res, pdf, png)


def reproduce_mechanism(preset: str, out: str, *, progress: bool = True) -> MechanismRun:
    """Run (or resume) the mechanism metrics at the scale ``preset`` of
    :data:`MECHANISM_SCALES` into ``out/mechanism`` (parquet tables and figures)."""
    if preset not in MECHANISM_SCALES:
        raise ParameterError(
            f"preset must be one of {tuple(MECHANISM_SCALES)} for 'mechanism', got {preset!r}"
        )
    return run_mechanism(MECHANISM_SCALES[preset], out, progress=progress)
