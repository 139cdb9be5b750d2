"""What a softmax-attention GD run records (Huang, Cheng, Liang): query types and the recorder.

Features of equal probability form one *query type* (:func:`query_types`); the
:class:`Recorder` keeps, per type, the loss, the attention on the target and on the dominant
feature, the target weight ``Z_kk = v_k^T Q v_k`` and the off-target weights, on the record grid
of :func:`is_record_step`, from the :class:`Observation` a simulator makes at a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Observation", "Recorder", "is_record_step", "query_types"]


@dataclass(frozen=True, eq=False)
class Observation:
    """What a simulator sees at a record step.

    Attributes
    ----------
    Z : (K, K)
        ``Z = V^T Q V``.
    attention : (K, K)
        ``E[alpha_n]`` of a query v_k on the tokens equal to v_n (column k; NaN when not
        estimated).
    loss_k : (K,)
        Loss of prompts whose query is v_k.
    loss : float
        The loss the divergence test watches.
    finite : bool
        Loss and state are finite.
    per_type : dict
        Per-type values that replace the ones derived from ``loss_k`` and ``attention``
        (Monte Carlo estimates), as keywords of :meth:`Recorder.add`.
    """

    Z: np.ndarray
    attention: np.ndarray
    loss_k: np.ndarray
    loss: float
    finite: bool
    per_type: dict[str, Any] = field(default_factory=dict)


def query_types(p: np.ndarray) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...], int | None]:
    """Group the features into query types: the classes of equal probability, most likely first.

    Returns the type names, the features of each type, and the dominant feature (the single
    most likely one when there is one and not every feature is alike) or None.
    """
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


class Recorder:
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

    def add_observation(self, step: int, obs: Observation) -> None:
        """Record one :class:`Observation` of the simulator at GD step ``step``."""
        self.add(step, obs.Z, obs.attention, obs.loss_k, **obs.per_type)

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


def is_record_step(t: int, resolution: int) -> bool:
    """Record every step up to ``resolution``, then with relative spacing ``1/resolution``."""
    if t <= resolution:
        return True
    return t % max(1, t // resolution) == 0
