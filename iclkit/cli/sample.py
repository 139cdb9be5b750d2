"""``iclkit sample``: draw MoR prompts and write them to an ``.npz`` file."""

from __future__ import annotations

import argparse

from .options import SubParsers, add_mor_options, mor_config_from, save_npz


def add(sub: SubParsers) -> None:
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
    add_mor_options(p, d=5, K=2, n=200, snr=10.0, batch=64)
    p.add_argument(
        "--rho",
        type=float,
        default=0.1,
        help="relative size of the init perturbation (default 0.1)",
    )
    p.add_argument("--out", required=True, help="output .npz path (written atomically)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from iclkit.constructions.predictors import initial_estimate
    from iclkit.theory.mor import sample_mor
    from iclkit.theory.rng import derive_seed, make_generator

    config = mor_config_from(args)
    batch = sample_mor(config, args.batch, seed=args.seed)
    init = initial_estimate(
        batch.betas,
        method="local",
        rho=args.rho,
        generator=make_generator(derive_seed(args.seed, "init")),
    )
    save_npz(
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
