"""``iclkit construct``: build and run the Theorem 3.1 transformer."""

from __future__ import annotations

import argparse
from typing import Any

from iclkit.theory.validation import ParameterError

from .options import SubParsers, add_mor_options, load_npz, mor_config_from, print_json, save_npz


def add(sub: SubParsers) -> None:
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
    add_mor_options(p, d=5, K=2, n=200, snr=10.0, batch=4)
    p.add_argument(
        "--rho",
        type=float,
        default=0.1,
        help="when sampling: relative size of the local init perturbation (default 0.1)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the JSON line only (it is always printed)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
        data = load_npz(args.inp, ["X", "y", "init", "sigma", "x_query"], ["pi"])
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
        batch = sample_mor(mor_config_from(args), B, seed=args.seed)
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
        save_npz(
            args.out,
            {
                "beta_tf": run.beta_tf.numpy(),
                "y_hat": run.y_hat.numpy(),
                "beta_surrogate": run.beta_surrogate.numpy(),
            },
        )
    print_json(out)
    return 0


# --------------------------------------------------------------------------- iclkit dynamics lsa
