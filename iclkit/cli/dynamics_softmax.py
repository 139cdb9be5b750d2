"""``iclkit dynamics softmax``: GD of one-layer softmax attention on feature tokens."""

from __future__ import annotations

import argparse

from .options import SubParsers, float_list, print_json


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
    p.add_argument("--K", type=int, required=True, help="number of orthonormal features (>= 2)")
    p.add_argument("--N", type=int, required=True, help="prompt length (tokens before the query)")
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
        type=float_list,
        default=None,
        metavar="P1,..,PK",
        help="any probability vector (K positive entries summing to 1)",
    )
    p.add_argument("--eta", type=float, default=1.0, help="GD step size (default 1.0)")
    p.add_argument(
        "--method",
        choices=("exact", "mean-field", "monte-carlo"),
        default="exact",
        help="exact population GD with exact count sums (default), the N -> infinity "
        "mean field, or the full d x d model on Monte Carlo prompts (autograd)",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=1e-3,
        help="loss level for time_to_loss_eps; the run stops once every query type "
        "is below it (default 1e-3)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="horizon in eta * t (default 4/p_min^2 + 2/(p_min eps))",
    )
    p.add_argument(
        "--include-query-in-softmax",
        action="store_true",
        help="normalise the attention over the query token too (the literal column "
        "softmax; raises the finite-N error floor)",
    )
    p.add_argument(
        "--init",
        choices=("zero", "random"),
        default="zero",
        help="Q(0) = 0 (default) or small Gaussian entries (scale --init-scale)",
    )
    p.add_argument(
        "--init-scale",
        type=float,
        default=0.01,
        help="scale of the random initialisation (default 0.01)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="prompts per step for --method monte-carlo (default 1024)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of basis, init and prompts")
    p.add_argument(
        "--plot",
        default=None,
        metavar="DIR",
        help="write softmax_loss.{pdf,png} and softmax_attention.{pdf,png} into DIR",
    )
    p.add_argument(
        "--scaling-K",
        type=float_list,
        default=None,
        metavar="K1,K2,..",
        help="with --plot: also sweep these K (mean field) and write "
        "softmax_phase_scaling.{pdf,png} with fitted log-log slopes",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (else a summary)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from iclkit.dynamics.softmax.phases import detect_phases
    from iclkit.dynamics.softmax.simulate import SoftmaxDynamicsConfig, simulate_softmax
    from iclkit.theory.features import FeatureConfig
    from iclkit.theory.validation import check_int, check_positive

    if args.p is not None:
        fc = FeatureConfig(K=args.K, N=args.N, d=args.d, p_mode="custom", p=tuple(args.p))
    elif args.p_dominant is not None:
        fc = FeatureConfig(
            K=args.K, N=args.N, d=args.d, p_mode="imbalanced", p_dominant=args.p_dominant
        )
    else:
        fc = FeatureConfig(K=args.K, N=args.N, d=args.d)
    eps = check_positive(args.eps, "eps")
    eta = check_positive(args.eta, "eta")
    p_min = float(fc.probabilities.min())
    max_time = (
        args.max_time if args.max_time is not None else (4.0 / p_min**2 + 2.0 / (p_min * eps))
    )
    config = SoftmaxDynamicsConfig(
        features=fc,
        eta=eta,
        method=args.method,
        max_time=max_time,
        stop_loss=eps,
        include_query_in_softmax=args.include_query_in_softmax,
        init=args.init,
        init_scale=args.init_scale,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    traj = simulate_softmax(config, progress=args.progress)
    report = detect_phases(traj, eps=eps)
    out: dict[str, object] = {
        "K": fc.K,
        "N": fc.N,
        "p": list(fc.p or ()),
        "eta": eta,
        "method": args.method,
        "include_query_in_softmax": bool(args.include_query_in_softmax),
        "phases": report.phases,
        "n_phases": report.summary["n_phases"],
        "time_to_half_attention": report.summary["time_to_half_attention"],
        "time_to_loss_eps": report.summary["time_to_loss_eps"],
        "events": {q.query: q.events for q in report.queries},
        "final_loss": {
            "all": float(traj.loss[-1]),
            **{n: float(traj.loss_per_type[-1, j]) for j, n in enumerate(traj.query_types)},
        },
        "final_time": float(traj.time[-1]),
        "status": traj.status,
        "message": traj.message,
    }
    if "stagewise" in report.summary:
        out["stagewise"] = report.summary["stagewise"]
    if args.plot is not None:
        from iclkit.dynamics.softmax.plots import plot_softmax_dynamics

        scaling = None
        if args.scaling_K is not None:
            from iclkit.dynamics.softmax.scaling import phase_time_scaling

            scaling = phase_time_scaling(
                [check_int(k, "scaling_K", minimum=2) for k in args.scaling_K],
                N=fc.N,
                p_mode=fc.p_mode,
                p_dominant=fc.p_dominant,
                eta=eta,
                eps=eps,
                method="mean-field",
            )
            out["scaling_slopes"] = scaling.slopes
        out["plots"] = [str(pth) for pth in plot_softmax_dynamics(traj, report, args.plot, scaling)]
    if args.json:
        print_json(out)
    else:
        print(f"status: {traj.status} ({traj.message}); final eta t = {out['final_time']:g}")
        for ph in report.phases:
            print(f"  {ph['query']:>18}: {ph['name']:<18} [{ph['start']:.4g}, {ph['end']:.4g})")
        print(f"time to half attention: {out['time_to_half_attention']}")
        print(f"time to loss <= {eps:g}: {out['time_to_loss_eps']}")
    return 0


# --------------------------------------------------------------------------- iclkit reproduce / plot
