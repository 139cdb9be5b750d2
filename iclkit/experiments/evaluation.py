"""Excess test risk per prompt length for a trained transformer and the baselines (MoR Figures 1-4).

"Excess testing risk" is the paper's y-axis; its exact definition is [NOT FOUND] (``docs/provenance.md`` §9). This project reports (``docs/provenance.md`` §2; ``docs/provenance.md`` §3 [RECON]):

    excess risk(m) = E(y_hat_m - y_m)^2 - E(y_orc_m - y_m)^2 = E(y_hat_m - y_orc_m)^2,

the second form (:func:`iclkit.theory.metrics.excess_risk_vs_oracle`) being the low-variance
estimator used for the figures; the direct difference is stored beside it. The
``bayes_optimal`` baseline is the posterior mean given the prompt alone
(:mod:`iclkit.constructions.bayes_optimal`): the floor of an in-context learner that knows the
prior, sigma and pi (exactly so when sigma is fixed; see that module for the SNR case).

The Bayes floor (``EvalConfig.bayes_prompts``): with ``snr`` the data set
``sigma = R_min / eta`` per prompt from its components, so sigma carries information about them
that the conjugate posterior ignores; on those prompts ``bayes_optimal`` is an approximation,
not a floor. The floor is evaluated where it is exact: on ``bayes_prompts`` extra prompts
(stream ``(seed, "eval-bayes")``) drawn with the same prior, K, pi, d and n but a *fixed* sigma
equal to the median per-prompt sigma of the held-out SNR prompts (the SNR's typical sigma).
Two rows come from them: ``bayes_optimal_fixed_sigma`` (posterior mean given the prompt, sigma
and pi: enumeration while ``K^m K <= 2^15``, collapsed Gibbs above) and
``transformer_fixed_sigma`` (the same trained transformer on the same prompts), so both are
measured on one distribution, on which no predictor is below the first. A Gibbs estimate
``y_B + e`` inflates ``E(y_hat - y_orc)^2`` by ``E e^2``; the stored excess risk subtracts, per
prompt, the unbiased estimate ``se^2 = var(chain means) / chains`` of it, and its standard error
is over prompts of the corrected terms (the chains' own bias, if not mixed, is not corrected).

Every method is evaluated on the same held-out prompts (stream ``(seed, "eval")``) through the
shared predictor signature ``predictor(batch, positions) -> (B, P)``, in float64: the
transformer is cast to float64 for evaluation. Standard errors are Monte Carlo over prompts.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from iclkit.constructions.bayes_optimal import BayesOptimalPredictor
from iclkit.constructions.predictors import (
    LOCAL_INIT_RHO,
    EMPredictor,
    GradientEMPredictor,
    OLSPredictor,
    OraclePredictor,
    Predictor,
    ZeroPredictor,
    resolve_positions,
)
from iclkit.theory.metrics import (
    RiskEstimate,
    excess_risk,
    excess_risk_vs_oracle,
    prediction_mse,
)
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import (
    ParameterError,
    check_int,
    check_int_fields,
    check_positive,
    check_real,
    check_seed,
)

from .models import ICLTransformer

__all__ = [
    "BASELINES",
    "BAYES_FLOOR",
    "TRANSFORMER_FIXED_SIGMA",
    "EvalConfig",
    "EvalResult",
    "TransformerPredictor",
    "evaluate",
]

BASELINES: tuple[str, ...] = (
    "em",
    "em_spectral",
    "em_local",
    "gradient_em",
    "ols",
    "bayes_optimal",
    "zero",
)

#: Method names of the rows measured on the fixed-sigma prompts of ``EvalConfig.bayes_prompts``.
BAYES_FLOOR = "bayes_optimal_fixed_sigma"
TRANSFORMER_FIXED_SIGMA = "transformer_fixed_sigma"

#: The Bayes floor enumerates exactly while K^m * K (component posteriors per prompt) is at most
#: this (K = 2: m <= 14, K = 3: m <= 8, K = 5: m <= 5, K = 20: m <= 2), and runs Gibbs above.
BAYES_ENUMERATION_BUDGET = 2**15

#: Characters of an exception message kept in a failure entry (one line of a report).
_FAILURE_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class TransformerPredictor:
    """A trained :class:`ICLTransformer` behind the shared predictor signature.

    Predictions are made in ``dtype`` (default float64) on a copy of the model, in chunks of
    ``chunk`` prompts.
    """

    model: ICLTransformer
    dtype: torch.dtype = torch.float64
    chunk: int = 256
    name: str = "transformer"

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pos = resolve_positions(batch, positions)
        n_max = self.model.config.max_n
        if batch.n > n_max:
            raise ParameterError(f"n must be <= the model's max_n = {n_max}, got n={batch.n}")
        if batch.d != self.model.config.d:
            raise ParameterError(
                f"d must equal the model's d = {self.model.config.d}, got {batch.d}"
            )
        model = copy.deepcopy(self.model).to(device="cpu", dtype=self.dtype).eval()
        out = []
        with torch.no_grad():
            for i in range(0, batch.B, self.chunk):
                X = batch.X[i : i + self.chunk].to(self.dtype)
                y = batch.y[i : i + self.chunk].to(self.dtype)
                out.append(model(X, y)[:, pos])
        return torch.cat(out, 0).to(batch.X.dtype)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation settings.

    Parameters
    ----------
    prompts : int
        Number of held-out prompts (Monte Carlo sample size).
    positions : tuple of int or None
        Prompt lengths m to evaluate (1 <= m <= n); ``None`` means only the full prompt, n.
    methods : tuple of str
        Baselines from :data:`BASELINES` to evaluate beside the transformer:
        ``em`` (EM from a random N(0, I) init: the practical algorithm, which does not know the
        truth), ``em_spectral`` (EM from the spectral moment start of
        :func:`~iclkit.constructions.predictors.initial_estimate`: what a statistician would
        run), ``em_local`` (EM from the truth plus a relative perturbation ``rho``: the local
        regime of the theory), ``gradient_em`` (from the local init), ``ols``, ``bayes_optimal``
        (the posterior mean given the prompt: enumeration over assignments for small prompts,
        collapsed Gibbs above; Gaussian prior and fixed pi only), ``zero``.
    em_T : int
        EM iterations; gradient EM uses ``em_T`` outer iterations of one step of size ``alpha``.
    alpha : float
    rho : float
        Relative perturbation of the local init.
    bayes_prompts : int or None
        Prompts of the fixed-sigma Bayes floor (module docstring); None: not evaluated.
    bayes_sweeps : int
        Gibbs sweeps per chain of the floor (a quarter of them burn-in).
    bayes_chains : int
        Independent Gibbs chains (>= 2: their spread gives the Monte Carlo error).
    """

    prompts: int = 512
    positions: tuple[int, ...] | None = None
    methods: tuple[str, ...] = ("em", "em_local", "gradient_em", "ols")
    em_T: int = 20
    alpha: float = 1.0
    rho: float = LOCAL_INIT_RHO
    bayes_prompts: int | None = None
    bayes_sweeps: int = 200
    bayes_chains: int = 8

    def __post_init__(self) -> None:
        check_int_fields(self, {"prompts": 2, "em_T": 0, "bayes_sweeps": 4, "bayes_chains": 2})
        if self.bayes_prompts is not None:
            object.__setattr__(
                self, "bayes_prompts", check_int(self.bayes_prompts, "bayes_prompts", minimum=2)
            )
        check_positive(self.alpha, "alpha")
        check_real(self.rho, "rho", minimum=0.0)
        if isinstance(self.methods, str) or not isinstance(self.methods, (tuple, list)):
            raise ParameterError(f"methods must be a tuple of names, got {self.methods!r}")
        unknown = [m for m in self.methods if m not in BASELINES]
        if unknown:
            raise ParameterError(f"methods: unknown baseline(s) {unknown}; choose from {BASELINES}")
        if self.positions is not None:
            if not self.positions:
                raise ParameterError("positions must not be empty (or None for the full prompt)")
            if isinstance(self.positions, str) or not isinstance(self.positions, (tuple, list)):
                raise ParameterError(f"positions must be a tuple of ints, got {self.positions!r}")
            positions = tuple(check_int(m, "positions", minimum=1) for m in self.positions)
            object.__setattr__(self, "positions", positions)


@dataclass(frozen=True)
class EvalResult:
    """Rows ``(method, position, excess_risk, excess_risk_se, ...)`` and timing stats."""

    rows: tuple[dict[str, Any], ...]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))

    def risk(self, method: str, position: int) -> float:
        """Excess risk of ``method`` at prompt length ``position``."""
        for r in self.rows:
            if r["method"] == method and r["position"] == position:
                return float(r["excess_risk"])
        raise ParameterError(f"method/position: no row for ({method!r}, {position})")


def _baseline(name: str, config: EvalConfig, seed: int, data: MoRConfig) -> Predictor:
    if name == "em":
        return EMPredictor(T=config.em_T, init="random", seed=seed, name="em")
    if name == "em_spectral":
        return EMPredictor(T=config.em_T, init="spectral", seed=seed, name="em_spectral")
    if name == "em_local":
        return EMPredictor(T=config.em_T, init="local", rho=config.rho, seed=seed, name="em_local")
    if name == "gradient_em":
        return GradientEMPredictor(
            T_outer=config.em_T, T_inner=1, alpha=config.alpha, rho=config.rho, seed=seed
        )
    if name == "ols":
        return OLSPredictor()
    if name == "bayes_optimal":
        return BayesOptimalPredictor.for_data(data, seed=seed)
    return ZeroPredictor()


def evaluate(
    model: ICLTransformer | None,
    data: MoRConfig,
    config: EvalConfig,
    *,
    seed: int,
) -> EvalResult:
    """Excess risk vs the oracle per prompt length, transformer and baselines on the same prompts.

    Parameters
    ----------
    model : trained transformer, or None to evaluate only the baselines.
    data : the prompt distribution (n = the longest prompt).
    config : EvalConfig
    seed : seeds the held-out prompts (stream ``(seed, "eval")``) and the EM inits.

    Returns
    -------
    EvalResult whose rows hold, per method and position m: ``excess_risk`` (E(y_hat - y_orc)^2)
    and its ``excess_risk_se``, ``excess_risk_direct`` (E(y_hat - y)^2 - E(y_orc - y)^2) and its
    se, ``mse`` and ``oracle_mse``, ``prompts``.
    """
    if model is not None and not isinstance(model, ICLTransformer):
        raise ParameterError(f"model must be an ICLTransformer or None, got {type(model).__name__}")
    if not isinstance(data, MoRConfig):
        raise ParameterError(f"data must be a MoRConfig, got {data!r}")
    if not isinstance(config, EvalConfig):
        raise ParameterError(f"config must be an EvalConfig, got {config!r}")
    seed = check_seed(seed, "seed")
    positions = list(config.positions) if config.positions is not None else [data.n]
    for m in positions:
        if m > data.n:
            raise ParameterError(f"positions must be <= n = {data.n}, got {m}")
    batch = sample_mor(data, config.prompts, seed=derive_seed(seed, "eval"), dtype=torch.float64)
    oracle = OraclePredictor()(batch, positions)  # (B, P)
    target = batch.y[:, positions]
    predictors: list[Predictor] = []
    if model is not None:
        predictors.append(TransformerPredictor(model))
    init_seed = derive_seed(seed, "eval-init")
    predictors += [_baseline(m, config, init_seed, data) for m in config.methods]
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    failures: dict[str, str] = {}
    if config.bayes_prompts is not None:
        # fails early (ParameterError naming prior / pi_mode) when the floor has no closed form
        BayesOptimalPredictor.for_data(data)
    for pred in predictors:
        t0 = time.perf_counter()
        y_hat, failed = _predict(pred, batch, positions)
        seconds[pred.name] = time.perf_counter() - t0
        for j, m in enumerate(positions):
            if m in failed:
                rows.append(_failed_row(pred.name, m, config.prompts))
                failures[f"{pred.name}@{m}"] = failed[m]
                continue
            er = excess_risk_vs_oracle(y_hat[:, j], oracle[:, j])
            rows.append(_row(pred.name, m, y_hat[:, j], oracle[:, j], target[:, j], er))
    stats: dict[str, Any] = {"seconds": seconds, "failures": failures}
    if config.bayes_prompts is not None:
        sigma = float(batch.sigma.median())
        rows += _bayes_floor(
            model, data, config, config.bayes_prompts, seed, positions, sigma, seconds
        )
        stats["bayes_sigma"] = sigma
    return EvalResult(rows=tuple(rows), stats=stats)


def _bayes_floor(
    model: ICLTransformer | None,
    data: MoRConfig,
    config: EvalConfig,
    prompts: int,
    seed: int,
    positions: list[int],
    sigma: float,
    seconds: dict[str, float],
) -> list[dict[str, Any]]:
    """Rows of the Bayes floor and of the transformer on ``prompts`` prompts drawn like ``data``
    but with the fixed noise level ``sigma`` (module docstring)."""
    fixed = dataclasses.replace(data, snr=None, sigma=sigma)
    batch = sample_mor(fixed, prompts, seed=derive_seed(seed, "eval-bayes"), dtype=torch.float64)
    oracle = OraclePredictor()(batch, positions)
    target = batch.y[:, positions]
    bayes = BayesOptimalPredictor.for_data(
        fixed,
        max_assignments=max(1, BAYES_ENUMERATION_BUDGET // data.K),
        sweeps=config.bayes_sweeps,
        burn_in=config.bayes_sweeps // 4,
        chains=config.bayes_chains,
        seed=derive_seed(seed, "eval-bayes-gibbs"),
    )
    t0 = time.perf_counter()
    y_b, mc_se = bayes.with_error(batch, positions)
    seconds[BAYES_FLOOR] = time.perf_counter() - t0
    out = []
    for j, m in enumerate(positions):
        # E(y_hat - y_orc)^2 - E e^2, per prompt: unbiased for the exact posterior mean's
        corrected = _mean_se((y_b[:, j] - oracle[:, j]) ** 2 - mc_se[:, j] ** 2)
        out.append(_row(BAYES_FLOOR, m, y_b[:, j], oracle[:, j], target[:, j], corrected))
    if model is not None:
        t0 = time.perf_counter()
        y_t = TransformerPredictor(model)(batch, positions)
        seconds[TRANSFORMER_FIXED_SIGMA] = time.perf_counter() - t0
        for j, m in enumerate(positions):
            er = excess_risk_vs_oracle(y_t[:, j], oracle[:, j])
            out.append(_row(TRANSFORMER_FIXED_SIGMA, m, y_t[:, j], oracle[:, j], target[:, j], er))
    return out


def _mean_se(values: torch.Tensor) -> RiskEstimate:
    count = int(values.numel())
    return RiskEstimate(float(values.mean()), float(values.std(unbiased=True)) / count**0.5, count)


def _row(
    method: str,
    m: int,
    y_hat: torch.Tensor,
    oracle: torch.Tensor,
    target: torch.Tensor,
    er: RiskEstimate,
) -> dict[str, Any]:
    """One result row at position m; ``er`` is the excess-risk estimate to store."""
    direct = excess_risk(y_hat, oracle, target)
    mse = prediction_mse(y_hat, target)
    return {
        "method": method,
        "position": int(m),
        "excess_risk": er.mean,
        "excess_risk_se": er.se,
        "excess_risk_direct": direct.mean,
        "excess_risk_direct_se": direct.se,
        "mse": mse.mean,
        "mse_se": mse.se,
        "oracle_mse": prediction_mse(oracle, target).mean,
        "prompts": er.count,
    }


def _predict(
    pred: Predictor, batch: MoRBatch, positions: list[int]
) -> tuple[torch.Tensor, dict[int, str]]:
    """Predictions (B, P); a baseline that breaks down at a position (EM with 1 example and
    a singular weighted covariance, say) gives NaN there and an entry in the failure dict."""
    try:
        return pred(batch, positions), {}
    except (RuntimeError, ParameterError):
        if isinstance(pred, TransformerPredictor):
            raise
    out = torch.full((batch.B, len(positions)), float("nan"), dtype=batch.X.dtype)
    failed: dict[int, str] = {}
    for j, m in enumerate(positions):
        try:
            out[:, j] = pred(batch, [m])[:, 0]
        except (RuntimeError, ParameterError) as exc:
            failed[m] = f"{type(exc).__name__}: {str(exc)[:_FAILURE_MESSAGE_CHARS]}"
    return out, failed


def _failed_row(method: str, m: int, prompts: int) -> dict[str, Any]:
    nan = float("nan")
    return {
        "method": method,
        "position": int(m),
        "excess_risk": nan,
        "excess_risk_se": nan,
        "excess_risk_direct": nan,
        "excess_risk_direct_se": nan,
        "mse": nan,
        "mse_se": nan,
        "oracle_mse": nan,
        "prompts": prompts,
    }
