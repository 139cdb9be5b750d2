"""The ``iclkit`` command line.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` builds its parser and sets
``func`` to its handler ``_cmd_<name>(args) -> int``. The tuple ``_SUBCOMMANDS`` at the end
registers them (and ``_DYNAMICS_SUBCOMMANDS`` those under ``iclkit dynamics``).

Bad input raises :class:`iclkit.theory.validation.ParameterError`; :func:`main` prints it as a
one-line message naming the parameter and exits with code 2, never with a traceback.
Nothing in the package imports this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from iclkit import __version__
from iclkit.theory.validation import ParameterError

_SubParsers = Any  # argparse._SubParsersAction (private type)


def _print_json(obj: object) -> None:
    print(json.dumps(obj, sort_keys=False, default=_json_default))


def _json_default(obj: object) -> object:
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _float_list(text: str) -> list[float]:
    """Parse '0.5,0.3,0.2' into floats (argparse type)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# --------------------------------------------------------------------------- subcommands
# (each helper adds its _add_*/_cmd_* pair above the registry below)


# --------------------------------------------------------------------------- dynamics group
def _add_dynamics(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "dynamics",
        help="simulate training dynamics (LSA gradient flow, softmax-attention GD)",
        description="Simulate the training dynamics of one-layer attention models.",
    )
    dyn = p.add_subparsers(dest="dynamics_command", metavar="{lsa,softmax}", required=True)
    for add in _DYNAMICS_SUBCOMMANDS:
        add(dyn)


# --------------------------------------------------------------------------- registry
_DYNAMICS_SUBCOMMANDS: tuple[Callable[[_SubParsers], None], ...] = ()

_SUBCOMMANDS: tuple[Callable[[_SubParsers], None], ...] = (
    _add_dynamics,
)


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
    for add in _SUBCOMMANDS:
        add(sub)
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
