"""The Theorem 3.1 construction with its initial estimate computed in context (arXiv 2410.14183;
this project's design [RECON], ``docs/construction.md``, "Initialising in context").

The tokens carry no estimate: the spectral-initialisation layers of
:mod:`.spectral_init` compute ``beta^(0)`` from the prompt, then the gradient-EM layers of
:func:`~.build.build_gradient_em_transformer` (their heads zero-padded to the wider token) run
from it, then the read-out. ``L = L_init + L_em``.

The **surrogate** it equals to round-off is the same computation outside the transformer:
:func:`iclkit.constructions.spectral_init.spectral_init` with the construction's ReLU sums, then
surrogate gradient EM; the **algorithm** is the spectral initialisation with exact functions
followed by exact gradient EM (:func:`iclkit.constructions.algorithms.gradient_em`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import torch
from torch import Tensor

from iclkit.constructions.algorithms import gradient_em
from iclkit.constructions.attention import (
    AttentionLayer,
    AttentionPath,
    AttentionTransformer,
    Head,
    bai_norm,
)
from iclkit.constructions.em_core import as_sigma
from iclkit.constructions.inputs import Sigma, check_data_scale, prepare_tensors
from iclkit.constructions.layout import embed, read_beta, read_y
from iclkit.constructions.prompts import PromptsConfig, sample_prompts
from iclkit.constructions.relu_approx import ReluSum
from iclkit.constructions.spectral_init import (
    GAP_DOMAIN,
    NEWTON_STEPS,
    SIGN_PI_ATOL,
    SpectralFunctions,
    SpectralInit,
    spectral_functions,
    spectral_init,
    spectral_init_k2,
    spectral_relu_sums,
)
from iclkit.theory.metrics import parameter_error
from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import ParameterError, check_finite_tensor, check_int, check_shape

from .build import build_gradient_em_transformer
from .config import ConstructionConfig
from .heads import BlockEnd, pack
from .model import ConstructionReport, GradientEMTransformer
from .run import CONSTRUCT_PROMPTS, ConstructionRun, _known_pi, surrogate_iterates
from .spectral_init import (
    InitLayout,
    init_layer_count,
    init_layer_formula_text,
    spectral_init_phases,
)
from .spectral_init_k2 import (
    k2_init_layer_count,
    k2_init_layer_formula_text,
    k2_spectral_init_phases,
)

__all__ = [
    "InContextEMTransformer",
    "InContextRun",
    "SampledInContextRun",
    "build_in_context_transformer",
    "run_in_context_on_sampled_prompts",
    "run_in_context_transformer",
]


@dataclass(frozen=True)
class InContextEMTransformer:
    """Spectral-initialisation layers, then the gradient-EM construction ``em``.

    Attributes
    ----------
    em : the gradient-EM construction (its schedule, sums and report; its heads are part of
        ``model`` after the first ``init_layers`` layers).
    model : the whole attention model on tokens of width ``layout.D``.
    layout : the extended token layout.
    report : L, heads per layer, formula ``L_init + L_em``, weight norm, block ends.
    init_layers : L_init.
    T_power : power iterations; sums : the ReLU sums of the initialisation.
    """

    em: GradientEMTransformer
    model: AttentionTransformer
    layout: InitLayout
    report: ConstructionReport
    init_layers: int
    T_power: int
    sums: dict[str, ReluSum]

    def embed(self, X: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
        """Tokens (B, n + 1, D): the gradient-EM embedding with zero estimates, the new slots 0."""
        B, _, d = X.shape
        zero = torch.zeros(B, self.layout.base.P, d, dtype=X.dtype)
        H = embed(self.layout.base, X, y, zero, x_query)
        pad = torch.zeros(*H.shape[:2], self.layout.D - H.shape[2], dtype=H.dtype)
        return torch.cat([H, pad], -1)

    def __call__(
        self, X: Tensor, y: Tensor, x_query: Tensor, *, attention: AttentionPath = "auto"
    ) -> tuple[Tensor, Tensor]:
        """Run on prompts; ``(beta_tf (B, K, d), y_hat (B,))``."""
        H = self.model(self.embed(X, y, x_query), path=attention)
        return read_beta(self.layout.base, H), read_y(self.layout.base, H)

    def initial_estimate(
        self, X: Tensor, y: Tensor, x_query: Tensor, *, attention: AttentionPath = "auto"
    ) -> Tensor:
        """The query token's estimates (B, P, d) after the ``init_layers`` layers."""
        rows = self.model.token_states(
            self.embed(X, y, x_query), [self.init_layers], path=attention
        )
        h = rows[self.init_layers]
        base = self.layout.base
        return torch.stack([h[:, base.beta(k)] for k in range(base.P)], 1)


def _pad(head: Head, D: int) -> Head:
    """The head on tokens of width ``D >=`` its own (zero rows / columns: same output)."""
    r, D0 = head.Q.shape
    Q = torch.zeros(r, D, dtype=head.Q.dtype)
    K = torch.zeros(r, D, dtype=head.K.dtype)
    V = torch.zeros(D, D, dtype=head.V.dtype)
    Q[:, :D0], K[:, :D0], V[:D0, :D0] = head.Q, head.K, head.V
    return Head(Q, K, V, head.label)


def build_in_context_transformer(
    d: int,
    K: int,
    n: int,
    sigma: float,
    config: ConstructionConfig,
    *,
    pi: tuple[float, ...] | None = None,
) -> InContextEMTransformer:
    """Build spectral-initialisation layers + the gradient-EM construction of ``config``
    (``config.symmetric`` selects the tied two-component one; ``1 <= P <= d`` vectors with
    ``P = 1`` symmetric, ``P = K`` else; general K = 2 uses the start with the first-moment
    correction of :mod:`.spectral_init_k2`). The in-context construction is built from
    attention-only layers in float64; other ``architecture`` / ``dtype`` values are refused."""
    if config.architecture != "attention-only":
        raise ParameterError(
            f"architecture: the in-context initialisation is built for 'attention-only', "
            f"got {config.architecture!r} (use init='given' for the attention-mlp form)"
        )
    if config.dtype != "float64":
        raise ParameterError(
            f"dtype: the in-context initialisation runs in float64, got {config.dtype!r}"
        )
    em = build_gradient_em_transformer(
        d, K, n, sigma, config.T_outer, config.T_inner, config.alpha, config.relu_terms,
        symmetric=config.symmetric, pi=pi, R_residual=config.R_residual,
    )  # fmt: skip
    k2 = em.layout.P == 2 and not em.layout.symmetric
    sign = k2 and abs(em.pi[0] - em.pi[1]) > SIGN_PI_ATOL
    lay = InitLayout(em.layout, 1, k2=True, sign=sign) if k2 else InitLayout(em.layout, em.layout.P)
    if lay.P > d:
        raise ParameterError(
            f"K must be <= d for the spectral initialisation, got K = {K}, d = {d}"
        )
    sums = spectral_relu_sums()
    T_power = check_int(config.power_iterations, "power_iterations", minimum=0)
    if k2:
        pi2 = (em.pi[0], em.pi[1])
        phases = k2_spectral_init_phases(lay, em.sigma, pi2, sums, T_power, NEWTON_STEPS)
        expected = k2_init_layer_count(T_power, sums, NEWTON_STEPS, sign=sign)
        formula = k2_init_layer_formula_text()
    else:
        phases = spectral_init_phases(lay, em.sigma, sums, T_power, NEWTON_STEPS)
        expected = init_layer_count(lay.P, T_power, sums, NEWTON_STEPS)
        formula = init_layer_formula_text()
    init_layers, init_ends = pack(phases)
    if len(init_layers) != expected:  # internal consistency of the documented formula
        raise RuntimeError(
            f"init layer formula gives {expected}, construction has {len(init_layers)}"
        )
    em_layers = [
        AttentionLayer(tuple(_pad(h, lay.D) for h in layer.heads))
        for layer in em.model.attention_layers
    ]
    model = AttentionTransformer(init_layers + em_layers, t_slot=lay.base.t)
    L0 = len(init_layers)
    ends: list[BlockEnd] = [("init", 0, 0, init_ends[-1][3])]
    ends += [(kind, t, s, layer + L0) for kind, t, s, layer in em.report.block_ends]
    hpl = tuple(model.heads_per_layer())
    report = ConstructionReport(
        L=model.L,
        heads_per_layer=hpl,
        max_heads_per_layer=max(hpl),
        layer_formula=f"L = L_init + L_em; {formula}; L_em: {em.report.layer_formula}",
        weight_norm=bai_norm(model),
        D=lay.D,
        certificates={
            **em.report.certificates,
            **{f"init_{k}": s.certificate for k, s in sums.items()},
        },
        block_ends=tuple(ends),
    )
    return InContextEMTransformer(em, model, lay, report, L0, T_power, sums)


@dataclass(frozen=True)
class InContextRun:
    """:func:`run_in_context_transformer` on B prompts.

    Attributes
    ----------
    run : ConstructionRun, its ``beta_gradient_em`` being the **algorithm** (exact spectral
        initialisation + exact gradient EM) and ``max_abs_diff_vs_gradient_em`` against it.
    init_tf, init_surrogate, init_algorithm : (B, P, d) the initial estimates.
    max_abs_diff_init_vs_surrogate : float
    q_range : (smallest, largest) squared norm normalised in the surrogate (the domain check).
    """

    run: ConstructionRun
    init_tf: Tensor
    init_surrogate: Tensor
    init_algorithm: Tensor
    max_abs_diff_init_vs_surrogate: float
    q_range: tuple[float, float]


def run_in_context_transformer(
    X: Tensor,
    y: Tensor,
    x_query: Tensor,
    sigma: Tensor | float,
    pi: Tensor | None,
    config: ConstructionConfig,
    *,
    K: int,
) -> InContextRun:
    """Build (one per distinct ``(sigma, pi)``) and run the in-context-init construction next to
    its surrogate and the algorithm. X : (B, n, d), y : (B, n), x_query : (B, d), sigma : (B,)
    or float, pi : (B, K) or None (uniform); ``config.init`` must be "in-context"."""
    if not isinstance(config, ConstructionConfig):
        raise ParameterError(f"config must be a ConstructionConfig, got {type(config).__name__}")
    if config.init != "in-context":
        raise ParameterError(f"init: this runner needs init='in-context', got {config.init!r}")
    K = check_int(K, "K", minimum=1)
    t = prepare_tensors({"X": X, "y": y, "x_query": x_query, "sigma": sigma})
    pi_in = prepare_tensors({"pi": pi})["pi"]  # its own dtype, for the sum-to-1 tolerance
    B, n, d = validate_prompts(cast(Tensor, t["X"]), cast(Tensor, t["y"]))
    f64 = torch.float64
    X, y = (cast(Tensor, t[k]).to(f64).cpu() for k in ("X", "y"))
    xq = cast(Tensor, t["x_query"])
    check_shape(xq, "x_query", (B, d))
    check_finite_tensor(xq, "x_query")
    xq = xq.to(f64).cpu()
    check_data_scale(X, y, x_query=xq)
    sig = as_sigma(cast(Sigma, t.get("sigma", sigma)), B, f64, torch.device("cpu"))
    pi64 = _known_pi(pi_in, B, K)
    if config.symmetric and K != 2:
        raise ParameterError(f"K must be 2 when symmetric, got {K}")
    P = 1 if config.symmetric else K
    out = {k: torch.empty(B, K, d, dtype=f64) for k in ("tf", "sur")}
    inits = {k: torch.empty(B, P, d, dtype=f64) for k in ("tf", "sur")}
    y_hat = torch.empty(B, dtype=f64)
    groups: dict[tuple[float, ...], list[int]] = {}
    for b in range(B):
        groups.setdefault((float(sig[b]), *(round(float(p), 15) for p in pi64[b])), []).append(b)
    first: InContextEMTransformer | None = None
    norm, q_lo, q_hi = 0.0, float("inf"), 0.0
    for key, members in groups.items():
        idx = torch.tensor(members)
        tf = build_in_context_transformer(d, K, n, key[0], config, pi=key[1:])
        first = first or tf
        norm = max(norm, tf.report.weight_norm)
        Xb, yb, qb = X[idx], y[idx], xq[idx]
        out["tf"][idx], y_hat[idx] = tf(Xb, yb, qb, attention=config.attention)
        inits["tf"][idx] = tf.initial_estimate(Xb, yb, qb, attention=config.attention)
        fns = spectral_functions(tf.sums)
        if tf.layout.k2:
            sur = spectral_init_k2(Xb, yb, key[0], key[1:], fns, T_power=tf.T_power)
            _check_gap(sur)
        else:
            sur = spectral_init(Xb, yb, key[0], P, fns, T_power=tf.T_power)
        q_lo, q_hi = min(q_lo, float(sur.q_min.min())), max(q_hi, float(sur.q_max.max()))
        inits["sur"][idx] = sur.init
        out["sur"][idx] = _surrogate_final(tf.em, Xb, yb, sur.init)
    assert first is not None
    k2 = first.layout.k2
    alg_init = _algorithm_init(X, y, sig, pi64 if k2 else None, P, config.power_iterations)
    alg = _algorithm(X, y, alg_init.init, sig, pi64, config)
    if not (bool(torch.isfinite(out["tf"]).all()) and bool(torch.isfinite(y_hat).all())):
        raise ParameterError("X, y: the transformer's estimates overflow float64; rescale the data")
    run = ConstructionRun(
        beta_tf=out["tf"],
        y_hat=y_hat,
        beta_surrogate=out["sur"],
        beta_gradient_em=alg,
        report=first.report,
        weight_norm=norm,
        max_abs_diff_vs_surrogate=float((out["tf"] - out["sur"]).abs().max()),
        max_abs_diff_vs_gradient_em=float((out["tf"] - alg).abs().max()),
        constructions=len(groups),
    )
    return InContextRun(
        run=run,
        init_tf=inits["tf"],
        init_surrogate=inits["sur"],
        init_algorithm=alg_init.init,
        max_abs_diff_init_vs_surrogate=float((inits["tf"] - inits["sur"]).abs().max()),
        q_range=(q_lo, q_hi),
    )


def _surrogate_final(em: GradientEMTransformer, X: Tensor, y: Tensor, init: Tensor) -> Tensor:
    """The surrogate gradient-EM estimate (B, K, d) from ``init`` (B, P, d)."""
    if em.T_outer == 0:
        last = init
    else:
        last = surrogate_iterates(em, X, y, init)[-1][-1]
    return torch.cat([last, -last], 1) if em.layout.symmetric else last


def _check_gap(sur: SpectralInit) -> None:
    """Refuse a squared gap estimate above the GAP sum's domain, where its Newton steps leave
    their basin (a silent wrong start otherwise)."""
    hi = GAP_DOMAIN[0] * GAP_DOMAIN[1] ** (GAP_DOMAIN[2] - 2)
    assert sur.gap is not None
    big = float(sur.gap.max())
    if big > hi:
        raise ParameterError(
            f"y: the estimate of ||beta_1 - beta_2||^2 is {big:.3g}, above the in-context "
            f"initialisation's domain {hi:.3g}; rescale the data (and sigma)"
        )


def _algorithm_init(
    X: Tensor, y: Tensor, sigma: Tensor, pi: Tensor | None, P: int, T_power: int
) -> SpectralInit:
    """The exact spectral initialisation (same steps, exact scalar functions); with ``pi``
    (B, 2) the general K = 2 start with the first-moment correction."""
    if pi is not None:
        return spectral_init_k2(X, y, sigma, pi, SpectralFunctions.exact(), T_power=T_power)
    return spectral_init(X, y, sigma, P, SpectralFunctions.exact(), T_power=T_power)


def _algorithm(
    X: Tensor, y: Tensor, init: Tensor, sigma: Tensor, pi: Tensor, config: ConstructionConfig
) -> Tensor:
    """Exact gradient EM from ``init`` with the construction's schedule, (B, K, d)."""
    sym = config.symmetric
    start = torch.cat([init, -init], 1) if sym else init
    return gradient_em(
        X, y, start, sigma, None if sym else pi, T_outer=config.T_outer,
        T_inner=config.T_inner, alpha=config.alpha, symmetric=sym,
    ).betas  # fmt: skip


@dataclass(frozen=True)
class SampledInContextRun:
    """:func:`run_in_context_on_sampled_prompts`: the run and its errors against the truth.

    Attributes
    ----------
    result : InContextRun
    prediction_error_vs_oracle : mean over prompts of ``|y_hat - y_orc|`` (transformer).
    algorithm_prediction_error_vs_oracle : the same for the algorithm (exact spectral init +
        exact gradient EM), predicting ``<x_query, sum_k pi_k beta_k>``.
    parameter_error, algorithm_parameter_error : mean parameter error up to permutation.
    sqrt_d_over_n : the statistical rate ``sqrt(d / n)``.
    """

    result: InContextRun
    prediction_error_vs_oracle: float
    algorithm_prediction_error_vs_oracle: float
    parameter_error: float
    algorithm_parameter_error: float
    sqrt_d_over_n: float


def run_in_context_on_sampled_prompts(
    prompts: PromptsConfig = CONSTRUCT_PROMPTS,
    config: ConstructionConfig | None = None,
) -> SampledInContextRun:
    """Sample prompts (their local initialisation is not used) and run the in-context-init
    construction on them (``config`` default: the library defaults with ``init="in-context"``,
    symmetric when the prompts are)."""
    if prompts.mor.Lambda is not None:
        raise ParameterError(
            "Lambda: the in-context (spectral) initialisation assumes x ~ N(0, I_d); "
            "covariates with another covariance are not supported (whiten them first)"
        )
    if config is None:
        config = ConstructionConfig(init="in-context", symmetric=prompts.mor.symmetric)
    b = sample_prompts(replace(prompts, rho=0.0)).batch
    res = run_in_context_transformer(b.X_train, b.y_train, b.x_query, b.sigma, b.pi, config, K=b.K)
    alg = res.run.beta_gradient_em
    y_alg = torch.einsum("bd,bkd,bk->b", b.x_query, alg, b.pi)
    return SampledInContextRun(
        result=res,
        prediction_error_vs_oracle=float((res.run.y_hat - b.y_oracle).abs().mean()),
        algorithm_prediction_error_vs_oracle=float((y_alg - b.y_oracle).abs().mean()),
        parameter_error=float(parameter_error(res.run.beta_tf, b.betas).mean()),
        algorithm_parameter_error=float(parameter_error(alg, b.betas).mean()),
        sqrt_d_over_n=(b.d / b.n) ** 0.5,
    )
