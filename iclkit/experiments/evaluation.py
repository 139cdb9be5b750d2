"""Excess test risk per prompt length for a trained transformer and the baselines (MoR Figures 1-4).

"Excess testing risk" is the paper's y-axis; its exact definition is [NOT FOUND] (``docs/provenance.md`` §9). This project reports (``docs/provenance.md`` §2; ``docs/provenance.md`` §3 [RECON]):

    excess risk(m) = E(y_hat_m - y_m)^2 - E(y_orc_m - y_m)^2 = E(y_hat_m - y_orc_m)^2,

the second form (:func:`iclkit.theory.metrics.excess_risk_vs_oracle`) being the low-variance
estimator used for the figures; the direct difference is stored beside it. The
``bayes_optimal`` baseline is the posterior mean given the prompt alone
(:mod:`iclkit.constructions.bayes_optimal`): the floor of an in-context learner that knows the
prior, sigma and pi (exactly so when sigma is fixed; see that module for the SNR case).

The Bayes floor (``EvalConfig.bayes_prompts``): the posterior mean of the query's label under
the data model itself, sigma = R_min / eta coupled to the components and not given
(:mod:`iclkit.constructions.bayes_snr`, Metropolis-within-Gibbs), on the first
``bayes_prompts`` held-out prompts, each truncated to every evaluated length m (the prompts are
nested in m). No predictor of the prompt is below it in expectation. Rows (method names):

The sampler runs twice, with chains started at the prompt's true components (``truth``) and
from prior draws (``prior``): a computational start only, the target is the same posterior, but
chains that stay in their starting mode are biased (toward the oracle from the truth, upward
from the prior when stuck in poor modes: measured at K = 2, SNR 10, n = 20). Their paired
difference is stored; where it is within its SE the floor is resolved.

- ``bayes_floor``: ``E(y_B - y_orc)^2`` per m, chains from the truth. A sampled estimate ``y_B + e`` inflates it by
  ``E e^2``; per prompt the unbiased estimate ``se^2 = var(chain means) / chains`` of that is
  subtracted, and the standard error is over prompts of the corrected terms (a common bias of
  unmixed chains is not corrected). ``bayes_floor_mc`` holds the mean subtracted ``se^2`` (the
  size of the Monte Carlo error; its ``excess_risk_se`` is that mean's SE over prompts).
- ``bayes_floor_prior_start`` and ``bayes_floor_prior_start_mc``: the same from prior starts;
  ``bayes_floor_start_gap``: per m, prior-start minus truth-start per prompt, paired SE.
- ``bayes_floor_fall``: per m, the paired difference floor(m_1) - floor(m) on the same prompts
  (m_1 the shortest evaluated length), with the standard error of the per-prompt difference.
- ``transformer_minus_floor``: per m, the transformer's ``(y_T - y_orc)^2`` minus the floor's
  corrected term on the same prompts, mean and paired standard error.

For those three rows ``excess_risk`` / ``excess_risk_se`` hold the difference (or the Monte
Carlo variance) and its SE; the other value columns are NaN.

Every method is evaluated on the same held-out prompts (stream ``(seed, "eval")``) through the
shared predictor signature ``predictor(batch, positions) -> (B, P)``, in float64: the
transformer is cast to float64 for evaluation. Standard errors are Monte Carlo over prompts.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from iclkit.constructions.bayes_optimal import BayesOptimalPredictor
from iclkit.constructions.bayes_snr import BayesSNRPredictor
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
    "BAYES_FLOOR_FALL",
    "BAYES_FLOOR_MC",
    "BAYES_FLOOR_PRIOR_START",
    "BAYES_START_GAP",
    "TRANSFORMER_MINUS_FLOOR",
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

#: Method names of the Bayes-floor rows (module docstring).
BAYES_FLOOR = "bayes_floor"
BAYES_FLOOR_MC = "bayes_floor_mc"
BAYES_FLOOR_FALL = "bayes_floor_fall"
BAYES_FLOOR_PRIOR_START = "bayes_floor_prior_start"
BAYES_START_GAP = "bayes_floor_start_gap"
TRANSFORMER_MINUS_FLOOR = "transformer_minus_floor"

#: Fewest sampler sweeps per chain, whatever ``bayes_updates // K`` gives.
BAYES_MIN_SWEEPS = 8

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
        (the conjugate posterior mean given the prompt *and* each prompt's sigma: enumeration
        over assignments for small prompts, collapsed Gibbs above; Gaussian prior and fixed pi
        only; exact for a fixed sigma, an approximation with an SNR), ``zero``.
    em_T : int
        EM iterations; gradient EM uses ``em_T`` outer iterations of one step of size ``alpha``.
    alpha : float
    rho : float
        Relative perturbation of the local init.
    bayes_prompts : int or None
        Held-out prompts (the first ones) on which the Bayes floor of the SNR model is
        computed (module docstring); None: not evaluated. Needs ``snr``, a Gaussian prior and a
        fixed pi.
    bayes_updates : int
        Component updates per chain of the floor's sampler: ``max(BAYES_MIN_SWEEPS,
        bayes_updates // K)`` sweeps (each moves every one of the K components), a quarter
        of them burn-in.
    bayes_chains : int
        Independent chains (>= 2: their spread gives the Monte Carlo error).
    """

    prompts: int = 512
    positions: tuple[int, ...] | None = None
    methods: tuple[str, ...] = ("em", "em_local", "gradient_em", "ols")
    em_T: int = 20
    alpha: float = 1.0
    rho: float = LOCAL_INIT_RHO
    bayes_prompts: int | None = None
    bayes_updates: int = 800
    bayes_chains: int = 4

    def __post_init__(self) -> None:
        check_int_fields(self, {"prompts": 2, "em_T": 0, "bayes_updates": 4, "bayes_chains": 2})
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
        # fails early (ParameterError naming prior / pi_mode / snr) when there is no sampler
        BayesSNRPredictor.for_data(data)
    y_model: torch.Tensor | None = None
    for pred in predictors:
        t0 = time.perf_counter()
        y_hat, failed = _predict(pred, batch, positions)
        seconds[pred.name] = time.perf_counter() - t0
        if isinstance(pred, TransformerPredictor):
            y_model = y_hat
        for j, m in enumerate(positions):
            if m in failed:
                rows.append(_failed_row(pred.name, m, config.prompts))
                failures[f"{pred.name}@{m}"] = failed[m]
                continue
            er = excess_risk_vs_oracle(y_hat[:, j], oracle[:, j])
            rows.append(_row(pred.name, m, y_hat[:, j], oracle[:, j], target[:, j], er))
    stats: dict[str, Any] = {"seconds": seconds, "failures": failures}
    if config.bayes_prompts is not None:
        floor_rows, acceptance = _bayes_floor(
            batch, y_model, oracle, data, config, config.bayes_prompts, seed, positions
        )
        rows += floor_rows
        seconds[BAYES_FLOOR] = acceptance.pop("seconds")
        stats["bayes_acceptance"] = acceptance
    return EvalResult(rows=tuple(rows), stats=stats)


def _bayes_floor(
    batch: MoRBatch,
    y_model: torch.Tensor | None,
    oracle: torch.Tensor,
    data: MoRConfig,
    config: EvalConfig,
    prompts: int,
    seed: int,
    positions: list[int],
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows of the SNR-model Bayes floor on the first ``prompts`` held-out prompts, its Monte
    Carlo size, its paired fall with m and the transformer's paired gap to it (module
    docstring); and ``{position: acceptance rate, "seconds": time}``."""
    count = min(prompts, batch.B)
    sub = batch.select(slice(0, count))
    orc, target = oracle[:count], batch.y[:count][:, positions]
    sweeps = max(BAYES_MIN_SWEEPS, config.bayes_updates // data.K)
    t0 = time.perf_counter()
    stats: dict[str, float] = {}
    floors: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for start in ("truth", "prior"):
        bayes = BayesSNRPredictor.for_data(
            data,
            sweeps=sweeps,
            burn_in=sweeps // 4,
            chains=config.bayes_chains,
            start=start,
            seed=derive_seed(seed, "eval-bayes-snr"),
        )
        y_b = torch.empty(count, len(positions), dtype=torch.float64)
        mc_var = torch.empty_like(y_b)
        for j, m in enumerate(positions):
            post = bayes.posterior(sub, m)
            mean, se = post.predict(sub.X[:, m])
            y_b[:, j], mc_var[:, j] = mean, se**2
            stats[f"{start}@{m}"] = float(getattr(post, "acceptance", float("nan")))
        # per prompt: (y_B - y_orc)^2 - se^2, unbiased for the exact posterior mean's term
        floors[start] = (y_b, mc_var, (y_b - orc) ** 2 - mc_var)
    stats["seconds"] = time.perf_counter() - t0
    y_b, mc_var, floor = floors["truth"]
    y_p, mc_p, floor_p = floors["prior"]
    out = []
    for j, m in enumerate(positions):
        out.append(_row(BAYES_FLOOR, m, y_b[:, j], orc[:, j], target[:, j], _mean_se(floor[:, j])))
        out.append(_difference_row(BAYES_FLOOR_MC, m, mc_var[:, j]))
        er = _mean_se(floor_p[:, j])
        out.append(_row(BAYES_FLOOR_PRIOR_START, m, y_p[:, j], orc[:, j], target[:, j], er))
        out.append(_difference_row(f"{BAYES_FLOOR_PRIOR_START}_mc", m, mc_p[:, j]))
        out.append(_difference_row(BAYES_START_GAP, m, floor_p[:, j] - floor[:, j]))
        if j > 0:
            out.append(_difference_row(BAYES_FLOOR_FALL, m, floor[:, 0] - floor[:, j]))
        if y_model is not None:
            gap = (y_model[:count, j] - orc[:, j]) ** 2 - floor[:, j]
            out.append(_difference_row(TRANSFORMER_MINUS_FLOOR, m, gap))
    return out, stats


def _difference_row(method: str, m: int, values: torch.Tensor) -> dict[str, Any]:
    """A row whose ``excess_risk`` / ``excess_risk_se`` are the mean of per-prompt ``values``
    and its standard error; the other value columns NaN."""
    est = _mean_se(values)
    row = _failed_row(method, m, est.count)
    row.update(excess_risk=est.mean, excess_risk_se=est.se)
    return row


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
