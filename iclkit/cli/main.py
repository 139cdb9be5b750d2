"""The ``iclkit`` command line: the parser and the entry point.

Each subcommand lives in its own module of this package with two functions: ``add(subparsers)``
builds its parser and ``run(args) -> int`` turns the arguments into a library config, calls one
library function and formats the result. Bad input raises
:class:`iclkit.theory.validation.ParameterError`; :func:`main` prints it as one line naming the
parameter and exits with code 2, never with a traceback; so does an ``OSError`` on a file
(the path and the reason on one line). Nothing in the package imports this
package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iclkit.theory.validation import ParameterError
from iclkit.version import __version__

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


def _chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)parser of the subcommand that ``args`` came from."""
    for name in (args.command, getattr(args, "dynamics_command", None)):
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if name is None or not isinstance(choices, dict) or name not in choices:
            break
        parser = choices[name]
    return parser


def _as_flag(message: str, parser: argparse.ArgumentParser) -> str:
    """Name the command-line flag in an error from the library.

    A :class:`ParameterError`'s message starts with the parameter's name, which for a config
    field is the field (``results: folder not found``); on the command line the user typed the
    flag whose ``dest`` is that field (``--results``), so the message names the flag instead.
    """
    head, sep, rest = message.partition(":")
    name = head.split(" ", 1)[0]
    flags = {
        a.dest: max(a.option_strings, key=len)
        for a in parser._actions
        if a.option_strings and a.dest != "help" and a.help != argparse.SUPPRESS
    }
    if name in flags:
        return flags[name] + message[len(name) :]
    return head + sep + rest


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iclkit`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ParameterError as exc:
        chosen = _chosen_parser(parser, args)
        print(f"{chosen.prog}: error: {_as_flag(str(exc), chosen)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the library opened: one line with the path, no traceback
        where = exc.filename if exc.filename is not None else "file"
        reason = exc.strerror or str(exc)
        print(f"{_chosen_parser(parser, args).prog}: error: {where}: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_chosen_parser(parser, args).prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
