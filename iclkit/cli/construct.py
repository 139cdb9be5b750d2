"""``iclkit construct``: run the hand-set Theorem 3.1 transformer (gradient EM in context).

Build the MoR Theorem 3.1 transformer (ReLU attention, <= 4 heads per layer, weights set by hand;
docs/construction.md) and run it on prompts. With --in: prompts.npz as written by 'iclkit sample'
(X (B,n,d), y (B,n), init (B,K,d), sigma (B,), x_query (B,d), optional pi (B,K)); writes beta_tf
(B,K,d), y_hat (B,) and beta_surrogate (B,K,d) to --out. Without --in: samples prompts from the MoR
options below. Prints layers, max_heads_per_layer, weight_norm, max_abs_diff_vs_surrogate,
max_abs_diff_vs_gradient_em (and, when sampling, the prediction error vs the oracle and the
parameter error). --symmetric selects the tied two-component construction (K=2, pi=1/2, init[:, 0]
used), else the general-K one (pi from the file or --pi, default uniform).
"""

from __future__ import annotations

import argparse
from typing import get_args

from iclkit.constructions.attention import AttentionPath
from iclkit.constructions.gradient_em_transformer import (
    CONSTRUCT_PROMPTS,
    DEFAULT_CONSTRUCTION,
    Architecture,
    ConstructionConfig,
    ConstructionRun,
    Precision,
    run_gradient_em_transformer,
    run_on_sampled_prompts,
)

from . import options

_D = DEFAULT_CONSTRUCTION


def add(sub: options.SubParsers) -> None:
    p = options.add_subcommand(sub, "construct", run, doc=__doc__)
    p.add_argument("--in", dest="inp", default=None, help="input prompts .npz (else sample)")
    options.add_out_option(p, "output .npz of beta_tf, y_hat, beta_surrogate (written atomically)")
    g = p.add_argument_group("construction")
    options.add_field_option(g, _D, "T_outer", "gradient-EM iterations")
    options.add_field_option(g, _D, "T_inner", "gradient steps per M-step")
    options.add_field_option(g, _D, "alpha", "M-step step size")
    options.add_field_option(g, _D, "relu_terms", "ReLU terms per E-step nonlinearity")
    options.add_field_option(
        g, _D, "attention",
        "how heads are evaluated: auto = exactly in O(n D) where the train tokens share the key "
        "or the query (every head here), else with the full n x n scores; dense = always the "
        "full scores",
        choices=get_args(AttentionPath),
    )  # fmt: skip
    options.add_field_option(
        g, _D, "architecture",
        "attention-only = ReLU-attention layers of <= 4 heads, one head per ReLU term (layers "
        "grow with --relu-terms); attention-mlp = attention (<= 4 heads) + per-token ReLU MLP "
        "blocks, depth independent of --relu-terms; same surrogate gradient EM",
        choices=get_args(Architecture),
    )  # fmt: skip
    options.add_field_option(
        g, _D, "dtype", "floating-point type of the forward pass", choices=get_args(Precision)
    )
    options.add_prompt_options(p, CONSTRUCT_PROMPTS)
    options.add_json_option(p)


def run(args: argparse.Namespace) -> int:
    config = options.config_from_args(ConstructionConfig, args)
    if args.inp is None:
        sampled = run_on_sampled_prompts(options.prompts_config_from(args), config)
        res = sampled.run
        errors = {
            "prediction_error_vs_oracle": sampled.prediction_error_vs_oracle,
            "parameter_error": sampled.parameter_error,
            "sqrt_d_over_n": sampled.sqrt_d_over_n,
        }
    else:
        data = options.load_npz(args.inp, ["X", "y", "init", "sigma", "x_query"], ["pi"])
        res = run_gradient_em_transformer(
            data["X"], data["y"], data["init"], data["x_query"], data["sigma"].reshape(-1),
            data.get("pi"), config,
        )  # fmt: skip
        errors = {}
    if args.out is not None:
        options.save_npz(
            args.out,
            {"beta_tf": res.beta_tf, "y_hat": res.y_hat, "beta_surrogate": res.beta_surrogate},
        )
    summary = {**_summary(res), **errors}
    if args.json:
        options.print_json(summary)
    else:
        for key, value in summary.items():
            print(f"{key:<28} {value}")
    return 0


def _summary(res: ConstructionRun) -> dict[str, object]:
    return {
        "layers": res.report.L,
        "max_heads_per_layer": res.report.max_heads_per_layer,
        "weight_norm": res.weight_norm,
        "max_abs_diff_vs_surrogate": res.max_abs_diff_vs_surrogate,
        "max_abs_diff_vs_gradient_em": res.max_abs_diff_vs_gradient_em,
        "token_width_D": res.report.D,
        "layer_formula": res.report.layer_formula,
        "architecture": res.report.architecture,
    }
