"""The ``iclkit`` command line: the parser and the entry point.

Each subcommand lives in its own module of this package with two functions: ``add(subparsers)``
builds its parser and ``run(args) -> int`` turns the arguments into a library config, calls one
library function and formats the result. Bad input raises
:class:`iclkit.theory.validation.ParameterError`; :func:`main` prints it as one line naming the
parameter and exits with code 2, never with a traceback. Nothing in the package imports this
package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iclkit import __version__
from iclkit.theory.validation import ParameterError

from . import (
    check,
    construct,
    demo,
    dynamics_lsa,
    dynamics_softmax,
    plot,
    reproduce,
    run_algo,
    sample,
)
from .options import SubParsers


def _add_dynamics(sub: SubParsers) -> None:
    p = sub.add_parser(
        "dynamics",
        help="simulate training dynamics (LSA gradient flow, softmax-attention GD)",
        description="Simulate the training dynamics of one-layer attention models.",
    )
    dyn = p.add_subparsers(dest="dynamics_command", metavar="{lsa,softmax}", required=True)
    for module in (dynamics_lsa, dynamics_softmax):
        module.add(dyn)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="iclkit",
        description=(
            "iclkit checks the theory of in-context learning in transformers by computation: "
            "explicit weight constructions, numerical checks of theorem bounds, and simulators "
            "of training dynamics (MoR: arXiv 2410.14183; softmax dynamics: arXiv 2310.05249)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"iclkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check.add(sub)
    demo.add(sub)
    sample.add(sub)
    run_algo.add(sub)
    _add_dynamics(sub)
    reproduce.add(sub)
    plot.add(sub)
    construct.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iclkit`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ParameterError as exc:
        print(f"iclkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iclkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
