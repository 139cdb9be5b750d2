"""``iclkit run-algo``: run a reference algorithm (EM, gradient EM, OLS, ...) on prompts from a file."""

from __future__ import annotations

import argparse

from iclkit.theory.validation import ParameterError

from .options import SubParsers, load_npz, save_npz

_ALGOS = ("em", "gradient-em", "oracle", "bayes", "ols", "ridge")


def add(sub: SubParsers) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from iclkit.constructions import algorithms as alg

    data = load_npz(args.inp, ["X", "y", "sigma"], ["init", "pi", "betas"])
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
    save_npz(args.out, {"beta": beta.numpy(), "pi": pi_out.numpy()})
    print(f"{args.algo}: wrote beta {tuple(beta.shape)} and pi {tuple(pi_out.shape)} to {args.out}")
    return 0


# --------------------------------------------------------------------------- iclkit demo
