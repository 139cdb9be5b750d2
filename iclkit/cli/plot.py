"""``iclkit plot``: draw a figure from a sweep's results."""

from __future__ import annotations

import argparse

from iclkit.theory.validation import ParameterError

from .options import SubParsers, print_json
from .reproduce import FIGURE_CHOICES


def add(sub: SubParsers) -> None:
    p = sub.add_parser(
        "plot",
        help="redraw a MoR figure from stored sweep results (no training)",
        description="Redraw fig1-fig4 from the parquet results of 'iclkit reproduce'.",
    )
    p.add_argument("figure", choices=FIGURE_CHOICES, help="which figure (all: the four)")
    p.add_argument(
        "--results",
        required=True,
        help="the --out folder of 'iclkit reproduce' (holding <figure>/results), or a "
        "folder of cell-*.parquet files",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output path without extension (default: <results>/<figure>/<figure>)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from iclkit.experiments.figures import draw_figure
    from iclkit.experiments.sweep import FIGURES

    if not os.path.isdir(args.results):
        raise ParameterError(f"--results: folder not found: {args.results}")
    figures = list(FIGURES) if args.figure == "all" else [args.figure]
    if args.out is not None and len(figures) > 1:
        raise ParameterError("--out: give a figure name (not 'all') with --out")
    drawn = {}
    for f in figures:
        nested = os.path.join(args.results, f, "results")
        folder = nested if os.path.isdir(nested) else args.results
        stem = args.out or os.path.join(args.results, f, f)
        fig = draw_figure(f, folder, stem)
        drawn[f] = {"pdf": fig.pdf, "png": fig.png}
    print_json({"figures": drawn})
    return 0


# --------------------------------------------------------------------------- iclkit construct
