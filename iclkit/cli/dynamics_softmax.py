"""``iclkit dynamics softmax``: GD of one-layer softmax attention on feature tokens.

Arguments -> :class:`~iclkit.dynamics.softmax.SoftmaxConfig` (whose field defaults are the
defaults here) -> :func:`~iclkit.dynamics.softmax.simulate_softmax` ->
:func:`~iclkit.dynamics.softmax.detect_phases` -> JSON or a short summary.
"""

from __future__ import annotations

import argparse
import dataclasses

from iclkit.dynamics.softmax import (
    SoftmaxConfig,
    detect_phases,
    phase_time_scaling,
    simulate_softmax,
)
from iclkit.dynamics.softmax.config import METHODS
from iclkit.dynamics.softmax.plots import plot_softmax_dynamics
from iclkit.theory.features import FeatureConfig
from iclkit.theory.validation import check_int, check_positive

from .options import SubParsers, float_list, print_json

_DEFAULT = {f.name: f.default for f in dataclasses.fields(SoftmaxConfig)}

#: Default target loss: the loss level of time_to_loss_eps and the stop rule.
_DEFAULT_EPS = 1e-3


def add(dyn: SubParsers) -> None:
    p = dyn.add_parser(
        "softmax",
        help="GD dynamics of one-layer softmax attention on feature tokens (arXiv 2310.05249)",
        description=(
            "Simulate gradient descent on the population loss of one-layer softmax attention "
            "(Huang, Cheng, Liang) with K orthonormal features, detect the phases per query type "
            "(this project's operational definitions; docs/softmax_dynamics.md) and print them. "
            "Times are in units of eta * t."
        ),
    )
    a = p.add_argument
    a("--K", type=int, required=True, help="number of orthonormal features (>= 2)")
    n = p.add_mutually_exclusive_group(required=True)
    n.add_argument("--n", type=int, help="in-context examples per prompt (tokens before the query)")
    n.add_argument("--N", type=int, dest="n", help=argparse.SUPPRESS)  # deprecated spelling
    a("--d", type=int, default=None, help="token dimension (>= K; default K)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--balanced", action="store_true", help="p_k = 1/K for every feature (the default)"
    )
    mode.add_argument(
        "--p-dominant",
        type=float,
        default=None,
        metavar="P1",
        help="imbalanced: feature 1 has probability P1 in (1/K, 1), the others (1 - P1)/(K - 1)",
    )
    mode.add_argument(
        "--p",
        type=float_list,
        default=None,
        metavar="P1,..,PK",
        help="any probability vector (K positive entries summing to 1)",
    )
    a("--eta", type=float, default=_DEFAULT["eta"], help="GD step size (default %(default)s)")
    a(
        "--method",
        choices=METHODS,
        default=_DEFAULT["method"],
        help="exact population GD with exact count sums (default), the N -> infinity "
        "mean field, or the full d x d model on Monte Carlo prompts (autograd)",
    )
    a(
        "--eps",
        type=float,
        default=_DEFAULT_EPS,
        help="loss level for time_to_loss_eps; the run stops once every query type "
        "is below it (default %(default)g)",
    )
    a(
        "--max-time",
        type=float,
        default=None,
        help="horizon in eta * t (default 4/p_min^2 + 2/(p_min eps), see default_horizon)",
    )
    a(
        "--include-query-in-softmax",
        action="store_true",
        help="normalise the attention over the query token too (the literal column "
        "softmax; raises the finite-N error floor)",
    )
    a(
        "--init",
        choices=("zero", "random"),
        default=_DEFAULT["init"],
        help="Q(0) = 0 (default) or small Gaussian entries (scale --init-scale)",
    )
    a(
        "--init-scale",
        type=float,
        default=_DEFAULT["init_scale"],
        help="scale of the random initialisation (default %(default)s)",
    )
    a(
        "--batch",
        type=int,
        default=_DEFAULT["batch_size"],
        help="prompts per step for --method monte-carlo (default %(default)s)",
    )
    a("--seed", type=int, default=_DEFAULT["seed"], help="seed of basis, init and prompts")
    a(
        "--plot",
        default=None,
        metavar="DIR",
        help="write softmax_loss.{pdf,png} and softmax_attention.{pdf,png} into DIR",
    )
    a(
        "--scaling-K",
        type=float_list,
        default=None,
        metavar="K1,K2,..",
        help="with --plot: also sweep these K (mean field) and write "
        "softmax_phase_scaling.{pdf,png} with fitted log-log slopes",
    )
    a("--json", action="store_true", help="print one JSON object (else a summary)")
    a(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show a progress bar",
    )
    p.set_defaults(func=run)


def _features(args: argparse.Namespace) -> FeatureConfig:
    if args.p is not None:
        return FeatureConfig(K=args.K, N=args.n, d=args.d, p_mode="custom", p=tuple(args.p))
    if args.p_dominant is not None:
        return FeatureConfig(
            K=args.K, N=args.n, d=args.d, p_mode="imbalanced", p_dominant=args.p_dominant
        )
    return FeatureConfig(K=args.K, N=args.n, d=args.d)


def run(args: argparse.Namespace) -> int:
    eps = check_positive(args.eps, "eps")
    config = SoftmaxConfig(
        features=_features(args),
        eta=args.eta,
        method=args.method,
        max_time=args.max_time,
        stop_loss=eps,
        include_query_in_softmax=args.include_query_in_softmax,
        init=args.init,
        init_scale=args.init_scale,
        batch_size=args.batch,
        seed=args.seed,
    )
    result = simulate_softmax(config, progress=args.progress)
    report = detect_phases(result, eps=eps)
    out = result.to_json() | report.to_json()
    if args.plot is not None:
        scaling = None
        if args.scaling_K is not None:
            fc = config.features
            scaling = phase_time_scaling(
                [check_int(k, "scaling_K", minimum=2) for k in args.scaling_K],
                N=fc.N,
                p_mode=fc.p_mode,
                p_dominant=fc.p_dominant,
                eta=config.eta,
                eps=eps,
                method="mean-field",
            )
            out["scaling_slopes"] = scaling.slopes
        paths = plot_softmax_dynamics(result, report, args.plot, scaling)
        out["plots"] = [str(path) for path in paths]
    if args.json:
        print_json(out)
        return 0
    print(f"status: {result.status.value} ({result.message}); final eta t = {out['final_time']:g}")
    for ph in report.phases:
        print(f"  {ph['query']:>18}: {ph['name']:<18} [{ph['start']:.4g}, {ph['end']:.4g})")
    print(f"time to half attention: {out['time_to_half_attention']}")
    print(f"time to loss <= {eps:g}: {out['time_to_loss_eps']}")
    return 0
