"""``iclkit dynamics lsa``: gradient flow of one linear self-attention layer vs its symbolic
optimum.

Integrate the population gradient flow of a single LSA layer (Zhang-Frei-Bartlett
parameterisation) on linear-regression or MoR prompts from a structured (ZFB Assumption 3.3) or
random initialisation, solve the fixed points with sympy, and print one JSON object comparing the
two (docs/lsa_flow.md). Every option is a field of LSAConfig, whose defaults are the defaults
here.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from iclkit.dynamics.lsa import FLOWS, LSAConfig, simulate_lsa
from iclkit.dynamics.lsa.integrate import METHODS
from iclkit.dynamics.lsa.plots import plot_lsa_flow

from . import options


def add(dyn: options.SubParsers) -> None:
    p = options.add_subcommand(dyn, "lsa", run, doc=__doc__)

    def option(field: str, help: str, **kwargs: Any) -> None:
        options.add_field_option(p, LSAConfig, field, help, **kwargs)

    data_help = "linear: w ~ N(0, I_d) (ZFB); mor: K components beta_k from the prior"
    option("data", data_help, choices=("linear", "mor"))
    p.add_argument("--d", type=int, required=True, help="dimension of x (>= 1)")
    options.add_n_option(p, "in-context examples per prompt (the paper's N, >= 1)")
    option("K", "MoR: number of components")
    pi_help = "MoR: mixing weights summing to 1 (default uniform)"
    option("pi", pi_help, type=options.float_list, metavar="P1,..,PK")
    p.add_argument(
        "--symmetric",
        action="store_true",
        help="MoR: symmetric two components beta_2 = -beta_1, pi = (1/2, 1/2) (G* = 0)",
    )
    prior_help = "MoR component prior: N(0, tau^2 I) or uniform on the sphere of radius tau"
    option("prior", prior_help, choices=("gaussian", "sphere"))
    option("prior_scale", "MoR: tau")
    sigma_help = (
        "label noise sd, the same for every prompt as the closed-form loss needs "
        "(linear: >= 0, default 0; mor: > 0, default 0.5)"
    )
    option("sigma", sigma_help, type=float)
    spectrum_help = "eigenvalues of Lambda = Cov(x) (d positive numbers; default all 1)"
    option("lambda_spectrum", spectrum_help, type=options.float_list, metavar="L1,..,Ld")
    option(
        "lambda_rotation_seed",
        "rotate diag(spectrum) by a random orthogonal matrix from this seed",
        type=int,
    )
    init_help = "structured: ZFB Assumption 3.3 (MoR analogue); random: Gaussian live blocks"
    option("init", init_help, choices=("structured", "random"))
    scale_help = (
        "s > 0 (default: s^2 ||Gamma||_op sqrt(d) = 1, inside the theorem's condition < 2; "
        "0.5 for the symmetric model)"
    )
    option("init_scale", scale_help, type=float)
    option("seed", "seed of Theta / the random init")
    flow_help = (
        "state space: eigen (fast reduced ODE in Lambda's eigenbasis, default for structured), "
        "reduced (U, u), full (all weights; default for random)"
    )
    option("flow", flow_help, type=str, choices=tuple(FLOWS))
    option("method", "scipy solver", choices=tuple(METHODS))
    option("t_max", "final time")
    option("rtol", "solver rtol")
    option("atol", "solver atol")
    option("gradient_tol", "stop when ||grad L|| falls below this")
    what = "lsa_flow.pdf/.png (loss gap, ||G - G*||, conserved quantity, eigenvalues)"
    options.add_plot_option(p, what)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the full JSON object (default: also JSON, without the matrices)",
    )
    options.add_progress_option(p, default=False)


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        options.check_out_dir(args.plot, "--plot")
    # every LSAConfig field has an option of the same name (comma lists become tuples)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(LSAConfig):
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    result = simulate_lsa(LSAConfig(**values), progress=args.progress)
    out = result.to_json(matrices=args.json)
    if args.plot is not None:
        out["plots"] = [str(path) for path in plot_lsa_flow(result, args.plot)]
    options.print_json(out)
    return 0
