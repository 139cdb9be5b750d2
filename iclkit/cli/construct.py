"""``iclkit construct``: run the hand-set Theorem 3.1 transformer (gradient EM in context).

Build the MoR Theorem 3.1 transformer (ReLU attention, <= 4 heads per layer, weights set by hand;
docs/construction.md) and run it on prompts. With --in: prompts.npz as written by 'iclkit sample'
(X (B,n,d), y (B,n), init (B,K,d), sigma (B,), x_query (B,d), optional pi (B,K)); writes beta_tf
(B,K,d), y_hat (B,) and beta_surrogate (B,K,d) to --out. Without --in: samples prompts from the MoR
options below. Prints layers, max_heads_per_layer, weight_norm, max_abs_diff_vs_surrogate,
max_abs_diff_vs_gradient_em (and, when sampling, the prediction error vs the oracle and the
parameter error). --symmetric selects the tied two-component construction (K=2, pi=1/2, init[:, 0]
used), else the general-K one (pi from the file or --pi, default uniform). --init in-context computes
the initial estimate from the prompt (spectral-initialisation layers in front of the construction;
then max_abs_diff_vs_gradient_em compares with the algorithm: exact spectral init + exact gradient
EM); it is the default when sampling and when the input file has no init; --init given needs init.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import get_args

import torch

from iclkit.constructions.attention import AttentionPath
from iclkit.constructions.gradient_em_transformer import (
    CONSTRUCT_PROMPTS,
    DEFAULT_CONSTRUCTION,
    Architecture,
    ConstructionConfig,
    ConstructionRun,
    InContextRun,
    InitMode,
    Precision,
    default_init_mode,
    run_gradient_em_transformer,
    run_in_context_on_sampled_prompts,
    run_in_context_transformer,
    run_on_sampled_prompts,
)
from iclkit.theory.validation import ParameterError

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
    g.add_argument(
        "--init",
        choices=get_args(InitMode),
        default=None,
        help="initial estimate: given (the file's init; the sampled local init) or in-context "
        "(computed from the prompt by spectral-initialisation layers; attention-only, float64); "
        "default in-context when sampling or when the file has no init, given for "
        "--architecture attention-mlp or --dtype float32",
    )
    options.add_field_option(
        g, _D, "power_iterations", "--init in-context: power iterations of the spectral init"
    )
    options.add_prompt_options(p, CONSTRUCT_PROMPTS)
    options.add_json_option(p)


def run(args: argparse.Namespace) -> int:
    data = None
    if args.inp is not None:  # read once; whether it holds an init decides the default
        data = options.load_npz(args.inp, ["X", "y", "sigma", "x_query"], ["pi", "init"])
    if args.init is None:
        has_init = data is not None and "init" in data
        args.init = default_init_mode(has_init, args.architecture, args.dtype)
    config = options.config_from_args(ConstructionConfig, args)
    if data is not None:
        return _run_file(args, data, config)
    if config.init == "in-context":
        s = run_in_context_on_sampled_prompts(options.prompts_config_from(args), config)
        ic_errors = {
            "prediction_error_vs_oracle": s.prediction_error_vs_oracle,
            "algorithm_prediction_error_vs_oracle": s.algorithm_prediction_error_vs_oracle,
            "parameter_error": s.parameter_error,
            "algorithm_parameter_error": s.algorithm_parameter_error,
            "sqrt_d_over_n": s.sqrt_d_over_n,
        }
        return _finish(args, s.result.run, {**_init_summary(s.result), **ic_errors})
    sampled = run_on_sampled_prompts(options.prompts_config_from(args), config)
    errors: Mapping[str, object] = {
        "prediction_error_vs_oracle": sampled.prediction_error_vs_oracle,
        "parameter_error": sampled.parameter_error,
        "sqrt_d_over_n": sampled.sqrt_d_over_n,
    }
    return _finish(args, sampled.run, errors)


def _run_file(
    args: argparse.Namespace, data: Mapping[str, torch.Tensor], config: ConstructionConfig
) -> int:
    """--in: the prompts of the file, from its init ("given") or from the spectral start."""
    sigma, pi = data["sigma"].reshape(-1), data.get("pi")
    if config.init == "in-context":
        shaped = pi if pi is not None else data.get("init")
        K = int(args.K) if shaped is None else int(shaped.shape[1])
        res = run_in_context_transformer(
            data["X"], data["y"], data["x_query"], sigma, pi, config, K=K
        )
        return _finish(args, res.run, _init_summary(res))
    if "init" not in data:
        raise ParameterError(
            f"--in: {args.inp} has no 'init' array, which --init given needs "
            "(add one, or use --init in-context with the attention-only float64 form)"
        )
    run_ = run_gradient_em_transformer(
        data["X"], data["y"], data["init"], data["x_query"], sigma, pi, config
    )
    return _finish(args, run_, {})


def _init_summary(res: InContextRun) -> dict[str, object]:
    return {
        "init": "in-context",
        "init_layers": int(res.run.report.block_ends[0][3]),
        "max_abs_diff_init_vs_surrogate": res.max_abs_diff_init_vs_surrogate,
        "max_abs_diff_init_vs_algorithm": float((res.init_tf - res.init_algorithm).abs().max()),
        "normalised_q_range": list(res.q_range),
    }


def _finish(args: argparse.Namespace, res: ConstructionRun, errors: Mapping[str, object]) -> int:
    """Write --out, print the summary."""
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
