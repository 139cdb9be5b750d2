"""``iclkit reproduce``: train transformers on MoR prompts and redraw MoR Figures 1-4 (resumable Dask sweep).

Run (or resume) the sweep of a MoR figure: every cell trains a transformer on MoR prompts and
evaluates it, EM, gradient EM and OLS on the same held-out prompts (excess risk vs the oracle, per
prompt length). Finished cells are stored as parquet files under OUT/<figure>/results and skipped
on a rerun; the figure is drawn to OUT/<figure>/<figure>.pdf and .png. fig1: risk vs prompt length
per K; fig2: vs training prompts B; fig3: vs dimension d; fig4: vs hidden size D.
`reproduce mechanism` compares gradient EM, the Theorem 3.1 construction and trained transformers
layer by layer (alignment heatmap, gradient cosines, probes, out-of-distribution risk) into
OUT/mechanism; a rerun skips the models already measured.
"""

from __future__ import annotations

import argparse
import sys

from iclkit.experiments.cells import FIGURES
from iclkit.experiments.mechanism_run import MechanismRun
from iclkit.experiments.reproduce import (
    ALL_FIGURES,
    ConstructedResult,
    ReproduceResult,
    reproduce_constructed,
    reproduce_figures,
    reproduce_mechanism,
)

from .options import (
    SubParsers,
    add_out_option,
    add_progress_option,
    add_subcommand,
    check_out_dir,
    print_json,
)

FIGURE_CHOICES = (*FIGURES, ALL_FIGURES)
#: The positional figure name that runs the trained-vs-constructed comparison instead.
CONSTRUCTED = "constructed"
#: The positional name that runs the mechanism metrics (layer-vs-iteration alignment, probes).
MECHANISM = "mechanism"


def add(sub: SubParsers) -> None:
    p = add_subcommand(sub, "reproduce", run, doc=__doc__)
    p.add_argument(
        "figure",
        choices=(*FIGURE_CHOICES, CONSTRUCTED, MECHANISM),
        help="which figure (all: the four; constructed: trained vs Theorem 3.1 construction, "
        "K = 2, prediction gap and per-layer probes; mechanism: gradient EM, the construction "
        "and trained transformers compared layer by layer)",
    )
    p.add_argument(
        "--preset",
        default="quick",
        help="smoke (under 2 min per figure on 2 cores), quick (laptop scale, the default), "
        "paper (paper scale, GPU advised), or a path to a preset .toml file",
    )
    add_out_option(p, "output folder", default="iclkit-results")
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (e.g. tcp://host:8786); default: start a "
        "LocalCluster with the preset's [cluster] settings",
    )
    add_progress_option(p)


def run(args: argparse.Namespace) -> int:
    check_out_dir(args.out)
    if args.figure == CONSTRUCTED:
        _print_constructed(reproduce_constructed(args.preset, args.out, progress=args.progress))
        return 0
    if args.figure == MECHANISM:
        _print_mechanism(reproduce_mechanism(args.preset, args.out, progress=args.progress))
        return 0
    res = reproduce_figures(
        args.figure, args.preset, args.out, scheduler=args.scheduler, progress=args.progress
    )
    _print_sweep(res)
    if res.sweep.failures:
        print(
            f"iclkit reproduce: {len(res.sweep.failures)} cell(s) failed; rerun to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_sweep(res: ReproduceResult) -> None:
    s = res.sweep
    print_json(
        {
            "status": s.status,
            "cells_total": s.cells_total,
            "cells_run": s.cells_run,
            "cells_skipped": s.cells_skipped,
            "failures": s.failures,
            "figures": {f: {"pdf": fig.pdf, "png": fig.png} for f, fig in res.figures.items()},
            "seconds": s.stats["seconds"],
        }
    )


def _print_constructed(res: ConstructedResult) -> None:
    c = res.comparison
    print_json(
        {
            "prediction_gap": [c.prediction_gap.mean, c.prediction_gap.se],
            "excess_risk_trained": [c.excess_trained.mean, c.excess_trained.se],
            "excess_risk_constructed": [c.excess_constructed.mean, c.excess_constructed.se],
            "probe_r2_trained": c.probe_trained,
            "probe_r2_constructed_first_last": [c.probe_constructed[0], c.probe_constructed[-1]],
            "constructed_layers": c.constructed_layers,
            "figures": {"pdf": res.pdf, "png": res.png},
        }
    )


def _print_mechanism(res: MechanismRun) -> None:
    a, p = res.tables["alignment"], res.tables["probes"]
    diagonal = a[a["layer"] == a["iterate"]]
    w = p[p["target"] == "w_orc"]
    print_json(
        {
            "run_id": res.run_id,
            "models_run": res.models_run,
            "models_skipped": res.models_skipped,
            "alignment_diagonal_cosine": {
                m: g.sort_values("layer")["cosine"].tolist() for m, g in diagonal.groupby("model")
            },
            "probe_r2_w_orc": {
                m: g.sort_values("layer")["r2"].tolist() for m, g in w.groupby("model")
            },
            "figures": {k: {"pdf": v[0], "png": v[1]} for k, v in res.figures.items()},
            "folder": res.folder,
            "seconds": res.stats["seconds"],
        }
    )
