"""``iclkit dynamics softmax``: GD dynamics of one-layer softmax attention on feature tokens
(arXiv 2310.05249).

Simulate gradient descent on the population loss of one-layer softmax attention (Huang, Cheng,
Liang) with K orthonormal features, detect the phases per query type (this project's operational
definitions; docs/softmax_gd.md) and print them. Times are in units of eta * t. The options
are fields of SoftmaxConfig and FeatureConfig, whose defaults are the defaults here.
"""

from __future__ import annotations

import argparse
from typing import Any

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

from . import options

#: Default target loss: the loss level of time_to_loss_eps and the stop rule.
_DEFAULT_EPS = 1e-3


def add(dyn: options.SubParsers) -> None:
    p = options.add_subcommand(dyn, "softmax", run, doc=__doc__)

    def option(field: str, help: str, **kwargs: Any) -> None:
        options.add_field_option(p, SoftmaxConfig, field, help, **kwargs)

    p.add_argument("--K", type=int, required=True, help="number of orthonormal features (>= 2)")
    options.add_n_option(p, "in-context examples per prompt (tokens before the query)")
    p.add_argument("--d", type=int, default=None, help="token dimension (>= K; default K)")
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
        type=options.float_list,
        default=None,
        metavar="P1,..,PK",
        help="any probability vector (K positive entries summing to 1)",
    )
    option("eta", "GD step size")
    method_help = (
        "exact population GD with exact count sums, the N -> infinity mean field, or the full "
        "d x d model on Monte Carlo prompts (autograd)"
    )
    option("method", method_help, choices=METHODS)
    p.add_argument(
        "--eps",
        type=float,
        default=_DEFAULT_EPS,
        help="loss level for time_to_loss_eps; the run stops once every query type "
        "is below it (default %(default)g)",
    )
    horizon_help = "horizon in eta * t (default 4/p_min^2 + 2/(p_min eps), see default_horizon)"
    option("max_time", horizon_help, type=float)
    p.add_argument(
        "--include-query-in-softmax",
        action="store_true",
        help="normalise the attention over the query token too (the literal column "
        "softmax; raises the finite-N error floor)",
    )
    init_help = "Q(0) = 0 or small Gaussian entries (scale --init-scale)"
    option("init", init_help, choices=("zero", "random"))
    option("init_scale", "scale of the random initialisation")
    option("batch_size", "prompts per step for --method monte-carlo", flag="--batch")
    option("seed", "seed of basis, init and prompts")
    options.add_plot_option(p, "softmax_loss.{pdf,png} and softmax_attention.{pdf,png}")
    p.add_argument(
        "--scaling-K",
        type=options.float_list,
        default=None,
        metavar="K1,K2,..",
        help="with --plot: also sweep these K (mean field) and write "
        "softmax_phase_scaling.{pdf,png} with fitted log-log slopes",
    )
    options.add_json_option(p)
    options.add_progress_option(p, default=False)


def _features(args: argparse.Namespace) -> FeatureConfig:
    if args.p is not None:
        return FeatureConfig(K=args.K, N=args.n, d=args.d, p_mode="custom", p=tuple(args.p))
    if args.p_dominant is not None:
        return FeatureConfig(
            K=args.K, N=args.n, d=args.d, p_mode="imbalanced", p_dominant=args.p_dominant
        )
    return FeatureConfig(K=args.K, N=args.n, d=args.d)


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        options.check_out_dir(args.plot, "--plot")
    eps = check_positive(args.eps, "eps")
    config = options.config_from_args(SoftmaxConfig, args, features=_features(args), stop_loss=eps)
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
        options.print_json(out)
        return 0
    print(f"status: {result.status.value} ({result.message}); final eta t = {out['final_time']:g}")
    for ph in report.phases:
        print(f"  {ph['query']:>18}: {ph['name']:<18} [{ph['start']:.4g}, {ph['end']:.4g})")
    print(f"time to half attention: {out['time_to_half_attention']}")
    print(f"time to loss <= {eps:g}: {out['time_to_loss_eps']}")
    return 0
