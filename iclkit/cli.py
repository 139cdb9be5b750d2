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
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


# --------------------------------------------------------------------------- subcommands
# (each helper adds its _add_*/_cmd_* pair above the registry below)


# --------------------------------------------------------------------------- npz I/O
def _load_npz(path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    """Load arrays from ``path``; missing file/keys and NaN/inf entries are ParameterErrors."""
    import os

    import numpy as np

    if not os.path.isfile(path):
        raise ParameterError(f"--in: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise ParameterError(f"--in: cannot read {path} as .npz ({exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ParameterError(
            f"--in: {path} is missing key(s) {', '.join(missing)} (required: {', '.join(required)})"
        )
    out: dict[str, Any] = {}
    for k in (*required, *optional):
        if k in arrays:
            a = arrays[k]
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ParameterError(f"{k}: array in {path} contains NaN or infinite entries")
            out[k] = a
    return out


def _save_npz(path: str, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    import numpy as np

    from iclkit.atomic import write_atomically

    payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    write_atomically(path, lambda fh: np.savez(fh, **payload))


def _add_mor_options(
    p: argparse.ArgumentParser, *, d: int, K: int, n: int, snr: float, batch: int
) -> None:
    g = p.add_argument_group("MoR prompt distribution (SPEC.md 'Data')")
    g.add_argument("--d", type=int, default=d, help=f"dimension of x (default {d})")
    g.add_argument("--K", type=int, default=K, help=f"number of components (default {K})")
    g.add_argument("--n", type=int, default=n, help=f"in-context examples per prompt (default {n})")
    g.add_argument(
        "--snr",
        type=float,
        default=None,
        help=f"signal-to-noise ratio eta: ||beta||/sigma (symmetric) or "
        f"min_jk ||beta_j - beta_k||/sigma; sets sigma per prompt (default {snr})",
    )
    g.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level sigma, the same for every prompt (instead of --snr)",
    )
    g.add_argument(
        "--pi",
        type=_float_list,
        default=None,
        help="mixing weights, comma-separated, summing to 1 (default uniform)",
    )
    g.add_argument(
        "--symmetric",
        action="store_true",
        help="symmetric two-component model: K=2, beta_2=-beta_1, pi=(1/2,1/2)",
    )
    g.add_argument(
        "--batch", type=int, default=batch, help=f"number of prompts B (default {batch})"
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(_default_snr=snr)


def _mor_config_from(args: argparse.Namespace) -> Any:
    from iclkit.theory.mor import MoRConfig

    snr = args.snr
    if snr is None and args.sigma is None:
        snr = args._default_snr
    return MoRConfig(
        d=args.d,
        K=args.K,
        n=args.n,
        snr=snr,
        sigma=args.sigma,
        pi=tuple(args.pi) if args.pi is not None else None,
        symmetric=args.symmetric,
    )


# --------------------------------------------------------------------------- iclkit sample
def _add_sample(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "sample",
        help="sample MoR prompts to an .npz file",
        description=(
            "Sample B MoR prompts (per-sample components z_i ~ pi, x_i ~ N(0, I_d), "
            "y_i = <x_i, beta_{z_i}> + N(0, sigma^2)) and write X (B,n,d), y (B,n), "
            "x_query (B,d), y_query (B,), betas (B,K,d), pi (B,K), sigma (B,) and a local "
            "initialisation init (B,K,d) = beta_k + rho ||beta_k|| u_k to an .npz file."
        ),
    )
    _add_mor_options(p, d=5, K=2, n=200, snr=10.0, batch=64)
    p.add_argument(
        "--rho",
        type=float,
        default=0.1,
        help="relative size of the init perturbation (default 0.1)",
    )
    p.add_argument("--out", required=True, help="output .npz path (written atomically)")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    from iclkit.constructions.predictors import initial_estimate
    from iclkit.theory.mor import sample_mor
    from iclkit.theory.rng import derive_seed, make_generator

    config = _mor_config_from(args)
    batch = sample_mor(config, args.batch, seed=args.seed)
    init = initial_estimate(
        batch.betas,
        method="local",
        rho=args.rho,
        generator=make_generator(derive_seed(args.seed, "init")),
    )
    _save_npz(
        args.out,
        {
            "X": batch.X_train.numpy(),
            "y": batch.y_train.numpy(),
            "x_query": batch.x_query.numpy(),
            "y_query": batch.y_query.numpy(),
            "betas": batch.betas.numpy(),
            "pi": batch.pi.numpy(),
            "sigma": batch.sigma.numpy(),
            "init": init.numpy(),
        },
    )
    print(f"wrote {args.batch} prompts (n={config.n}, d={config.d}, K={config.K}) to {args.out}")
    return 0


# --------------------------------------------------------------------------- iclkit run-algo
_ALGOS = ("em", "gradient-em", "oracle", "bayes", "ols", "ridge")


def _add_run_algo(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "run-algo",
        help="run a reference algorithm on prompts from an .npz file",
        description=(
            "Run a reference algorithm on prompts.npz (X (B,n,d), y (B,n), init (B,K,d), "
            "sigma (B,), optional pi (B,K); oracle and bayes also need betas (B,K,d)) and write "
            "est.npz with beta (B,K,d) and pi (B,K) (K=1 for ols and ridge)."
        ),
    )
    p.add_argument("--algo", required=True, choices=_ALGOS, help="algorithm to run")
    p.add_argument("--in", dest="inp", required=True, help="input prompts .npz")
    p.add_argument("--out", required=True, help="output estimates .npz (written atomically)")
    p.add_argument(
        "--T-outer", type=int, default=20, help="EM iterations (em, gradient-em; default 20)"
    )
    p.add_argument(
        "--T-inner", type=int, default=1, help="gradient steps per M-step (gradient-em; default 1)"
    )
    p.add_argument("--alpha", type=float, default=1.0, help="gradient step size (default 1.0)")
    pi_group = p.add_mutually_exclusive_group()
    pi_group.add_argument(
        "--estimate-pi",
        dest="estimate_pi",
        action="store_true",
        default=None,
        help="re-estimate pi each iteration (default for em)",
    )
    pi_group.add_argument(
        "--known-pi",
        dest="estimate_pi",
        action="store_false",
        help="keep pi fixed at the given (or uniform) value (default for gradient-em)",
    )
    p.add_argument(
        "--symmetric",
        action="store_true",
        help="gradient-em: the tied two-component tanh form (beta_2 = -beta_1)",
    )
    p.add_argument(
        "--lam",
        type=float,
        default=None,
        help="ridge penalty (default sigma^2 per prompt: posterior mean for beta ~ N(0, I))",
    )
    p.set_defaults(func=_cmd_run_algo)


def _cmd_run_algo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from iclkit.constructions import algorithms as alg

    data = _load_npz(args.inp, ["X", "y", "sigma"], ["init", "pi", "betas"])
    X = torch.from_numpy(data["X"]).to(torch.float64)
    y = torch.from_numpy(data["y"]).to(torch.float64)
    if X.dim() != 3:
        raise ParameterError(f"X must have shape (B, n, d), got {tuple(X.shape)}")
    B = X.shape[0]
    sigma = torch.from_numpy(np.atleast_1d(data["sigma"])).to(torch.float64)
    pi = torch.from_numpy(data["pi"]).to(torch.float64) if "pi" in data else None

    def need(key: str) -> torch.Tensor:
        if key not in data:
            raise ParameterError(
                f"--in: {args.inp} is missing key {key} (needed by --algo {args.algo})"
            )
        return torch.from_numpy(data[key]).to(torch.float64)

    if args.algo in ("em", "gradient-em"):
        init = need("init")
        if args.algo == "em":
            res = alg.em(
                X,
                y,
                init,
                sigma,
                pi,
                T=args.T_outer,
                estimate_pi=True if args.estimate_pi is None else args.estimate_pi,
            )
        else:
            res = alg.gradient_em(
                X,
                y,
                init,
                sigma,
                None if args.symmetric else pi,
                T_outer=args.T_outer,
                T_inner=args.T_inner,
                alpha=args.alpha,
                estimate_pi=bool(args.estimate_pi),
                symmetric=args.symmetric,
            )
        beta, pi_out = res.betas, res.pi
    elif args.algo in ("oracle", "bayes"):
        # With fixed, known pi the Bayes posterior mean given the true components is the oracle.
        beta = need("betas")
        alg.validate_prompts(X, y)
        if beta.dim() != 3 or beta.shape[0] != B or beta.shape[2] != X.shape[2]:
            raise ParameterError(
                f"betas must have shape ({B}, K, {X.shape[2]}), got {tuple(beta.shape)}"
            )
        K = beta.shape[1]
        pi_out = pi if pi is not None else torch.full((B, K), 1.0 / K, dtype=torch.float64)
        if pi_out.shape != (B, K):
            raise ParameterError(f"pi must have shape ({B}, {K}), got {tuple(pi_out.shape)}")
    else:
        w = (
            alg.ols(X, y)
            if args.algo == "ols"
            else alg.ridge(X, y, sigma**2 if args.lam is None else args.lam)
        )
        beta, pi_out = w[:, None, :], torch.ones(B, 1, dtype=torch.float64)
    _save_npz(args.out, {"beta": beta.numpy(), "pi": pi_out.numpy()})
    print(f"{args.algo}: wrote beta {tuple(beta.shape)} and pi {tuple(pi_out.shape)} to {args.out}")
    return 0


# --------------------------------------------------------------------------- iclkit demo
def _add_demo(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "demo",
        help="EM and gradient EM vs the oracle on sampled MoR prompts (a quick end-to-end run)",
        description=(
            "Sample MoR prompts, run EM, gradient EM, OLS and the oracle from a local "
            "initialisation, and print parameter error (up to permutation) and excess risk "
            "vs the oracle predictor E(y_hat-y)^2 - E(y_orc-y)^2, each with its Monte Carlo "
            "standard error over prompts."
        ),
    )
    _add_mor_options(p, d=8, K=3, n=1000, snr=6.0, batch=512)
    p.add_argument("--T", type=int, default=20, help="EM / gradient-EM iterations (default 20)")
    p.add_argument(
        "--rho", type=float, default=0.1, help="relative init perturbation (default 0.1)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    import torch

    from iclkit.constructions import predictors as P
    from iclkit.theory.metrics import excess_risk_vs_oracle, parameter_error
    from iclkit.theory.mor import sample_mor

    t0 = time.perf_counter()
    config = _mor_config_from(args)
    batch = sample_mor(config, args.batch, seed=args.seed)
    init_kw = {"rho": args.rho, "seed": args.seed}
    predictors: list[Any] = [
        P.EMPredictor(T=args.T, estimate_pi=True, **init_kw),
        P.GradientEMPredictor(
            T_outer=args.T, T_inner=1, alpha=1.0, estimate_pi=True, symmetric=False, **init_kw
        ),
        P.OLSPredictor(),
        P.OraclePredictor(),
    ]
    y_orc = P.OraclePredictor()(batch)[:, 0]
    rows = []
    for pred in predictors:
        y_hat = pred(batch)[:, 0]
        risk = excess_risk_vs_oracle(y_hat, y_orc)
        rows.append({"algorithm": pred.name, "excess_risk": risk.mean, "excess_risk_se": risk.se})
    # parameter errors of the EM-type estimates on the full prompt (same inits as the predictors)
    from iclkit.constructions.algorithms import em, gradient_em
    from iclkit.theory.rng import derive_seed, make_generator

    g = make_generator(derive_seed(args.seed, "em-init", batch.n))
    init = P.initial_estimate(batch.betas, rho=args.rho, generator=g)
    fits = {
        "em": em(batch.X_train, batch.y_train, init, batch.sigma, T=args.T).betas,
        "gradient_em": gradient_em(
            batch.X_train, batch.y_train, init, batch.sigma, T_outer=args.T, estimate_pi=True
        ).betas,
        "oracle": batch.betas,
    }
    for row in rows:
        est = fits.get(row["algorithm"])
        if est is None:
            row["param_error"], row["param_error_se"] = float("nan"), float("nan")
            continue
        err = parameter_error(est, batch.betas)
        row["param_error"] = float(err.mean())
        row["param_error_se"] = float(err.std() / max(1, err.numel()) ** 0.5)
    seconds = time.perf_counter() - t0
    if args.json:
        _print_json(
            {
                "config": {
                    "d": config.d,
                    "K": config.K,
                    "n": config.n,
                    "snr": config.snr,
                    "sigma": config.sigma,
                    "B": args.batch,
                    "T": args.T,
                },
                "rows": rows,
                "seconds": seconds,
            }
        )
        return 0
    print(
        f"MoR prompts: d={config.d} K={config.K} n={config.n} "
        f"{'snr=' + str(config.snr) if config.snr else 'sigma=' + str(config.sigma)} "
        f"B={args.batch} prompts, init = truth + {args.rho:g} relative perturbation, T={args.T}"
    )
    print(f"{'algorithm':<12} {'param error (perm.)':>22} {'excess risk vs oracle':>26}")
    for row in rows:
        pe = (
            "-"
            if row["param_error"] != row["param_error"]
            else f"{row['param_error']:.4g} ± {row['param_error_se']:.1g}"
        )
        print(
            f"{row['algorithm']:<12} {pe:>22} {row['excess_risk']:>16.4g} ± {row['excess_risk_se']:.1g}"
        )
    print(
        "excess risk = E(y_hat - y)^2 - E(y_orc - y)^2 = E(y_hat - y_orc)^2 over prompts "
        f"(± 1 standard error); {seconds:.1f} s"
    )
    del torch
    return 0


# --------------------------------------------------------------------------- iclkit dynamics softmax
def _add_dynamics_softmax(dyn: _SubParsers) -> None:
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
        type=_float_list,
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
        type=_float_list,
        default=None,
        metavar="K1,K2,..",
        help="with --plot: also sweep these K (mean field) and write "
        "softmax_phase_scaling.{pdf,png} with fitted log-log slopes",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (else a summary)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_dynamics_softmax)


def _cmd_dynamics_softmax(args: argparse.Namespace) -> int:
    from iclkit.dynamics.phases import detect_phases
    from iclkit.dynamics.softmax_simulate import SoftmaxDynamicsConfig, simulate_softmax
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
        from iclkit.dynamics.softmax_plots import plot_softmax_dynamics

        scaling = None
        if args.scaling_K is not None:
            from iclkit.dynamics.softmax_scaling import phase_time_scaling

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
        _print_json(out)
    else:
        print(f"status: {traj.status} ({traj.message}); final eta t = {out['final_time']:g}")
        for ph in report.phases:
            print(f"  {ph['query']:>18}: {ph['name']:<18} [{ph['start']:.4g}, {ph['end']:.4g})")
        print(f"time to half attention: {out['time_to_half_attention']}")
        print(f"time to loss <= {eps:g}: {out['time_to_loss_eps']}")
    return 0


# --------------------------------------------------------------------------- iclkit reproduce / plot
_FIGURE_CHOICES = ("fig1", "fig2", "fig3", "fig4", "all")


def _add_reproduce(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train transformers on MoR prompts and redraw MoR Figures 1-4 (resumable Dask sweep)",
        description=(
            "Run (or resume) the sweep of a MoR figure: every cell trains a transformer on MoR "
            "prompts and evaluates it, EM, gradient EM and OLS on the same held-out prompts "
            "(excess risk vs the oracle, per prompt length). Finished cells are stored as "
            "parquet files under OUT/<figure>/results and skipped on a rerun; the figure is "
            "drawn to OUT/<figure>/<figure>.pdf and .png. fig1: risk vs prompt length per K; "
            "fig2: vs training prompts B; fig3: vs dimension d; fig4: vs hidden size D."
        ),
    )
    p.add_argument(
        "figure",
        choices=(*_FIGURE_CHOICES, "constructed"),
        help="which figure (all: the four; constructed: trained vs Theorem 3.1 construction, "
        "K = 2, prediction gap and per-layer probes)",
    )
    p.add_argument(
        "--preset",
        default="quick",
        help="smoke (under 2 min per figure on 2 cores), quick (laptop scale, the default), "
        "paper (paper scale, GPU advised), or a path to a preset .toml file",
    )
    p.add_argument(
        "--out", default="iclkit-results", help="output folder (default ./iclkit-results)"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (e.g. tcp://host:8786); default: start a "
        "LocalCluster with the preset's [cluster] settings",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    import os

    from iclkit.experiments.figures import draw_figure
    from iclkit.experiments.sweep import FIGURES, load_preset, run_sweep

    if args.figure == "constructed":
        return _reproduce_constructed(args)
    figures = list(FIGURES) if args.figure == "all" else [args.figure]
    if args.preset.endswith(".toml") and len(figures) > 1:
        raise ParameterError("--preset: a .toml path is for one figure; name the figure")
    presets = [load_preset(f, args.preset) for f in figures]
    res = run_sweep(presets, args.out, scheduler=args.scheduler, progress=not args.no_progress)
    drawn = {}
    for f in figures:
        fig = draw_figure(f, res.results_dirs[f], os.path.join(args.out, f, f))
        drawn[f] = {"pdf": fig.pdf, "png": fig.png}
    _print_json(
        {
            "status": res.status,
            "cells_total": res.cells_total,
            "cells_run": res.cells_run,
            "cells_skipped": res.cells_skipped,
            "failures": res.failures,
            "figures": drawn,
            "seconds": res.stats["seconds"],
        }
    )
    if res.failures:
        print(
            f"iclkit reproduce: {len(res.failures)} cell(s) failed; rerun to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _reproduce_constructed(args: argparse.Namespace) -> int:
    import os

    from iclkit.experiments.constructed_vs_trained import (
        COMPARISON_SCALES,
        compare_trained_and_constructed,
        draw_comparison,
    )

    if args.preset not in COMPARISON_SCALES:
        raise ParameterError(
            f"--preset must be one of {tuple(COMPARISON_SCALES)} for 'constructed', "
            f"got {args.preset!r}"
        )
    folder = os.path.join(args.out, "constructed")
    res = compare_trained_and_constructed(
        COMPARISON_SCALES[args.preset],
        checkpoint=os.path.join(folder, f"trained-{args.preset}.pt"),
        progress=not args.no_progress,
    )
    pdf, png = draw_comparison(res, os.path.join(folder, "constructed"))
    _print_json(
        {
            "prediction_gap": [res.prediction_gap.mean, res.prediction_gap.se],
            "excess_risk_trained": [res.excess_trained.mean, res.excess_trained.se],
            "excess_risk_constructed": [res.excess_constructed.mean, res.excess_constructed.se],
            "probe_r2_trained": res.probe_trained,
            "probe_r2_constructed_first_last": [
                res.probe_constructed[0],
                res.probe_constructed[-1],
            ],
            "constructed_layers": res.constructed_layers,
            "figures": {"pdf": pdf, "png": png},
        }
    )
    return 0


def _add_plot(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "plot",
        help="redraw a MoR figure from stored sweep results (no training)",
        description="Redraw fig1-fig4 from the parquet results of 'iclkit reproduce'.",
    )
    p.add_argument("figure", choices=_FIGURE_CHOICES, help="which figure (all: the four)")
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
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
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
    _print_json({"figures": drawn})
    return 0


# --------------------------------------------------------------------------- iclkit construct
def _add_construct(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "construct",
        help="run the hand-set Theorem 3.1 transformer (gradient EM in context)",
        description=(
            "Build the MoR Theorem 3.1 transformer (ReLU attention, <= 4 heads per layer, "
            "weights set by hand; docs/construction.md) and run it on prompts. With --in: "
            "prompts.npz as written by 'iclkit sample' (X (B,n,d), y (B,n), init (B,K,d), "
            "sigma (B,), x_query (B,d), optional pi (B,K)); writes beta_tf (B,K,d), y_hat (B,) "
            "and beta_surrogate (B,K,d) to --out. Without --in: samples prompts from the MoR "
            "options below. Prints one JSON line: layers, max_heads_per_layer, weight_norm, "
            "max_abs_diff_vs_surrogate, max_abs_diff_vs_gradient_em (and, when sampling, the "
            "prediction error vs the oracle and the parameter error). --symmetric selects the "
            "tied two-component construction (K=2, pi=1/2, init[:, 0] used), else the general-K "
            "one (pi from the file or --pi, default uniform)."
        ),
    )
    p.add_argument("--in", dest="inp", default=None, help="input prompts .npz (else sample)")
    p.add_argument("--out", default=None, help="output .npz (written atomically)")
    g = p.add_argument_group("construction")
    g.add_argument("--T-outer", type=int, default=4, help="gradient-EM iterations (default 4)")
    g.add_argument("--T-inner", type=int, default=1, help="gradient steps per M-step (default 1)")
    g.add_argument("--alpha", type=float, default=1.0, help="M-step step size (default 1.0)")
    g.add_argument(
        "--relu-terms",
        type=int,
        default=24,
        help="ReLU terms per E-step nonlinearity (default 24)",
    )
    _add_mor_options(p, d=5, K=2, n=200, snr=10.0, batch=4)
    p.add_argument(
        "--rho",
        type=float,
        default=0.1,
        help="when sampling: relative size of the local init perturbation (default 0.1)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the JSON line only (it is always printed)"
    )
    p.set_defaults(func=_cmd_construct)


def _cmd_construct(args: argparse.Namespace) -> int:
    import torch

    from iclkit.constructions.gradient_em_transformer import run_gradient_em_transformer
    from iclkit.theory.validation import check_int, check_positive

    check_int(args.T_outer, "--T-outer", minimum=0)
    check_int(args.T_inner, "--T-inner", minimum=1)
    check_positive(args.alpha, "--alpha")
    check_int(args.relu_terms, "--relu-terms", minimum=4)
    f64 = torch.float64
    batch = None
    if args.inp is not None:
        data = _load_npz(args.inp, ["X", "y", "init", "sigma", "x_query"], ["pi"])
        X = torch.from_numpy(data["X"]).to(f64)
        y = torch.from_numpy(data["y"]).to(f64)
        init = torch.from_numpy(data["init"]).to(f64)
        sigma = torch.from_numpy(data["sigma"]).to(f64).reshape(-1)
        x_query = torch.from_numpy(data["x_query"]).to(f64)
        pi = torch.from_numpy(data["pi"]).to(f64) if "pi" in data else None
        if X.dim() != 3:
            raise ParameterError(f"X: expected shape (B, n, d), got {tuple(X.shape)}")
    else:
        from iclkit.constructions.predictors import initial_estimate
        from iclkit.theory.mor import sample_mor
        from iclkit.theory.rng import derive_seed, make_generator

        B = check_int(args.batch, "--batch", minimum=1)
        batch = sample_mor(_mor_config_from(args), B, seed=args.seed)
        X, y, x_query = batch.X_train, batch.y_train, batch.x_query
        sigma, pi = batch.sigma, batch.pi
        init = initial_estimate(
            batch.betas,
            method="local",
            rho=args.rho,
            generator=make_generator(derive_seed(args.seed, "init")),
        )
    run = run_gradient_em_transformer(
        X, y, init, x_query, sigma, pi,
        T_outer=args.T_outer, T_inner=args.T_inner, alpha=args.alpha,
        relu_terms=args.relu_terms, symmetric=args.symmetric,
    )  # fmt: skip
    out: dict[str, Any] = {
        "layers": run.report.L,
        "max_heads_per_layer": run.report.max_heads_per_layer,
        "weight_norm": run.weight_norm,
        "max_abs_diff_vs_surrogate": run.max_abs_diff_vs_surrogate,
        "max_abs_diff_vs_gradient_em": run.max_abs_diff_vs_gradient_em,
        "token_width_D": run.report.D,
        "layer_formula": run.report.layer_formula,
    }
    if batch is not None:
        from iclkit.theory.metrics import parameter_error

        out["prediction_error_vs_oracle"] = float((run.y_hat - batch.y_oracle).abs().mean())
        out["parameter_error"] = float(parameter_error(run.beta_tf, batch.betas).mean())
        out["sqrt_d_over_n"] = (X.shape[2] / X.shape[1]) ** 0.5
    if args.out is not None:
        _save_npz(
            args.out,
            {
                "beta_tf": run.beta_tf.numpy(),
                "y_hat": run.y_hat.numpy(),
                "beta_surrogate": run.beta_surrogate.numpy(),
            },
        )
    _print_json(out)
    return 0


# --------------------------------------------------------------------------- iclkit dynamics lsa
def _add_dynamics_lsa(dyn: _SubParsers) -> None:
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
    p.add_argument(
        "--data",
        choices=("linear", "mor"),
        default="linear",
        help="linear: w ~ N(0, I_d) (ZFB); mor: K components beta_k from the prior",
    )
    p.add_argument("--d", type=int, required=True, help="dimension of x (>= 1)")
    p.add_argument("--N", type=int, required=True, help="in-context examples per prompt (>= 1)")
    p.add_argument("--K", type=int, default=2, help="MoR: number of components (default 2)")
    p.add_argument(
        "--pi",
        type=_float_list,
        default=None,
        metavar="P1,..,PK",
        help="MoR: mixing weights summing to 1 (default uniform)",
    )
    p.add_argument(
        "--symmetric",
        action="store_true",
        help="MoR: symmetric two components beta_2 = -beta_1, pi = (1/2, 1/2) (G* = 0)",
    )
    p.add_argument(
        "--prior",
        choices=("gaussian", "sphere"),
        default="gaussian",
        help="MoR component prior: N(0, tau^2 I) or uniform on the sphere of radius tau",
    )
    p.add_argument("--prior-scale", type=float, default=1.0, help="MoR: tau (default 1)")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="label noise sd (linear: >= 0, default 0; mor: > 0, default 0.5)",
    )
    noise.add_argument(
        "--snr",
        type=float,
        default=None,
        help="alternative to --sigma: sigma = tau sqrt(d) / snr (snr > 0; a fixed "
        "sigma, as the closed-form loss needs)",
    )
    p.add_argument(
        "--lambda-spectrum",
        type=_float_list,
        default=None,
        metavar="L1,..,Ld",
        help="eigenvalues of Lambda = Cov(x) (d positive numbers; default all 1)",
    )
    p.add_argument(
        "--lambda-rotation-seed",
        type=int,
        default=None,
        help="rotate diag(spectrum) by a random orthogonal matrix from this seed",
    )
    p.add_argument(
        "--init",
        choices=("structured", "random"),
        default="structured",
        help="structured: ZFB Assumption 3.3 (MoR analogue); random: Gaussian live blocks",
    )
    p.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help="s > 0 (default: s^2 ||Gamma||_op sqrt(d) = 1, inside the theorem's "
        "condition < 2; 0.5 for the symmetric model)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of Theta / the random init")
    p.add_argument(
        "--flow",
        choices=("eigen", "reduced", "full"),
        default=None,
        help="state space: eigen (fast reduced ODE in Lambda's eigenbasis, default for "
        "structured), reduced (U, u), full (all weights; default for random)",
    )
    p.add_argument(
        "--method",
        default="LSODA",
        choices=("LSODA", "Radau", "BDF", "RK45", "DOP853"),
        help="scipy solver",
    )
    p.add_argument("--t-max", type=float, default=1e4, help="final time (default 1e4)")
    p.add_argument("--rtol", type=float, default=1e-11, help="solver rtol (default 1e-11)")
    p.add_argument("--atol", type=float, default=1e-13, help="solver atol (default 1e-13)")
    p.add_argument(
        "--gradient-tol",
        type=float,
        default=1e-13,
        help="stop when ||grad L|| falls below this (default 1e-13)",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="DIR",
        help="write lsa_flow.pdf/.png (loss gap, ||G - G*||, conserved quantity, "
        "eigenvalues) to DIR",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the full JSON object (default: also JSON, without the matrices)",
    )
    p.set_defaults(func=_cmd_dynamics_lsa)


def _cmd_dynamics_lsa(args: argparse.Namespace) -> int:
    import math

    import numpy as np
    import torch

    from iclkit.dynamics.lsa_convergence import lsa_convergence
    from iclkit.dynamics.lsa_init import random_init, structured_init
    from iclkit.dynamics.lsa_moments import LSAMoments
    from iclkit.dynamics.lsa_plots import plot_lsa_flow
    from iclkit.theory.mor import MoRConfig
    from iclkit.theory.rng import make_generator
    from iclkit.theory.validation import check_int, check_positive

    d = check_int(args.d, "--d", minimum=1)
    N = check_int(args.N, "--N", minimum=1)
    Lambda = None
    if args.lambda_spectrum is not None:
        spec = np.asarray(args.lambda_spectrum, dtype=float)
        if spec.shape != (d,):
            raise ParameterError(f"--lambda-spectrum must have d = {d} values, got {spec.size}")
        if not np.all(np.isfinite(spec)) or spec.min() <= 0:
            raise ParameterError(
                "--lambda-spectrum: Lambda must be positive definite (all eigenvalues > 0), "
                f"got {spec.tolist()}"
            )
        Lambda = np.diag(spec)
        if args.lambda_rotation_seed is not None:
            g = make_generator(args.lambda_rotation_seed)
            Q, _ = np.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64).numpy())
            Lambda = Q @ Lambda @ Q.T
            Lambda = 0.5 * (Lambda + Lambda.T)
    if args.snr is not None:
        sigma = args.prior_scale * math.sqrt(d) / check_positive(args.snr, "--snr")
    else:
        sigma = args.sigma
    if args.data == "linear":
        moments = LSAMoments.linear(d, N, Lambda=Lambda, sigma=0.0 if sigma is None else sigma)
    else:
        cfg = MoRConfig(
            d=d,
            K=args.K,
            n=N,
            sigma=0.5 if sigma is None else sigma,
            pi=None if args.pi is None else tuple(args.pi),
            symmetric=args.symmetric,
            prior=args.prior,
            prior_scale=args.prior_scale,
            Lambda=None if Lambda is None else tuple(map(tuple, Lambda)),
        )
        moments = LSAMoments.mor(cfg)
    if args.init_scale is None:
        if moments.c2 * moments.pi_sq == 0:
            scale = 0.5
        else:
            g_op = float(np.linalg.eigvalsh(0.5 * (moments.Gamma + moments.Gamma.T)).max())
            scale = 1.0 / math.sqrt(g_op * math.sqrt(d))
    else:
        scale = check_positive(args.init_scale, "--init-scale")
    if args.init == "structured":
        init = structured_init(moments, scale, seed=args.seed)
    else:
        init = random_init(moments, scale, seed=args.seed, blocks="live")
    flow = args.flow or ("eigen" if args.init == "structured" else "full")
    res = lsa_convergence(
        moments,
        init,
        flow=flow,
        t_max=args.t_max,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        gradient_tol=args.gradient_tol,
    )
    out = res.to_json()
    out["data"] = moments.describe()
    if args.plot is not None:
        paths = plot_lsa_flow(
            res.simulation,
            res.fixed_points.G_star,
            args.plot,
            title=f"LSA gradient flow, {args.data} data, d={d}, N={N}",
            predicted_rate=res.fixed_points.tail_rate,
        )
        out["plots"] = [str(p) for p in paths]
    if not args.json:
        out = {k: v for k, v in out.items() if k not in ("G_final", "G_star_symbolic")}
    _print_json(out)
    return 0


# --------------------------------------------------------------------------- iclkit check
def _add_check(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "check",
        help="verify every theorem claim numerically and write a report (the main job)",
        description=(
            "Run the registered theorem checks (reference EM rates, the Theorem 3.1 "
            "construction, the LSA gradient flow, the softmax dynamics, generalization), print a "
            "table (check, theorem, measured, expected, tolerance, status), and write "
            "DIR/report.json, DIR/report.md and the plots DIR/*.png, DIR/*.pdf. A check whose "
            "capability is missing is SKIPPED with the reason, never passed. Exit code 1 if any "
            "check fails, 0 otherwise, 2 for bad arguments."
        ),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="small grids: the whole run takes a few minutes on 2 CPU cores (default)",
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="paper-scale grids and more seeds (much slower)",
    )
    p.set_defaults(mode="quick")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        default=None,
        help="run only this check or group (e.g. em, em.rate_d); repeat or comma-separate",
    )
    p.add_argument(
        "--out",
        default="iclkit-report",
        metavar="DIR",
        help="folder for report.json, report.md and plots (default ./iclkit-report)",
    )
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the checks' small problems run fastest single-threaded)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    import time

    import torch

    from iclkit.checks.registry import run_checks, select_checks
    from iclkit.checks.report import format_table, summary, write_report
    from iclkit.theory.validation import check_int

    seed = check_int(args.seed, "--seed", minimum=0)
    threads = check_int(args.threads, "--threads", minimum=1)
    checks = select_checks(args.only)
    if args.list:
        for c in checks:
            print(f"{c.name:<36} {c.theorem} {c.mark}")
            print(f"{'':<36} needs: {', '.join(c.requires) or '-'}")
        return 0
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        results = run_checks(
            checks, mode=args.mode, seed=seed, out_dir=args.out, progress=not args.no_progress
        )
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - t0
    meta = {"iclkit_version": __version__, "mode": args.mode, "seed": seed, "seconds": seconds}
    json_path, md_path = write_report(results, args.out, meta)
    print(format_table(results))
    counts = summary(results)
    print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIPPED']} skipped "
        f"in {seconds:.1f} s; report: {md_path} and {json_path}"
    )
    return 1 if counts["FAIL"] else 0


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
_DYNAMICS_SUBCOMMANDS: tuple[Callable[[_SubParsers], None], ...] = (
    _add_dynamics_lsa,
    _add_dynamics_softmax,
)

_SUBCOMMANDS: tuple[Callable[[_SubParsers], None], ...] = (
    _add_check,
    _add_demo,
    _add_sample,
    _add_run_algo,
    _add_dynamics,
    _add_reproduce,
    _add_plot,
    _add_construct,
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
