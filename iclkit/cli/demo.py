"""``iclkit demo``: a one-minute tour of the MoR data model and its algorithms."""

from __future__ import annotations

import argparse
from typing import Any

from .options import SubParsers, add_mor_options, mor_config_from, print_json


def add(sub: SubParsers) -> None:
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
    add_mor_options(p, d=8, K=3, n=1000, snr=6.0, batch=512)
    p.add_argument("--T", type=int, default=20, help="EM / gradient-EM iterations (default 20)")
    p.add_argument(
        "--rho", type=float, default=0.1, help="relative init perturbation (default 0.1)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from iclkit.constructions import predictors as P
    from iclkit.theory.metrics import excess_risk_vs_oracle, parameter_error
    from iclkit.theory.mor import sample_mor

    t0 = time.perf_counter()
    config = mor_config_from(args)
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
        print_json(
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
