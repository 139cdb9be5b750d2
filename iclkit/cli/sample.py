"""``iclkit sample``: sample MoR prompts to an .npz file.

Sample B MoR prompts (per-sample components z_i ~ pi, x_i ~ N(0, I_d), y_i = <x_i, beta_{z_i}> +
N(0, sigma^2)) and write X (B,n,d), y (B,n), x_query (B,d), y_query (B,), betas (B,K,d), pi (B,K),
sigma (B,) and a local initialisation init (B,K,d) = beta_k + rho ||beta_k|| u_k to an .npz file.
"""

from __future__ import annotations

import argparse

from iclkit.constructions.prompts import PromptsConfig, sample_prompts

from . import options


def add(sub: options.SubParsers) -> None:
    p = options.add_subcommand(sub, "sample", run, doc=__doc__)
    options.add_prompt_options(p, PromptsConfig())
    options.add_out_option(p, "output .npz path (written atomically)", required=True)


def run(args: argparse.Namespace) -> int:
    config = options.prompts_config_from(args)
    options.check_out_file(args.out)
    options.save_npz(args.out, sample_prompts(config).arrays())
    mor = config.mor
    print(f"wrote {config.batch} prompts (n={mor.n}, d={mor.d}, K={mor.K}) to {args.out}")
    return 0
