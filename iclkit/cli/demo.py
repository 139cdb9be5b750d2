"""``iclkit demo``: EM and gradient EM vs the oracle on sampled MoR prompts (a quick end-to-end run).

Sample MoR prompts, run EM, gradient EM, OLS and the oracle from a local initialisation, and print
parameter error (up to permutation) and excess risk vs the oracle predictor E(y_hat-y)^2 -
E(y_orc-y)^2, each with its Monte Carlo standard error over prompts.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from iclkit.experiments.demo import DemoConfig, DemoResult, run_demo

from . import options

_DEFAULTS = DemoConfig()


def add(sub: options.SubParsers) -> None:
    p = options.add_subcommand(sub, "demo", run, doc=__doc__)
    options.add_prompt_options(p, _DEFAULTS.prompts)
    options.add_field_option(p, _DEFAULTS, "T", "EM / gradient-EM iterations")
    options.add_json_option(p)


def run(args: argparse.Namespace) -> int:
    res = run_demo(
        options.config_from_args(DemoConfig, args, prompts=options.prompts_config_from(args))
    )
    if args.json:
        options.print_json(_as_json(res))
    else:
        _print_table(res)
    return 0


def _as_json(res: DemoResult) -> dict[str, object]:
    p = res.config.prompts
    config = {"d": p.mor.d, "K": p.mor.K, "n": p.mor.n, "snr": p.mor.snr, "sigma": p.mor.sigma}
    return {
        "config": {**config, "B": p.batch, "T": res.config.T},
        "rows": [dataclasses.asdict(row) for row in res.rows],
        "seconds": res.seconds,
    }


def _print_table(res: DemoResult) -> None:
    p, mor = res.config.prompts, res.config.prompts.mor
    noise = f"snr={mor.snr}" if mor.snr else f"sigma={mor.sigma}"
    print(
        f"MoR prompts: d={mor.d} K={mor.K} n={mor.n} {noise} B={p.batch} prompts, "
        f"init = truth + {p.rho:g} relative perturbation, T={res.config.T}"
    )
    print(f"{'algorithm':<12} {'param error (perm.)':>22} {'excess risk vs oracle':>26}")
    for row in res.rows:
        pe = (
            "-"
            if math.isnan(row.param_error)
            else f"{row.param_error:.4g} ± {row.param_error_se:.1g}"
        )
        risk = f"{row.excess_risk:>16.4g} ± {row.excess_risk_se:.1g}"
        print(f"{row.algorithm:<12} {pe:>22} {risk}")
    print(
        "excess risk = E(y_hat - y)^2 - E(y_orc - y)^2 = E(y_hat - y_orc)^2 over prompts "
        f"(± 1 standard error); {res.seconds:.1f} s"
    )
