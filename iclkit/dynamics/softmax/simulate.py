"""Gradient descent on the softmax-attention loss of Huang, Cheng, Liang (arXiv 2310.05249).

GD ``Q(t+1) = Q(t) - eta grad L(Q(t))`` ([READ]: discrete GD with step eta; ``Q(0) = 0`` [RECON])
simulated three ways (``dynamics.md`` §A.3-A.5, all [RECON]):

* ``"monte-carlo"``: the full model, Q in R^{d x d}, on a Monte Carlo loss over sampled prompts
  (fresh batch per step, or one fixed pool), gradients by torch autograd;
* ``"exact"``: population GD on ``Z = V^T Q V`` with the expectation over token counts done
  exactly (:mod:`iclkit.dynamics.softmax.population`); GD on Q equals GD on Z with the same eta
  because ``grad_Q L = V (dL/dZ) V^T``;
* ``"mean-field"``: the N -> infinity limit ``alpha = softmax(Z[:, k] + log p)``.

The one public entry is :func:`simulate_softmax`. Quantities are recorded on a grid that is
dense at small t and has relative spacing ``1/record_resolution`` later. Times are reported in
units of ``eta * t``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from iclkit.theory.features import FeatureConfig, feature_basis, sample_feature_prompts
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import ParameterError, check_int, check_positive, check_real

from .model import softmax_attention_weights
from .population import (
    DEFAULT_MAX_TERMS,
    DEFAULT_TAIL_MASS,
    exact_structure,
    mean_field_moments,
)

__all__ = ["SoftmaxDynamicsConfig", "SoftmaxTrajectory", "simulate_softmax"]

Method = Literal["exact", "mean-field", "monte-carlo"]
Init = Literal["zero", "random"]
Status = Literal["ok", "max_steps", "diverged"]


@dataclass(frozen=True)
class SoftmaxDynamicsConfig:
    """Validated configuration of one GD run.

    Parameters
    ----------
    features : FeatureConfig
        Data model (K, N, d, p).
    eta : float
        GD step size (> 0).
    method : {"exact", "mean-field", "monte-carlo"}
        Simulator (see the module docstring).
    steps : int or None
        Number of GD steps; default ``ceil(max_time / eta)`` or 10^5.
    max_time : float or None
        Horizon in units of eta * t (alternative to ``steps``).
    stop_loss : float or None
        Stop early once the loss of every query type is <= stop_loss (checked on the record grid).
    include_query_in_softmax : bool
        Normalise the attention over the query token too ([RECON] ambiguity, see softmax_model).
    init : {"zero", "random"}
        ``Q(0) = 0`` (default, [RECON]) or ``Q(0) = init_scale * G``, G with i.i.d. N(0, 1) entries.
    init_scale : float
        Scale of the random initialisation.
    batch_size : int
        Prompts per step (monte-carlo).
    resample : bool
        Fresh prompts every step (True) or one fixed pool for all steps (common random numbers).
    seed : int
        Seeds the feature basis, the initialisation and the prompts (derived streams).
    record_resolution : int
        Record every step up to this many steps, then with relative spacing 1/record_resolution.
    store_Z : bool
        Keep Z at every record (memory K^2 per record).
    tail_mass, max_terms
        Exact count sums: probability mass that may be dropped, and the size limit.
    torch_threads : int or None
        torch intra-op threads during a monte-carlo run (restored afterwards; None leaves the
        setting alone). The per-step tensors are small, so one thread is fastest, and much
        faster than several on a loaded machine.
    """

    features: FeatureConfig
    eta: float = 1.0
    method: Method = "exact"
    steps: int | None = None
    max_time: float | None = None
    stop_loss: float | None = None
    include_query_in_softmax: bool = False
    init: Init = "zero"
    init_scale: float = 0.01
    batch_size: int = 1024
    resample: bool = True
    seed: int = 0
    record_resolution: int = 1000
    store_Z: bool = False
    tail_mass: float = DEFAULT_TAIL_MASS
    max_terms: int = DEFAULT_MAX_TERMS
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureConfig):
            raise ParameterError(f"features must be a FeatureConfig, got {self.features!r}")
        eta = check_positive(self.eta, "eta")
        if self.method not in ("exact", "mean-field", "monte-carlo"):
            raise ParameterError(
                f"method must be 'exact', 'mean-field' or 'monte-carlo', got {self.method!r}"
            )
        if self.steps is not None and self.max_time is not None:
            raise ParameterError("steps and max_time: give at most one of them")
        if self.max_time is not None:
            mt = check_positive(self.max_time, "max_time")
            object.__setattr__(self, "steps", max(1, math.ceil(mt / eta - 1e-9)))
        elif self.steps is None:
            object.__setattr__(self, "steps", 100_000)
        check_int(self.steps, "steps", minimum=1, maximum=10**9)
        if self.stop_loss is not None:
            check_positive(self.stop_loss, "stop_loss")
        if self.init not in ("zero", "random"):
            raise ParameterError(f"init must be 'zero' or 'random', got {self.init!r}")
        check_real(self.init_scale, "init_scale", minimum=0.0)
        check_int(self.batch_size, "batch_size", minimum=2)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.record_resolution, "record_resolution", minimum=1)
        check_real(self.tail_mass, "tail_mass", minimum=0.0, maximum=1e-6)
        check_int(self.max_terms, "max_terms", minimum=1)
        if self.torch_threads is not None:
            check_int(self.torch_threads, "torch_threads", minimum=1)

    @property
    def horizon(self) -> float:
        """Planned horizon in units of eta * t."""
        return float(self.eta) * int(self.steps or 0)


@dataclass(frozen=True)
class SoftmaxTrajectory:
    """Recorded GD trajectory. Arrays have one row per record (R) and one column per query
    type (J): the classes of features with equal probability.

    Attributes
    ----------
    query_types : tuple of str
        ``("balanced",)``, ``("dominant", "under_represented")``, or ``("p=0.2 [1, 3]", ...)``.
    type_features : tuple of tuple of int
        The features of each type.
    steps : (R,) int
        GD step t of each record.
    time : (R,)
        ``eta * t``.
    loss : (R,)
        Population loss (monte-carlo: the batch estimate).
    loss_per_type : (R, J)
        Loss of prompts whose query is a feature of the type.
    loss_se_per_type : (R, J) or None
        Standard error of the monte-carlo estimate.
    attention_target : (R, J)
        ``Attn_k = E[alpha_k]``: attention of a query v_k on the tokens equal to v_k.
    attention_dominant : (R, J)
        ``E[alpha_1]`` on the dominant feature (NaN for the dominant type or without one).
    target_weight : (R, J)
        ``Z_kk = v_k^T Q v_k``.
    offtarget_dominant : (R, J)
        ``Z_1k = v_1^T Q v_k`` (NaN as above).
    offtarget_other : (R, J)
        Mean of ``Z_nk = v_n^T Q v_k`` over n not in {k, dominant}.
    column_sum_drift : (R,)
        ``max_k |sum_n Z_nk(t) - sum_n Z_nk(0)|`` (invariant: 0).
    Z_final : (K, K)
    Z_history : (R, K, K) or None
    status : {"ok", "max_steps", "diverged"}
    message : str
    stats : dict
    """

    config: SoftmaxDynamicsConfig
    query_types: tuple[str, ...]
    type_features: tuple[tuple[int, ...], ...]
    steps: np.ndarray
    time: np.ndarray
    loss: np.ndarray
    loss_per_type: np.ndarray
    loss_se_per_type: np.ndarray | None
    attention_target: np.ndarray
    attention_dominant: np.ndarray
    target_weight: np.ndarray
    offtarget_dominant: np.ndarray
    offtarget_other: np.ndarray
    column_sum_drift: np.ndarray
    Z_final: np.ndarray
    Z_history: np.ndarray | None
    status: Status
    message: str
    stats: dict[str, Any] = field(default_factory=dict)

    def type_index(self, name: str) -> int:
        """Column of the query type ``name`` in the per-type arrays."""
        if name not in self.query_types:
            raise ParameterError(
                f"query type must be one of {list(self.query_types)}, got {name!r}"
            )
        return self.query_types.index(name)


# --------------------------------------------------------------------------- query types
def _query_types(p: np.ndarray) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...], int | None]:
    values, cls = np.unique(p, return_inverse=True)
    members = [tuple(int(i) for i in np.flatnonzero(cls == c)) for c in range(values.size)]
    order = sorted(range(values.size), key=lambda c: -values[c])  # most likely first
    members = [members[c] for c in order]
    vals = [float(values[c]) for c in order]
    dominant = members[0][0] if len(members[0]) == 1 and len(members) > 1 else None
    if len(members) == 1:
        names: list[str] = ["balanced"]
    elif len(members) == 2 and dominant is not None:
        names = ["dominant", "under_represented"]
    else:
        names = [f"p={v:.4g} {list(m)}" for v, m in zip(vals, members, strict=True)]
    return tuple(names), tuple(members), dominant


class _Recorder:
    """Accumulates the tracked quantities from (Z, attention, loss per query feature)."""

    def __init__(
        self,
        p: np.ndarray,
        type_features: tuple[tuple[int, ...], ...],
        dominant: int | None,
        Z0: np.ndarray,
        store_Z: bool,
    ) -> None:
        self.p = p
        self.types = [np.asarray(m) for m in type_features]
        self.dominant = dominant
        self.colsum0 = Z0.sum(axis=0)
        self.store_Z = store_Z
        self.rows: dict[str, list[Any]] = {
            k: []
            for k in (
                "steps",
                "loss",
                "loss_per_type",
                "loss_se",
                "attention_target",
                "attention_dominant",
                "target_weight",
                "offtarget_dominant",
                "offtarget_other",
                "column_sum_drift",
                "Z",
            )
        }
        K = p.shape[0]
        self.other_mask = np.ones((K, K), dtype=bool)
        np.fill_diagonal(self.other_mask, False)
        if dominant is not None:
            self.other_mask[dominant, :] = False

    def add(
        self,
        step: int,
        Z: np.ndarray,
        attention: np.ndarray,
        loss_k: np.ndarray,
        loss_se_type: np.ndarray | None = None,
        loss_type: np.ndarray | None = None,
        attn_target_type: np.ndarray | None = None,
        attn_dom_type: np.ndarray | None = None,
        total_loss: float | None = None,
    ) -> None:
        r = self.rows
        r["steps"].append(step)
        diag = np.diagonal(Z)
        adiag = np.diagonal(attention)
        other = np.where(self.other_mask, Z, 0.0).sum(axis=0) / np.maximum(
            self.other_mask.sum(axis=0), 1
        )
        lt, at, ad, tw, od, oo = [], [], [], [], [], []
        for m in self.types:
            lt.append(loss_k[m].mean())
            at.append(adiag[m].mean())
            tw.append(diag[m].mean())
            oo.append(other[m].mean())
            if self.dominant is None or self.dominant in m:
                ad.append(math.nan)
                od.append(math.nan)
            else:
                ad.append(attention[self.dominant, m].mean())
                od.append(Z[self.dominant, m].mean())
        r["loss_per_type"].append(lt if loss_type is None else loss_type)
        r["attention_target"].append(at if attn_target_type is None else attn_target_type)
        r["attention_dominant"].append(ad if attn_dom_type is None else attn_dom_type)
        r["target_weight"].append(tw)
        r["offtarget_dominant"].append(od)
        r["offtarget_other"].append(oo)
        r["loss_se"].append(loss_se_type)
        r["loss"].append(float(self.p @ loss_k) if total_loss is None else total_loss)
        r["column_sum_drift"].append(float(np.abs(Z.sum(axis=0) - self.colsum0).max()))
        if self.store_Z:
            r["Z"].append(Z.copy())

    def last_type_losses(self) -> np.ndarray:
        return np.asarray(self.rows["loss_per_type"][-1], dtype=np.float64)

    def arrays(self) -> dict[str, Any]:
        r = self.rows
        out: dict[str, Any] = {
            "steps": np.asarray(r["steps"], dtype=np.int64),
            "loss": np.asarray(r["loss"], dtype=np.float64),
            "column_sum_drift": np.asarray(r["column_sum_drift"], dtype=np.float64),
        }
        for key in (
            "loss_per_type",
            "attention_target",
            "attention_dominant",
            "target_weight",
            "offtarget_dominant",
            "offtarget_other",
        ):
            out[key] = np.asarray(r[key], dtype=np.float64)
        out["loss_se"] = (
            None
            if not r["loss_se"] or r["loss_se"][0] is None
            else np.asarray(r["loss_se"], dtype=np.float64)
        )
        out["Z"] = np.asarray(r["Z"]) if self.store_Z else None
        return out


def _is_record_step(t: int, resolution: int) -> bool:
    if t <= resolution:
        return True
    return t % max(1, t // resolution) == 0


# --------------------------------------------------------------------------- entry
def simulate_softmax(config: SoftmaxDynamicsConfig, *, progress: bool = False) -> SoftmaxTrajectory:
    """Run GD on the softmax-attention loss with the configured simulator.

    Parameters
    ----------
    config : SoftmaxDynamicsConfig
    progress : bool
        Show a tqdm progress bar (only on a TTY).

    Returns
    -------
    SoftmaxTrajectory
        With ``status`` "ok", "max_steps" (``stop_loss`` not reached: the finite-N error floor
        may lie above it, or the horizon is too short) or "diverged" (reduce eta).
    """
    if not isinstance(config, SoftmaxDynamicsConfig):
        raise ParameterError(f"config must be a SoftmaxDynamicsConfig, got {config!r}")
    fc = config.features
    p = fc.probabilities
    K = fc.K
    d = int(fc.d or K)
    names, type_features, dominant = _query_types(p)
    V = feature_basis(fc, seed=derive_seed(config.seed, "basis"))
    if config.init == "zero":
        Q0 = torch.zeros(d, d, dtype=torch.float64)
    else:
        g = make_generator(derive_seed(config.seed, "init"))
        Q0 = config.init_scale * torch.randn(d, d, generator=g, dtype=torch.float64)
    Z0 = (V.T @ Q0 @ V).numpy()
    recorder = _Recorder(p, type_features, dominant, Z0, config.store_Z)
    steps_total = int(config.steps or 0)
    bar = tqdm(
        total=steps_total,
        disable=not (progress and sys.stderr.isatty()),
        desc=f"softmax GD ({config.method})",
        unit="step",
    )
    t0 = time.perf_counter()
    if config.method == "monte-carlo":
        threads = torch.get_num_threads()
        if config.torch_threads is not None:
            torch.set_num_threads(int(config.torch_threads))
        try:
            status, t_done, Z_last, extra = _run_monte_carlo(
                config, V, Q0, recorder, names, type_features, dominant, bar
            )
        finally:
            torch.set_num_threads(threads)
    elif config.method == "mean-field":
        status, t_done, Z_last, extra = _run_mean_field(config, p, Z0, recorder, bar)
    else:
        status, t_done, Z_last, extra = _run_exact(config, p, Z0, recorder, bar)
    bar.close()
    wall = time.perf_counter() - t0
    arr = recorder.arrays()
    if status == "diverged":
        message = (
            f"loss became non-finite or exploded at step {t_done}: reduce eta (eta={config.eta})"
        )
    elif status == "max_steps":
        message = (
            f"stop_loss={config.stop_loss} not reached by every query type within "
            f"{t_done} steps (eta t = {config.eta * t_done:.6g}); raise steps/max_time, "
            "or check the finite-N error floor (include_query_in_softmax raises it)"
        )
    else:
        message = "ok"
    stats = {
        "steps_run": t_done,
        "wall_time_s": wall,
        "records": int(arr["steps"].shape[0]),
        "method": config.method,
        **extra,
    }
    return SoftmaxTrajectory(
        config=config,
        query_types=names,
        type_features=type_features,
        steps=arr["steps"],
        time=config.eta * arr["steps"].astype(np.float64),
        loss=arr["loss"],
        loss_per_type=arr["loss_per_type"],
        loss_se_per_type=arr["loss_se"],
        attention_target=arr["attention_target"],
        attention_dominant=arr["attention_dominant"],
        target_weight=arr["target_weight"],
        offtarget_dominant=arr["offtarget_dominant"],
        offtarget_other=arr["offtarget_other"],
        column_sum_drift=arr["column_sum_drift"],
        Z_final=Z_last,
        Z_history=arr["Z"],
        status=status,
        message=message,
        stats=stats,
    )


def _finish_check(config: SoftmaxDynamicsConfig, recorder: _Recorder) -> bool:
    if config.stop_loss is None:
        return False
    return bool(np.all(recorder.last_type_losses() <= config.stop_loss))


def _final_status(config: SoftmaxDynamicsConfig, stopped: bool) -> Status:
    if config.stop_loss is not None and not stopped:
        return "max_steps"
    return "ok"


def _run_exact(
    config: SoftmaxDynamicsConfig, p: np.ndarray, Z0: np.ndarray, recorder: _Recorder, bar: Any
) -> tuple[Status, int, np.ndarray, dict[str, Any]]:
    fc = config.features
    structure, theta = exact_structure(
        p,
        fc.N,
        Z0,
        include_query_in_softmax=config.include_query_in_softmax,
        tail_mass=config.tail_mass,
        max_terms=config.max_terms,
    )
    K = p.shape[0]
    sizes = np.zeros(structure.n_params)
    for ct in structure.types:
        sizes[ct.params] = [r.shape[0] for r in ct.rows]
    eta = float(config.eta)
    steps = int(config.steps or 0)
    res = config.record_resolution
    stopped = False
    t = 0
    loss0 = None
    for t in range(steps + 1):
        grad, per_type = structure.step_quantities(theta)
        if _is_record_step(t, res) or t == steps:
            Z = structure.expand(theta)
            attn_param = np.zeros(structure.n_params)
            loss_k = np.zeros(K)
            for ct, (lk, ak) in zip(structure.types, per_type, strict=True):
                loss_k[ct.columns] = lk
                attn_param[ct.params] = ak / sizes[ct.params]
            A = attn_param[structure.index_map]
            if not np.all(np.isfinite(loss_k)) or not np.all(np.isfinite(theta)):
                return "diverged", t, Z, _exact_stats(structure)
            total = float(p @ loss_k)
            loss0 = total if loss0 is None else loss0
            if total > 10.0 * max(loss0, 1.0):
                return "diverged", t, Z, _exact_stats(structure)
            recorder.add(t, Z, A, loss_k)
            if _finish_check(config, recorder):
                stopped = True
                break
        if t == steps:
            break
        theta = theta - eta * grad
        if t % 1000 == 999:
            bar.update(1000)
    return _final_status(config, stopped), t, structure.expand(theta), _exact_stats(structure)


def _exact_stats(structure: Any) -> dict[str, Any]:
    return {
        "count_terms": [int(ct.table.totals.shape[0]) for ct in structure.types],
        "dropped_mass": max(ct.table.dropped_mass for ct in structure.types),
        "reduced_parameters": int(structure.n_params),
        "symmetric_reduction": bool(structure.symmetric),
    }


def _run_mean_field(
    config: SoftmaxDynamicsConfig, p: np.ndarray, Z0: np.ndarray, recorder: _Recorder, bar: Any
) -> tuple[Status, int, np.ndarray, dict[str, Any]]:
    Z = Z0.copy()
    eta = float(config.eta)
    steps = int(config.steps or 0)
    res = config.record_resolution
    stopped = False
    t = 0
    loss0 = None
    for t in range(steps + 1):
        m = mean_field_moments(Z, p)
        if _is_record_step(t, res) or t == steps:
            if not np.isfinite(m.loss) or not np.all(np.isfinite(Z)):
                return "diverged", t, Z, {}
            loss0 = m.loss if loss0 is None else loss0
            if m.loss > 10.0 * max(loss0, 1.0):
                return "diverged", t, Z, {}
            recorder.add(t, Z, m.attention, m.loss_per_query)
            if _finish_check(config, recorder):
                stopped = True
                break
        if t == steps:
            break
        Z = Z - eta * m.grad
        if t % 1000 == 999:
            bar.update(1000)
    return _final_status(config, stopped), t, Z, {}


def _run_monte_carlo(
    config: SoftmaxDynamicsConfig,
    V: torch.Tensor,
    Q0: torch.Tensor,
    recorder: _Recorder,
    names: tuple[str, ...],
    type_features: tuple[tuple[int, ...], ...],
    dominant: int | None,
    bar: Any,
) -> tuple[Status, int, np.ndarray, dict[str, Any]]:
    from .model import prompt_squared_errors

    fc = config.features
    K = fc.K
    Q = Q0.clone().requires_grad_(True)
    eta = float(config.eta)
    steps = int(config.steps or 0)
    res = config.record_resolution
    B = int(config.batch_size)
    iq = config.include_query_in_softmax
    type_of = np.zeros(K, dtype=np.int64)
    for j, m in enumerate(type_features):
        type_of[list(m)] = j
    type_of_t = torch.as_tensor(type_of)
    pool = (
        None
        if config.resample
        else sample_feature_prompts(fc, B, V=V, seed=derive_seed(config.seed, "pool"))
    )
    stopped = False
    t = 0
    loss0 = None
    for t in range(steps + 1):
        batch = (
            pool
            if pool is not None
            else sample_feature_prompts(fc, B, V=V, seed=derive_seed(config.seed, "prompts", t))
        )
        errs = prompt_squared_errors(
            Q, batch.embedding, batch.y[:, -1], include_query_in_softmax=iq
        )
        loss = errs.mean()
        if _is_record_step(t, res) or t == steps:
            with torch.no_grad():
                Z = (V.T @ Q @ V).numpy()
                attn = softmax_attention_weights(Q, batch.X, include_query_in_softmax=iq)
                alpha = torch.zeros(B, K, dtype=torch.float64)
                n_tok = attn.shape[1]
                alpha.scatter_add_(1, batch.features[:, :n_tok], attn)
                qf = batch.query_feature
                qtype = type_of_t[qf]
                e = errs.detach()
                lt, se, at, ad = [], [], [], []
                for j in range(len(type_features)):
                    sel = qtype == j
                    n_j = int(sel.sum())
                    if n_j == 0:
                        lt.append(math.nan)
                        se.append(math.nan)
                        at.append(math.nan)
                        ad.append(math.nan)
                        continue
                    ej = e[sel]
                    lt.append(float(ej.mean()))
                    se.append(
                        float(ej.std(unbiased=True) / math.sqrt(n_j)) if n_j > 1 else math.nan
                    )
                    at.append(float(alpha[sel, qf[sel]].mean()))
                    if dominant is None or dominant in type_features[j]:
                        ad.append(math.nan)
                    else:
                        ad.append(float(alpha[sel, dominant].mean()))
                total = float(loss)
            if not math.isfinite(total) or not np.all(np.isfinite(Z)):
                return "diverged", t, Z, {"batch_size": B}
            loss0 = total if loss0 is None else loss0
            if total > 10.0 * max(loss0, 1.0):
                return "diverged", t, Z, {"batch_size": B}
            # per-feature losses are not separately estimated; the recorder uses per-type values
            recorder.add(
                t,
                Z,
                np.full((K, K), math.nan),
                np.full(K, total),
                loss_se_type=np.asarray(se),
                loss_type=np.asarray(lt),
                attn_target_type=np.asarray(at),
                attn_dom_type=np.asarray(ad),
                total_loss=total,
            )
            if _finish_check(config, recorder):
                stopped = True
                break
        if t == steps:
            break
        (grad,) = torch.autograd.grad(loss, Q)
        with torch.no_grad():
            Q -= eta * grad
        if t % 1000 == 999:
            bar.update(1000)
    Z_last = (V.T @ Q.detach() @ V).numpy()
    return _final_status(config, stopped), t, Z_last, {"batch_size": B, "resample": config.resample}
