"""``iclkit sample``: draw MoR prompts and their local initialisation to an ``.npz`` file."""

from __future__ import annotations

import argparse

from iclkit.constructions.prompts import PromptsConfig, sample_prompts

from .options import (
    SubParsers,
    add_out_option,
    add_prompt_options,
    add_subcommand,
    prompts_config_from,
    save_npz,
)

DESCRIPTION = (
    "Sample B MoR prompts (per-sample components z_i ~ pi, x_i ~ N(0, I_d), "
    "y_i = <x_i, beta_{z_i}> + N(0, sigma^2)) and write X (B,n,d), y (B,n), x_query (B,d), "
    "y_query (B,), betas (B,K,d), pi (B,K), sigma (B,) and a local initialisation "
    "init (B,K,d) = beta_k + rho ||beta_k|| u_k to an .npz file."
)


def add(sub: SubParsers) -> None:
    p = add_subcommand(
        sub, "sample", run, summary="sample MoR prompts to an .npz file", description=DESCRIPTION
    )
    add_prompt_options(p, PromptsConfig())
    add_out_option(p, "output .npz path (written atomically)", required=True)


def run(args: argparse.Namespace) -> int:
    config = prompts_config_from(args)
    save_npz(args.out, sample_prompts(config).arrays())
    mor = config.mor
    print(f"wrote {config.batch} prompts (n={mor.n}, d={mor.d}, K={mor.K}) to {args.out}")
    return 0
