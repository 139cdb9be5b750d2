"""``iclkit reproduce``: the papers' figures as resumable sweeps."""

from __future__ import annotations

import argparse
import sys

from iclkit.theory.validation import ParameterError

from .options import SubParsers, print_json

FIGURE_CHOICES = ("fig1", "fig2", "fig3", "fig4", "all")


def add(sub: SubParsers) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train transformers on MoR prompts and redraw MoR Figures 1-4 (resumable Dask sweep)",
        description=(
            "Run (or resume) the sweep of a MoR figure: every cell trains a transformer on MoR "
            "prompts and evaluates it, EM, gradient EM and OLS on the same held-out prompts "
            "(excess risk vs the oracle, per prompt length). Finished cells are stored as "
            "parquet files under OUT/<figure>/results and skipped on a rerun; the figure is "
            "drawn to OUT/<figure>/<figure>.pdf and .png. fig1: risk vs prompt length per K; "
            "fig2: vs training prompts B; fig3: vs dimension d; fig4: vs hidden size D."
        ),
    )
    p.add_argument(
        "figure",
        choices=(*FIGURE_CHOICES, "constructed"),
        help="which figure (all: the four; constructed: trained vs Theorem 3.1 construction, "
        "K = 2, prediction gap and per-layer probes)",
    )
    p.add_argument(
        "--preset",
        default="quick",
        help="smoke (under 2 min per figure on 2 cores), quick (laptop scale, the default), "
        "paper (paper scale, GPU advised), or a path to a preset .toml file",
    )
    p.add_argument(
        "--out", default="iclkit-results", help="output folder (default ./iclkit-results)"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (e.g. tcp://host:8786); default: start a "
        "LocalCluster with the preset's [cluster] settings",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from iclkit.experiments.figures import draw_figure
    from iclkit.experiments.sweep import FIGURES, load_preset, run_sweep

    if args.figure == "constructed":
        return _reproduce_constructed(args)
    figures = list(FIGURES) if args.figure == "all" else [args.figure]
    if args.preset.endswith(".toml") and len(figures) > 1:
        raise ParameterError("--preset: a .toml path is for one figure; name the figure")
    presets = [load_preset(f, args.preset) for f in figures]
    res = run_sweep(presets, args.out, scheduler=args.scheduler, progress=not args.no_progress)
    drawn = {}
    for f in figures:
        fig = draw_figure(f, res.results_dirs[f], os.path.join(args.out, f, f))
        drawn[f] = {"pdf": fig.pdf, "png": fig.png}
    print_json(
        {
            "status": res.status,
            "cells_total": res.cells_total,
            "cells_run": res.cells_run,
            "cells_skipped": res.cells_skipped,
            "failures": res.failures,
            "figures": drawn,
            "seconds": res.stats["seconds"],
        }
    )
    if res.failures:
        print(
            f"iclkit reproduce: {len(res.failures)} cell(s) failed; rerun to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _reproduce_constructed(args: argparse.Namespace) -> int:
    import os

    from iclkit.experiments.constructed_vs_trained import (
        COMPARISON_SCALES,
        compare_trained_and_constructed,
        draw_comparison,
    )

    if args.preset not in COMPARISON_SCALES:
        raise ParameterError(
            f"--preset must be one of {tuple(COMPARISON_SCALES)} for 'constructed', "
            f"got {args.preset!r}"
        )
    folder = os.path.join(args.out, "constructed")
    res = compare_trained_and_constructed(
        COMPARISON_SCALES[args.preset],
        checkpoint=os.path.join(folder, f"trained-{args.preset}.pt"),
        progress=not args.no_progress,
    )
    pdf, png = draw_comparison(res, os.path.join(folder, "constructed"))
    print_json(
        {
            "prediction_gap": [res.prediction_gap.mean, res.prediction_gap.se],
            "excess_risk_trained": [res.excess_trained.mean, res.excess_trained.se],
            "excess_risk_constructed": [res.excess_constructed.mean, res.excess_constructed.se],
            "probe_r2_trained": res.probe_trained,
            "probe_r2_constructed_first_last": [
                res.probe_constructed[0],
                res.probe_constructed[-1],
            ],
            "constructed_layers": res.constructed_layers,
            "figures": {"pdf": pdf, "png": png},
        }
    )
    return 0
