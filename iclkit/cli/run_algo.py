"""``iclkit run-algo``: run a reference algorithm on prompts from an .npz file.

Run a reference algorithm on prompts.npz (X (B,n,d), y (B,n), init (B,K,d), sigma (B,), optional pi
(B,K); oracle also needs betas (B,K,d)) and write est.npz with beta (B,K,d) and pi (B,K)
(K=1 for ols, ridge and bayes-optimal, whose beta is the posterior mean of sum_k pi_k beta_k).
Prints how the algorithm ended: converged, max_iter, closed-form, or diverged with the first
non-finite iteration and the prompts that keep their last finite iterate.
"""

from __future__ import annotations

import argparse

from iclkit.constructions.estimate import ALGORITHMS, AlgorithmConfig, run_algorithm

from . import options

_DEFAULTS = AlgorithmConfig()


#: The arrays each algorithm reads besides X, y, sigma (and pi, all but ols and ridge); only
#: these are loaded from --in.
_KEYS = {"em": ["init"], "gradient-em": ["init"], "oracle": ["betas"]}


def add(sub: options.SubParsers) -> None:
    p = options.add_subcommand(sub, "run-algo", run, doc=__doc__)
    p.add_argument("--algo", required=True, choices=ALGORITHMS, help="algorithm to run")
    p.add_argument("--in", dest="inp", required=True, help="input prompts .npz")
    options.add_out_option(p, "output estimates .npz (written atomically)", required=True)
    options.add_field_option(p, _DEFAULTS, "T_outer", "EM iterations (em, gradient-em)")
    options.add_field_option(p, _DEFAULTS, "T_inner", "gradient steps per M-step (gradient-em)")
    options.add_field_option(p, _DEFAULTS, "alpha", "gradient step size")
    pi_group = p.add_mutually_exclusive_group()
    pi_group.add_argument(
        "--estimate-pi",
        dest="estimate_pi",
        action="store_true",
        default=_DEFAULTS.estimate_pi,
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
        default=_DEFAULTS.lam,
        help="ridge penalty (default sigma^2 per prompt: posterior mean for beta ~ N(0, I))",
    )


def run(args: argparse.Namespace) -> int:
    config = options.config_from_args(AlgorithmConfig, args)
    options.check_out_file(args.out)
    optional = [*_KEYS.get(args.algo, []), *(["pi"] if args.algo in _KEYS else [])]
    data = options.load_npz(args.inp, ["X", "y", "sigma"], optional)
    est = run_algorithm(args.algo, data, config)
    options.save_npz(args.out, {"beta": est.beta.numpy(), "pi": est.pi.numpy()})
    shapes = f"beta {tuple(est.beta.shape)} and pi {tuple(est.pi.shape)}"
    print(f"{args.algo}: {est.describe()}; wrote {shapes} to {args.out}")
    return 0
