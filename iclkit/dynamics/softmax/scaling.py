"""Scaling of the phase times with K (``docs/provenance.md`` §11, measured scalings, [RECON]).

The paper's bounds are quadratic in K ([READ-review]: "the bounds on T* have quadratic dependence
on K"); the explicit theorem bounds could not be read. This module measures the event times of
:func:`iclkit.dynamics.softmax.phases.detect_phases` over a grid of K and fits log-log slopes (least
squares of log time on log K), e.g. time to ``Attn_k = 1/2`` ~ K^2 / eta for balanced data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iclkit.theory.features import FeatureConfig
from iclkit.theory.rates import fit_line
from iclkit.theory.validation import ParameterError, check_int, check_positive

from .config import Method, SoftmaxConfig, default_horizon
from .phases import detect_phases
from .simulate import simulate_softmax

__all__ = ["SWEEP_TAIL_FACTOR", "ScalingResult", "phase_time_scaling"]

#: ``tail_factor`` of :func:`.config.default_horizon` in a sweep: a 4x margin on the time to eps
#: (half the single-run default), as a sweep runs many long simulations.
SWEEP_TAIL_FACTOR = 1.0

_EVENTS = (
    "offtarget_peak",
    "overtake_dominant",
    "half_attention",
    "convergence_regime",
    "loss_eps",
)


@dataclass(frozen=True)
class ScalingResult:
    """Event times over a grid of K.

    Attributes
    ----------
    Ks : (n_K,)
    times : dict
        ``"<query>:<event>"`` -> (n_K,) times in eta * t (NaN where the event is absent).
    slopes : dict
        ``"<query>:<event>"`` -> fitted d log time / d log K (only keys with every time > 0).
    settings : dict
        The sweep's parameters (method, N, p_mode, p_dominant, eta, eps).
    """

    Ks: np.ndarray
    times: dict[str, np.ndarray]
    slopes: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)


def phase_time_scaling(
    Ks: Sequence[int],
    *,
    N: int = 1000,
    p_mode: str = "balanced",
    p_dominant: float | None = None,
    eta: float = 1.0,
    eps: float = 1e-3,
    method: Method = "mean-field",
    include_query_in_softmax: bool = False,
    max_time: float | None = None,
) -> ScalingResult:
    """Simulate GD for every K and collect the phase-event times.

    Parameters
    ----------
    Ks : sequence of int
        At least two values >= 2 (for imbalanced data, >= 3).
    N : int
        Prompt length (ignored by the mean-field method).
    p_mode, p_dominant
        Feature probabilities (see :class:`iclkit.theory.features.FeatureConfig`).
    eta, eps
        Step size; loss level of the ``loss_eps`` event (runs stop when every query type is there).
    method : {"mean-field", "exact"}
        Monte Carlo is not offered here (too slow for sweeps).
    max_time : float or None
        Horizon in eta * t; default :func:`.config.default_horizon` with
        :data:`SWEEP_TAIL_FACTOR`, ``4 / p_min^2 + 1 / (p_min eps)``.
    """
    if method not in ("mean-field", "exact"):
        raise ParameterError(f"method must be 'mean-field' or 'exact', got {method!r}")
    Klist = [check_int(k, "Ks", minimum=2) for k in Ks]
    if len(Klist) < 2:
        raise ParameterError("Ks must hold at least two values")
    eta = check_positive(eta, "eta")
    eps = check_positive(eps, "eps")
    times: dict[str, list[float]] = {}
    for K in Klist:
        fc = FeatureConfig(K=K, N=N, p_mode=p_mode, p_dominant=p_dominant)  # type: ignore[arg-type]
        p_min = float(fc.probabilities.min())
        horizon = (
            max_time
            if max_time is not None
            else default_horizon(p_min, eps, tail_factor=SWEEP_TAIL_FACTOR)
        )
        traj = simulate_softmax(
            SoftmaxConfig(
                features=fc,
                eta=eta,
                method=method,
                max_time=horizon,
                stop_loss=eps,
                include_query_in_softmax=include_query_in_softmax,
            )
        )
        report = detect_phases(traj, eps=eps)
        for q in report.queries:
            for ev in _EVENTS:
                key = f"{q.query}:{ev}"
                val = q.events.get(ev)
                times.setdefault(key, []).append(math.nan if val is None else float(val))
    Ks_arr = np.asarray(Klist, dtype=np.float64)
    times_arr = {k: np.asarray(v, dtype=np.float64) for k, v in times.items()}
    fits = {
        k: fit_line(Ks_arr, v)
        for k, v in times_arr.items()
        if np.all(np.isfinite(v)) and np.all(v > 0)
    }
    slopes = {k: fit.slope for k, fit in fits.items() if fit is not None}
    settings = {
        "method": method,
        "N": N,
        "p_mode": p_mode,
        "p_dominant": p_dominant,
        "eta": eta,
        "eps": eps,
        "include_query_in_softmax": include_query_in_softmax,
    }
    return ScalingResult(Ks=Ks_arr, times=times_arr, slopes=slopes, settings=settings)
