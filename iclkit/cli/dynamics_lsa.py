"""``iclkit dynamics lsa``: gradient flow of one linear self-attention layer."""

from __future__ import annotations

import argparse

from iclkit.theory.validation import ParameterError

from .options import SubParsers, float_list, print_json


def add(dyn: SubParsers) -> None:
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
        type=float_list,
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
        type=float_list,
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    import numpy as np
    import torch

    from iclkit.dynamics.lsa.convergence import lsa_convergence
    from iclkit.dynamics.lsa.init import random_init, structured_init
    from iclkit.dynamics.lsa.moments import LSAMoments
    from iclkit.dynamics.lsa.plots import plot_lsa_flow
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
    print_json(out)
    return 0


# --------------------------------------------------------------------------- iclkit check
