"""``iclkit dynamics lsa``: gradient flow of one linear self-attention layer.

Arguments -> :class:`~iclkit.dynamics.lsa.LSAConfig` (whose field defaults are the defaults
here) -> :func:`~iclkit.dynamics.lsa.simulate_lsa` -> one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from iclkit.dynamics.lsa import FLOWS, LSAConfig, simulate_lsa
from iclkit.dynamics.lsa.integrate import METHODS
from iclkit.dynamics.lsa.plots import plot_lsa_flow

from .options import SubParsers, float_list, print_json

_DEFAULT = {f.name: f.default for f in dataclasses.fields(LSAConfig)}


def add(dyn: SubParsers) -> None:
    p = dyn.add_parser(
        "lsa",
        help="gradient flow of one linear self-attention layer vs its symbolic optimum",
        description=(
            "Integrate the population gradient flow of a single LSA layer (Zhang-Frei-Bartlett "
            "parameterisation) on linear-regression or MoR prompts from a structured (ZFB "
            "Assumption 3.3) or random initialisation, solve the fixed points with sympy, and "
            "print one JSON object comparing the two (docs/lsa_dynamics.md)."
        ),
    )
    a = p.add_argument
    a(
        "--data",
        choices=("linear", "mor"),
        default=_DEFAULT["data"],
        help="linear: w ~ N(0, I_d) (ZFB); mor: K components beta_k from the prior",
    )
    a("--d", type=int, required=True, help="dimension of x (>= 1)")
    n = p.add_mutually_exclusive_group(required=True)
    n.add_argument("--n", type=int, help="in-context examples per prompt (the paper's N, >= 1)")
    n.add_argument("--N", type=int, dest="n", help=argparse.SUPPRESS)  # deprecated spelling
    a(
        "--K",
        type=int,
        default=_DEFAULT["K"],
        help="MoR: number of components (default %(default)s)",
    )
    a(
        "--pi",
        type=float_list,
        default=None,
        metavar="P1,..,PK",
        help="MoR: mixing weights summing to 1 (default uniform)",
    )
    a(
        "--symmetric",
        action="store_true",
        help="MoR: symmetric two components beta_2 = -beta_1, pi = (1/2, 1/2) (G* = 0)",
    )
    a(
        "--prior",
        choices=("gaussian", "sphere"),
        default=_DEFAULT["prior"],
        help="MoR component prior: N(0, tau^2 I) or uniform on the sphere of radius tau",
    )
    a(
        "--prior-scale",
        type=float,
        default=_DEFAULT["prior_scale"],
        help="MoR: tau (default %(default)s)",
    )
    a(
        "--sigma",
        type=float,
        default=None,
        help="label noise sd, the same for every prompt as the closed-form loss needs "
        "(linear: >= 0, default 0; mor: > 0, default 0.5)",
    )
    a(
        "--lambda-spectrum",
        type=float_list,
        default=None,
        metavar="L1,..,Ld",
        help="eigenvalues of Lambda = Cov(x) (d positive numbers; default all 1)",
    )
    a(
        "--lambda-rotation-seed",
        type=int,
        default=None,
        help="rotate diag(spectrum) by a random orthogonal matrix from this seed",
    )
    a(
        "--init",
        choices=("structured", "random"),
        default=_DEFAULT["init"],
        help="structured: ZFB Assumption 3.3 (MoR analogue); random: Gaussian live blocks",
    )
    a(
        "--init-scale",
        type=float,
        default=None,
        help="s > 0 (default: s^2 ||Gamma||_op sqrt(d) = 1, inside the theorem's "
        "condition < 2; 0.5 for the symmetric model)",
    )
    a("--seed", type=int, default=_DEFAULT["seed"], help="seed of Theta / the random init")
    a(
        "--flow",
        choices=tuple(FLOWS),
        default=None,
        help="state space: eigen (fast reduced ODE in Lambda's eigenbasis, default for "
        "structured), reduced (U, u), full (all weights; default for random)",
    )
    a("--method", choices=tuple(METHODS), default=_DEFAULT["method"], help="scipy solver")
    a("--t-max", type=float, default=_DEFAULT["t_max"], help="final time (default %(default)g)")
    a("--rtol", type=float, default=_DEFAULT["rtol"], help="solver rtol (default %(default)g)")
    a("--atol", type=float, default=_DEFAULT["atol"], help="solver atol (default %(default)g)")
    a(
        "--gradient-tol",
        type=float,
        default=_DEFAULT["gradient_tol"],
        help="stop when ||grad L|| falls below this (default %(default)g)",
    )
    a(
        "--plot",
        default=None,
        metavar="DIR",
        help="write lsa_flow.pdf/.png (loss gap, ||G - G*||, conserved quantity, eigenvalues) to DIR",
    )
    a(
        "--json",
        action="store_true",
        help="print the full JSON object (default: also JSON, without the matrices)",
    )
    a(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show a progress bar over t",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # every LSAConfig field has an option of the same name (comma lists become tuples)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(LSAConfig):
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    result = simulate_lsa(LSAConfig(**values), progress=args.progress)
    out = result.to_json(matrices=args.json)
    if args.plot is not None:
        out["plots"] = [str(path) for path in plot_lsa_flow(result, args.plot)]
    print_json(out)
    return 0
