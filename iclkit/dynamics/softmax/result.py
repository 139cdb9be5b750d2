"""The recorded trajectory of a softmax-attention GD run: :class:`SoftmaxResult`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iclkit.theory.validation import ParameterError

from ..status import SolverStats, Status
from .config import SoftmaxConfig

__all__ = ["SoftmaxResult"]


@dataclass(frozen=True)
class SoftmaxResult:
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
    status : Status
        CONVERGED (every query type reached ``stop_loss``), MAX_TIME (the horizon ran out:
        ``stop_loss`` not reached, or none was given) or DIVERGED (reduce eta).
    message : str
        What happened and what to do about it.
    stats : SolverStats
        GD steps run, gradient evaluations, wall time, method; ``extra`` holds the number of
        records and the method's counters.
    """

    config: SoftmaxConfig
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
    stats: SolverStats

    def type_index(self, name: str) -> int:
        """Column of the query type ``name`` in the per-type arrays."""
        if name not in self.query_types:
            raise ParameterError(
                f"query type must be one of {list(self.query_types)}, got {name!r}"
            )
        return self.query_types.index(name)

    def to_json(self) -> dict[str, object]:
        """The run's settings, final losses and status as JSON-ready values."""
        fc = self.config.features
        return {
            "K": fc.K,
            "N": fc.N,
            "p": list(fc.p or ()),
            "eta": self.config.eta,
            "method": self.config.method,
            "include_query_in_softmax": bool(self.config.include_query_in_softmax),
            "final_loss": {
                "all": float(self.loss[-1]),
                **{n: float(self.loss_per_type[-1, j]) for j, n in enumerate(self.query_types)},
            },
            "final_time": float(self.time[-1]),
            "status": self.status.value,
            "message": self.message,
        }
