"""Phase detection on softmax-attention GD trajectories (Huang, Cheng, Liang; ``docs/provenance.md`` §11).

What is the paper's ([READ] abstract, [READ-review]): balanced features converge in **two
phases**; with imbalanced features, queries of the dominant feature converge first in **one
phase**, queries of under-represented features later, in **four phases**, driven by the
competition of the target weight ``v_k^T Q v_k`` and the off-target weights ``v_n^T Q v_k``.

What is this project's (operational definitions, [RECON]; the paper's exact phase definitions
could not be read). Events, each a time in units of eta * t, found on the record grid with
linear interpolation between records:

* ``offtarget_peak``: the argmax of the mean non-dominant off-target weight ``v_m^T Q v_k``
  (m not in {k, dominant}), if it is an interior maximum (it first rises, then falls);
* ``overtake_dominant``: the first time the target attention ``Attn_k`` reaches the attention on
  the dominant feature (if it starts below it);
* ``half_attention``: the first time ``Attn_k >= 1/2``;
* ``convergence_regime``: the first time after ``half_attention`` at which the local log-log
  slope of the loss, ``d log L / d log(eta t)`` measured over a factor 1.2 in time, lies within
  ``-1 +- slope_band`` (the 1/t regime);
* ``loss_eps``: the first time the loss is <= eps.

Phases tile ``[0, end]``: each of the first three events that occurs at a positive time closes a
phase (named "off-target growth", "off-target decay", "target growth"); the last phase,
"convergence", runs to the end. Hence balanced queries show 2 phases and under-represented
queries (when ``p_dominant^2`` is large enough for the non-dominant off-target weights to rise
first: measured at p_dominant = 0.4 and 0.5, not at 0.3, where they show 3) show 4. The dominant
query's count is definitional: its target attention starts at ``p_dominant``, so
``half_attention`` is at t = 0 and it shows 1 phase iff ``p_dominant >= 1/2`` (at exactly 1/2
this rests on the sign of the round-off in Attn(0) = 1/2; no tolerance is added), and 2 phases
(target growth, convergence) below 1/2 (measured at 0.3 and 0.4).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iclkit.theory.rates import fit_line
from iclkit.theory.validation import ParameterError, check_positive, check_real

from .result import SoftmaxResult

__all__ = ["Phase", "PhaseReport", "QueryPhases", "detect_phases"]

#: The final-phase slope needs a window of at least this factor in time (else None).
SLOPE_MIN_SPAN = 2.0

#: Log-uniform resampling of the final phase before the slope fit, so that the densely recorded
#: early part of the window does not dominate the least squares.
SLOPE_RESAMPLE = 64

#: Fewer positive finite loss records than this: no final slope.
SLOPE_MIN_POINTS = 4

_PHASE_NAMES = {
    "offtarget_peak": "off-target growth",
    "overtake_dominant": "off-target decay",
    "half_attention": "target growth",
}


@dataclass(frozen=True)
class Phase:
    """One phase of one query type: ``[start, end)`` in units of eta * t."""

    query: str
    name: str
    start: float
    end: float

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "name": self.name, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class QueryPhases:
    """Events and phases of one query type.

    Attributes
    ----------
    events : dict
        Event name -> time in eta * t (None if it does not occur in the trajectory).
    phases : tuple of Phase
    events_ordered : bool
        The present events among offtarget_peak < overtake_dominant < half_attention <=
        convergence_regime occur in this order.
    final_loss_slope : float or None
        Least-squares log-log slope of the loss from ``convergence_regime`` to the end (None when
        that window spans less than a factor 2 in time).
    """

    query: str
    events: dict[str, float | None]
    phases: tuple[Phase, ...]
    events_ordered: bool
    final_loss_slope: float | None

    @property
    def n_phases(self) -> int:
        return len(self.phases)


@dataclass(frozen=True)
class PhaseReport:
    """Phase detection result for a whole trajectory, with the paper-facing summary."""

    queries: tuple[QueryPhases, ...]
    eps: float
    end_time: float
    summary: dict[str, Any] = field(default_factory=dict)

    def by_query(self, name: str) -> QueryPhases:
        for q in self.queries:
            if q.query == name:
                return q
        raise ParameterError(
            f"query must be one of {[q.query for q in self.queries]}, got {name!r}"
        )

    @property
    def phases(self) -> list[dict[str, Any]]:
        """All phases as ``{query, name, start, end}`` dicts."""
        return [ph.as_dict() for q in self.queries for ph in q.phases]

    def to_json(self) -> dict[str, Any]:
        """Phases, their count, the headline times and the events per query type."""
        out = {
            "phases": self.phases,
            "n_phases": self.summary["n_phases"],
            "time_to_half_attention": self.summary["time_to_half_attention"],
            "time_to_loss_eps": self.summary["time_to_loss_eps"],
            "events": {q.query: q.events for q in self.queries},
        }
        if "stagewise" in self.summary:
            out["stagewise"] = self.summary["stagewise"]
        return out


def _first_crossing(
    time: np.ndarray, values: np.ndarray, level: np.ndarray | float, *, below: bool = False
) -> float | None:
    """First time ``values >= level`` (``<=`` with below), linearly interpolated."""
    diff = np.asarray(values - level, dtype=np.float64)
    if below:
        diff = -diff
    ok = np.isfinite(diff)
    hit = np.flatnonzero(ok & (diff >= 0))
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(time[0])
    d0, d1 = diff[i - 1], diff[i]
    if not np.isfinite(d0) or d1 == d0:
        return float(time[i])
    frac = -d0 / (d1 - d0)
    return float(time[i - 1] + frac * (time[i] - time[i - 1]))


def _local_slope(time: np.ndarray, values: np.ndarray, factor: float = 1.2) -> np.ndarray:
    """``d log values / d log time`` over ``[t / sqrt(factor), t * sqrt(factor)]``."""
    out = np.full(time.shape, np.nan)
    sel = (time > 0) & np.isfinite(values) & (values > 0)
    if sel.sum() < 4:
        return out
    lt, lv = np.log(time[sel]), np.log(values[sel])
    h = 0.5 * math.log(factor)
    inside = (lt - h >= lt[0]) & (lt + h <= lt[-1])
    s = (np.interp(lt + h, lt, lv) - np.interp(lt - h, lt, lv)) / (2 * h)
    res = np.full(lt.shape, np.nan)
    res[inside] = s[inside]
    out[np.flatnonzero(sel)] = res
    return out


def detect_phases(
    trajectory: SoftmaxResult, *, eps: float = 1e-3, slope_band: float = 0.25
) -> PhaseReport:
    """Detect the phase events of every query type of a trajectory.

    Parameters
    ----------
    trajectory : SoftmaxResult
    eps : float
        Loss level for ``loss_eps`` (> 0).
    slope_band : float
        Half-width of the band around -1 that defines the 1/t convergence regime, in (0, 1).

    Returns
    -------
    PhaseReport
        ``summary`` holds ``n_phases`` per query type, ``time_to_half_attention``,
        ``time_to_loss_eps`` and, with a dominant feature, ``stagewise`` (the under-represented
        loss and target attention at the time the dominant queries reach eps).
    """
    if not isinstance(trajectory, SoftmaxResult):
        raise ParameterError(f"trajectory must be a SoftmaxResult, got {trajectory!r}")
    eps = check_positive(eps, "eps")
    slope_band = check_real(slope_band, "slope_band", minimum=0.0, strict_minimum=True, maximum=1.0)
    tr = trajectory
    t = tr.time
    end = float(t[-1])
    queries = []
    for j, name in enumerate(tr.query_types):
        att = tr.attention_target[:, j]
        dom = tr.attention_dominant[:, j]
        loss = tr.loss_per_type[:, j]
        other = tr.offtarget_other[:, j]
        ev: dict[str, float | None] = {}
        ev["offtarget_peak"] = None
        ev["overtake_dominant"] = None
        if np.all(np.isfinite(dom)):
            i_max = int(np.nanargmax(other))
            scale = max(1.0, float(np.nanmax(np.abs(other))))
            if 0 < i_max < t.size - 1 and other[i_max] > other[0] + 1e-9 * scale:
                ev["offtarget_peak"] = float(t[i_max])
            if att[0] < dom[0]:
                ev["overtake_dominant"] = _first_crossing(t, att - dom, 0.0)
        ev["half_attention"] = _first_crossing(t, att, 0.5)
        ev["convergence_regime"] = None
        if ev["half_attention"] is not None:
            slope = _local_slope(t, loss)
            ok = (t >= ev["half_attention"]) & (np.abs(slope + 1.0) <= slope_band)
            idx = np.flatnonzero(ok)
            if idx.size:
                ev["convergence_regime"] = float(t[idx[0]])
        ev["loss_eps"] = _first_crossing(t, loss, eps, below=True)
        bounds = []
        for key in ("offtarget_peak", "overtake_dominant", "half_attention"):
            tk = ev[key]
            if tk is not None and tk > float(t[0]) + 1e-9 * max(end, 1.0):
                bounds.append((tk, _PHASE_NAMES[key]))
        ordered_keys = [
            k
            for k in ("offtarget_peak", "overtake_dominant", "half_attention", "convergence_regime")
            if ev[k] is not None
        ]
        times = [ev[k] for k in ordered_keys]
        events_ordered = all(
            a is not None and b is not None and a <= b for a, b in itertools.pairwise(times)
        )
        bounds.sort()
        phases = []
        start = float(t[0])
        for tk, pname in bounds:
            phases.append(Phase(name, pname, start, tk))
            start = tk
        phases.append(Phase(name, "convergence", start, end))
        fls = None
        t_conv = ev["convergence_regime"]
        if t_conv is not None and t_conv > 0 and end >= SLOPE_MIN_SPAN * t_conv:
            fit = fit_line(
                t,
                loss,
                x_window=(t_conv, end),
                resample=SLOPE_RESAMPLE,
                min_points=SLOPE_MIN_POINTS,
            )
            fls = None if fit is None else fit.slope
        queries.append(QueryPhases(name, ev, tuple(phases), events_ordered, fls))
    summary: dict[str, Any] = {
        "n_phases": {q.query: q.n_phases for q in queries},
        "time_to_half_attention": {q.query: q.events["half_attention"] for q in queries},
        "time_to_loss_eps": {q.query: q.events["loss_eps"] for q in queries},
    }
    if "dominant" in tr.query_types and "under_represented" in tr.query_types:
        jd, ju = tr.type_index("dominant"), tr.type_index("under_represented")
        td = queries[jd].events["loss_eps"]
        if td is not None:
            i = int(np.searchsorted(t, td))
            i = min(i, t.size - 1)
            summary["stagewise"] = {
                "time_dominant_reaches_eps": td,
                "under_represented_loss_then": float(tr.loss_per_type[i, ju]),
                "under_represented_attention_then": float(tr.attention_target[i, ju]),
            }
    return PhaseReport(queries=tuple(queries), eps=eps, end_time=end, summary=summary)
