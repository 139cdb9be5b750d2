"""``iclkit plot``: redraw a MoR figure from stored sweep results (no training).

Redraw fig1-fig4 from the parquet results of 'iclkit reproduce'.
"""

from __future__ import annotations

import argparse

from iclkit.experiments.reproduce import redraw_figures

from .options import SubParsers, add_out_option, add_subcommand, check_out_file, print_json
from .reproduce import FIGURE_CHOICES


def add(sub: SubParsers) -> None:
    p = add_subcommand(sub, "plot", run, doc=__doc__)
    p.add_argument("figure", choices=FIGURE_CHOICES, help="which figure (all: the four)")
    p.add_argument(
        "--results",
        required=True,
        help="the --out folder of 'iclkit reproduce' (holding <figure>/results), or a "
        "folder of cell-*.parquet files",
    )
    add_out_option(
        p, "output path without extension (default: <results>/<figure>/<figure>; one figure only)"
    )


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_out_file(args.out)
    drawn = redraw_figures(args.figure, args.results, args.out)
    print_json({"figures": {f: {"pdf": fig.pdf, "png": fig.png} for f, fig in drawn.items()}})
    return 0
