"""Running the Theorem 3.1 transformer on prompts, next to the algorithms it is built to equal.

:func:`run_gradient_em_transformer` builds one construction per distinct ``(sigma, pi)`` of the
prompts (the weights contain ``1/sigma^2`` and ``log pi``), runs it, and compares its estimates
with the surrogate gradient EM (the same algorithm with the ReLU sums, computed as sums over the
examples: equal to round-off) and with exact gradient EM. :func:`run_on_sampled_prompts` does the
same on freshly sampled MoR prompts and adds the errors against the truth;
:func:`layerwise_relative_error` compares every inner step's hidden state with the surrogate
iterate (arXiv 2410.14183, Theorem 3.1; ``docs/construction.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from iclkit.constructions.algorithms import gradient_em
from iclkit.constructions.em_core import as_sigma
from iclkit.constructions.inputs import Sigma, check_data_scale, prepare_tensors
from iclkit.constructions.prompts import PromptsConfig, sample_prompts
from iclkit.constructions.surrogate_em import (
    general_surrogate_iterates,
    symmetric_surrogate_iterates,
)
from iclkit.theory.metrics import parameter_error
from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import (
    ParameterError,
    check_finite_tensor,
    check_positive,
    check_shape,
)

from .build import build_gradient_em_transformer
from .config import DEFAULT_CONSTRUCTION, ConstructionConfig
from .model import ConstructionReport, GradientEMTransformer
from .nonlinearities import estep_functions

__all__ = [
    "CONSTRUCT_PROMPTS",
    "ConstructionRun",
    "SampledConstructionRun",
    "layerwise_relative_error",
    "run_gradient_em_transformer",
    "run_on_sampled_prompts",
    "surrogate_iterates",
]

#: The prompts ``iclkit construct`` samples by default: 4 prompts of the small default
#: distribution; with ``snr`` fixed, sigma differs per prompt and each prompt gets its own
#: construction, so a few prompts keep the run to seconds.
CONSTRUCT_PROMPTS = PromptsConfig(batch=4)
#: Digits of pi that identify one construction (pi read back from a file differs in the last bit).
_PI_DIGITS = 15
#: Tolerance of pi summing to 1 in float64 (float32 weights get 4 K float32 epsilons).
_PI_SUM_ATOL = 1e-8
#: The torch type of each ``ConstructionConfig.dtype``.
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Floor of a reference norm in a relative error (an all-zero iterate has relative error 0 / tiny).
_TINY_NORM = 1e-300


@dataclass(frozen=True)
class ConstructionRun:
    """Outputs of :func:`run_gradient_em_transformer` on B prompts."""

    beta_tf: torch.Tensor  # (B, K, d) the transformer's read_beta
    y_hat: torch.Tensor  # (B,) the transformer's read_y
    beta_surrogate: torch.Tensor  # (B, K, d) surrogate gradient EM, run directly
    beta_gradient_em: torch.Tensor  # (B, K, d) exact gradient EM (algorithms.gradient_em)
    report: ConstructionReport  # of the first construction (all share L and the heads)
    weight_norm: float  # the largest |||theta||| over the constructions built
    max_abs_diff_vs_surrogate: float
    max_abs_diff_vs_gradient_em: float
    constructions: int  # number of distinct (sigma, pi) constructions built


@dataclass(frozen=True)
class SampledConstructionRun:
    """:func:`run_on_sampled_prompts`: the run and its errors against the sampled truth.

    Attributes
    ----------
    run : ConstructionRun
    prediction_error_vs_oracle : float, mean over prompts of ``|y_hat - y_orc|``.
    parameter_error : float, mean over prompts of the parameter error up to permutation.
    sqrt_d_over_n : float, the statistical rate ``sqrt(d / n)`` of Theorem 3.1.
    """

    run: ConstructionRun
    prediction_error_vs_oracle: float
    parameter_error: float
    sqrt_d_over_n: float


def run_gradient_em_transformer(
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    x_query: torch.Tensor,
    sigma: torch.Tensor,
    pi: torch.Tensor | None = None,
    config: ConstructionConfig = DEFAULT_CONSTRUCTION,
) -> ConstructionRun:
    """Build the construction for each distinct ``(sigma_b, pi_b)`` and run it on the prompts,
    next to the surrogate and the exact gradient EM.

    Parameters
    ----------
    X : (B, n, d), y : (B, n), init : (B, K, d), x_query : (B, d), sigma : (B,) or one float,
    pi : (B, K) or None (uniform).
    config : the schedule and accuracy; ``config.symmetric`` selects the tied two-component
        construction (needs K = 2, pi = 1/2; ``init[:, 0]`` is used); ``config.attention`` how
        the forward pass evaluates the heads ("auto": O(n D) per head, exact; "dense");
        ``config.architecture`` attention-only layers or attention + MLP blocks;
        ``config.dtype`` the forward pass's floating-point type (the surrogate and exact
        gradient EM stay float64, so with "float32" the differences report its round-off).

    The tensors pass the algorithms' boundary (:mod:`iclkit.constructions.inputs`: float32 or
    float64, one device, detached) and are computed in float64 on the CPU (the construction's
    weights are float64). A float32 ``pi`` sums to 1 only to float32 round-off: it is checked
    with a tolerance of that size and renormalised in float64.
    """
    if not isinstance(config, ConstructionConfig):
        raise ParameterError(f"config must be a ConstructionConfig, got {type(config).__name__}")
    _require_given(config)
    t = prepare_tensors({"X": X, "y": y, "init": init, "x_query": x_query, "sigma": sigma})
    pi_in = prepare_tensors({"pi": pi})["pi"]  # its own dtype, for the sum-to-1 tolerance
    f64, cpu = torch.float64, torch.device("cpu")
    B, n, d = validate_prompts(cast(Tensor, t["X"]), cast(Tensor, t["y"]))
    X, y = (cast(Tensor, t[k]).to(f64).cpu() for k in ("X", "y"))
    init, x_query = (cast(Tensor, t[k]) for k in ("init", "x_query"))
    check_shape(init, "init", (B, None, d))
    check_finite_tensor(init, "init")
    K = init.shape[1]
    check_shape(x_query, "x_query", (B, d))
    check_finite_tensor(x_query, "x_query")
    check_data_scale(X, y, init=init.to(f64), x_query=x_query.to(f64))
    sig = as_sigma(cast(Sigma, t.get("sigma", sigma)), B, f64, cpu)
    pi64 = _known_pi(pi_in, B, K)
    symmetric = config.symmetric
    if symmetric and K != 2:
        raise ParameterError(f"init must have K = 2 components when symmetric, got {K}")
    init, x_query = init.to(f64).cpu(), x_query.to(f64).cpu()
    sigma, pi = sig, pi64
    beta_tf = torch.empty(B, K, d, dtype=f64)
    y_hat = torch.empty(B, dtype=f64)
    beta_sur = torch.empty(B, K, d, dtype=f64)
    groups: dict[tuple[float, ...], list[int]] = {}
    for b in range(B):
        key = (float(sigma[b]), *(round(float(p), _PI_DIGITS) for p in pi[b]))
        groups.setdefault(key, []).append(b)
    first: GradientEMTransformer | None = None
    norm = 0.0
    for key, idx_list in groups.items():
        idx = torch.tensor(idx_list)
        tf = build_gradient_em_transformer(
            d, K, n, key[0], config.T_outer, config.T_inner, config.alpha, config.relu_terms,
            symmetric=symmetric, pi=key[1:], R_residual=config.R_residual,
            architecture=config.architecture,
        )  # fmt: skip
        first = first or tf
        norm = max(norm, tf.report.weight_norm)
        run_tf = tf if config.dtype == "float64" else tf.astype(_DTYPES[config.dtype])
        bt, yh = run_tf(X[idx], y[idx], init[idx], x_query[idx], attention=config.attention)
        beta_tf[idx], y_hat[idx] = bt.to(f64), yh.to(f64)
        beta_sur[idx] = _final_surrogate(tf, X[idx], y[idx], init[idx])
    assert first is not None
    ref = gradient_em(
        X, y, init, sigma.to(f64), None if symmetric else pi.to(f64),
        T_outer=config.T_outer, T_inner=config.T_inner, alpha=config.alpha, symmetric=symmetric,
    ).betas  # fmt: skip
    if not (bool(torch.isfinite(beta_tf).all()) and bool(torch.isfinite(y_hat).all())):
        raise ParameterError(
            "init: the transformer's estimates overflow float64 on these prompts (init, x_query "
            "or sigma too extreme); rescale the data"
        )
    return ConstructionRun(
        beta_tf=beta_tf,
        y_hat=y_hat,
        beta_surrogate=beta_sur,
        beta_gradient_em=ref,
        report=first.report,
        weight_norm=norm,
        max_abs_diff_vs_surrogate=float((beta_tf - beta_sur).abs().max()),
        max_abs_diff_vs_gradient_em=float((beta_tf - ref).abs().max()),
        constructions=len(groups),
    )


def _require_given(config: ConstructionConfig) -> None:
    """This runner places the initial estimate in the tokens: ``config.init`` must be "given"."""
    if config.init != "given":
        raise ParameterError(
            f"init: this runner takes the initial estimate as input (init='given'), got "
            f"{config.init!r}; use run_in_context_transformer / run_in_context_on_sampled_prompts"
        )


def _known_pi(pi: Tensor | None, B: int, K: int) -> Tensor:
    """The mixing weights (B, K) in float64: uniform when None; else finite, >= 0, summing to
    1 within the round-off of their dtype (renormalised when that is float32)."""
    f64 = torch.float64
    if pi is None:
        return torch.full((B, K), 1.0 / K, dtype=f64)
    check_shape(pi, "pi", (B, K))
    check_finite_tensor(pi, "pi")
    if bool((pi < 0).any()):
        raise ParameterError("pi must be >= 0 for every component")
    atol = max(_PI_SUM_ATOL, 4 * K * torch.finfo(pi.dtype).eps)
    total = pi.to(f64).sum(-1)
    if bool(((total - 1).abs() > atol).any()):
        worst = float(total[(total - 1).abs().argmax()])
        raise ParameterError(f"pi must sum to 1 (within {atol:.3g}) for every prompt, got {worst}")
    pi64 = pi.to(f64).cpu()
    return pi64 if pi.dtype == f64 else pi64 / pi64.sum(-1, keepdim=True)


def run_on_sampled_prompts(
    prompts: PromptsConfig = CONSTRUCT_PROMPTS,
    config: ConstructionConfig = DEFAULT_CONSTRUCTION,
) -> SampledConstructionRun:
    """Sample prompts and their local initialisation, and run the construction on them
    (``config.init`` must be "given")."""
    _require_given(config)
    sample = sample_prompts(prompts)
    b = sample.batch
    run = run_gradient_em_transformer(
        b.X_train, b.y_train, sample.init, b.x_query, b.sigma, b.pi, config
    )
    return SampledConstructionRun(
        run=run,
        prediction_error_vs_oracle=float((run.y_hat - b.y_oracle).abs().mean()),
        parameter_error=float(parameter_error(run.beta_tf, b.betas).mean()),
        sqrt_d_over_n=(b.d / b.n) ** 0.5,
    )


def _final_surrogate(
    tf: GradientEMTransformer, X: torch.Tensor, y: torch.Tensor, init: torch.Tensor
) -> torch.Tensor:
    """The last surrogate iterate (B, K, d) that ``tf`` reproduces (``init`` when T_outer = 0)."""
    if tf.T_outer == 0:
        return torch.stack([init[:, 0], -init[:, 0]], 1) if tf.layout.symmetric else init
    last = surrogate_iterates(tf, X, y, init)[-1][-1]
    return torch.cat([last, -last], 1) if tf.layout.symmetric else last


def surrogate_iterates(
    tf: GradientEMTransformer,
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    *,
    alpha: float | None = None,
) -> list[list[torch.Tensor]]:
    """The surrogate gradient-EM iterates ``[t][s]`` (B, P, d) that ``tf`` is built to reproduce,
    computed directly (``surrogate_em``), with the construction's sigma, pi, T's and ReLU sums;
    ``alpha`` overrides the step size (e.g. the *intended* one, to expose a mis-built ``tf``)."""
    a = tf.alpha if alpha is None else check_positive(alpha, "alpha")
    To, Ti = tf.T_outer, tf.T_inner
    if tf.layout.symmetric:
        assert tf.tanh_sum is not None
        beta0 = init[:, 0] if init.dim() == 3 else init
        it = symmetric_surrogate_iterates(
            X, y, beta0, tf.sigma, tf.tanh_sum, T_outer=To, T_inner=Ti, alpha=a
        )
        return [[b[:, None] for b in row] for row in it]
    return general_surrogate_iterates(
        X, y, init, tf.sigma, tf.pi, estep_functions(tf), T_outer=To, T_inner=Ti, alpha=a
    )


def layerwise_relative_error(
    tf: GradientEMTransformer,
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    x_query: torch.Tensor,
    *,
    alpha: float | None = None,
) -> float:
    """``max_{t,s,b} ||H-state estimate - surrogate iterate|| / ||surrogate iterate||`` over every
    inner step: ~1e-14 for a correct construction (the check's tolerance is 1e-9)."""
    got = tf.block_iterates(X, y, init, x_query)
    ref = surrogate_iterates(tf, X, y, init, alpha=alpha)
    worst = 0.0
    for row_g, row_r in zip(got, ref, strict=True):
        for g, r in zip(row_g, row_r, strict=True):
            num = (g - r).flatten(1).norm(dim=1)
            den = r.flatten(1).norm(dim=1).clamp_min(_TINY_NORM)
            worst = max(worst, float((num / den).max()))
    return worst
