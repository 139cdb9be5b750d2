"""The three simulators of softmax-attention GD, behind one interface (``docs/provenance.md`` §11).

Each holds the GD state and, per step, evaluates the gradient (:meth:`GDMethod.evaluate`),
reports what it sees at a record step (:meth:`GDMethod.observe`) and takes the step
(:meth:`GDMethod.descend`); the loop in :mod:`.simulate` is shared. All [RECON]:

* ``"exact"``: population GD on ``Z = V^T Q V`` with the expectation over token counts done
  exactly (:mod:`.population`); GD on Q equals GD on Z with the same eta because
  ``grad_Q L = V (dL/dZ) V^T``;
* ``"mean-field"``: the N -> infinity limit ``alpha = softmax(Z[:, k] + log p)``;
* ``"monte-carlo"``: the full model, Q in R^{d x d}, on a Monte Carlo loss over sampled prompts
  (fresh batch per step, or one fixed pool), gradients by torch autograd.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from iclkit.theory.features import sample_feature_prompts
from iclkit.theory.rng import derive_seed

from .config import SoftmaxConfig
from .exact import exact_structure
from .model import prompt_squared_errors, softmax_attention_weights
from .population import mean_field_moments
from .recorder import Observation

__all__ = ["SIMULATORS", "GDMethod", "Setup"]


@dataclass(frozen=True, eq=False)
class Setup:
    """What every simulator starts from.

    Attributes
    ----------
    p : (K,) feature probabilities
    V : (d, K) orthonormal feature basis
    Q0 : (d, d) initial Q;  Z0 : (K, K) ``V^T Q0 V``
    type_features : the features of each query type;  dominant : the dominant feature or None
    """

    p: np.ndarray
    V: torch.Tensor
    Q0: torch.Tensor
    Z0: np.ndarray
    type_features: tuple[tuple[int, ...], ...]
    dominant: int | None


class GDMethod(Protocol):
    """One simulator: the GD state and its per-step work."""

    def session(self) -> contextlib.AbstractContextManager[None]: ...
    def evaluate(self, t: int) -> None: ...
    def observe(self) -> Observation: ...
    def descend(self, eta: float) -> None: ...
    def Z(self) -> np.ndarray: ...
    def extra_stats(self) -> dict[str, Any]: ...


class _Exact:
    """Population GD with exact count sums on the reduced parameters theta of Z."""

    def __init__(self, config: SoftmaxConfig, setup: Setup) -> None:
        self.p = setup.p
        self.structure, self.theta = exact_structure(
            setup.p,
            config.features.N,
            setup.Z0,
            include_query_in_softmax=config.include_query_in_softmax,
            tail_mass=config.tail_mass,
            max_terms=config.max_terms,
        )
        self.sizes = np.zeros(self.structure.n_params)
        for ct in self.structure.types:
            self.sizes[ct.params] = [r.shape[0] for r in ct.rows]

    def session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def evaluate(self, t: int) -> None:
        self.grad, self.per_type = self.structure.step_quantities(self.theta)

    def observe(self) -> Observation:
        st = self.structure
        attn_param = np.zeros(st.n_params)
        loss_k = np.zeros(self.p.shape[0])
        for ct, (lk, ak) in zip(st.types, self.per_type, strict=True):
            loss_k[ct.columns] = lk
            attn_param[ct.params] = ak / self.sizes[ct.params]
        finite = bool(np.all(np.isfinite(loss_k)) and np.all(np.isfinite(self.theta)))
        return Observation(
            self.Z(), attn_param[st.index_map], loss_k, float(self.p @ loss_k), finite
        )

    def descend(self, eta: float) -> None:
        self.theta = self.theta - eta * self.grad

    def Z(self) -> np.ndarray:
        return self.structure.expand(self.theta)

    def extra_stats(self) -> dict[str, Any]:
        tables = [ct.table for ct in self.structure.types if ct.table is not None]
        return {
            "count_terms": [int(table.totals.shape[0]) for table in tables],
            "dropped_mass": max(table.dropped_mass for table in tables),
            "reduced_parameters": int(self.structure.n_params),
            "symmetric_reduction": bool(self.structure.symmetric),
        }


class _MeanField:
    """GD on Z with the N -> infinity attention."""

    def __init__(self, config: SoftmaxConfig, setup: Setup) -> None:
        self.p = setup.p
        self._Z = setup.Z0.copy()

    def session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def evaluate(self, t: int) -> None:
        self.m = mean_field_moments(self._Z, self.p)

    def observe(self) -> Observation:
        m, Z = self.m, self._Z
        finite = bool(np.isfinite(m.loss) and np.all(np.isfinite(Z)))
        return Observation(Z, m.attention, m.loss_per_query, m.loss, finite)

    def descend(self, eta: float) -> None:
        self._Z = self._Z - eta * self.m.grad

    def Z(self) -> np.ndarray:
        return self._Z

    def extra_stats(self) -> dict[str, Any]:
        return {}


class _MonteCarlo:
    """GD on the full Q with autograd of the loss on sampled prompts."""

    def __init__(self, config: SoftmaxConfig, setup: Setup) -> None:
        self.config, self.setup = config, setup
        self.Q = setup.Q0.clone().requires_grad_(True)
        K = config.features.K
        type_of = np.zeros(K, dtype=np.int64)
        for j, members in enumerate(setup.type_features):
            type_of[list(members)] = j
        self.type_of = torch.as_tensor(type_of)
        self.pool = (
            None
            if config.resample
            else sample_feature_prompts(
                config.features,
                config.batch_size,
                V=setup.V,
                seed=derive_seed(config.seed, "pool"),
            )
        )

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Run with ``config.torch_threads`` intra-op threads, restored afterwards."""
        threads = torch.get_num_threads()
        if self.config.torch_threads is not None:
            torch.set_num_threads(int(self.config.torch_threads))
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def evaluate(self, t: int) -> None:
        c = self.config
        self.batch = (
            self.pool
            if self.pool is not None
            else sample_feature_prompts(
                c.features, c.batch_size, V=self.setup.V, seed=derive_seed(c.seed, "prompts", t)
            )
        )
        self.errs = prompt_squared_errors(
            self.Q,
            self.batch.embedding,
            self.batch.y[:, -1],
            include_query_in_softmax=c.include_query_in_softmax,
        )
        self.loss = self.errs.mean()

    def observe(self) -> Observation:
        K, B = self.config.features.K, self.config.batch_size
        batch, dominant = self.batch, self.setup.dominant
        with torch.no_grad():
            Z = self.Z()
            attn = softmax_attention_weights(
                self.Q, batch.X, include_query_in_softmax=self.config.include_query_in_softmax
            )
            alpha = torch.zeros(B, K, dtype=torch.float64)
            alpha.scatter_add_(1, batch.features[:, : attn.shape[1]], attn)
            qf = batch.query_feature
            qtype = self.type_of[qf]
            e = self.errs.detach()
            lt: list[float] = []
            se: list[float] = []
            at: list[float] = []
            ad: list[float] = []
            for j, members in enumerate(self.setup.type_features):
                sel = qtype == j
                n_j = int(sel.sum())
                if n_j == 0:
                    for column in (lt, se, at, ad):
                        column.append(math.nan)
                    continue
                ej = e[sel]
                lt.append(float(ej.mean()))
                se.append(float(ej.std(unbiased=True) / math.sqrt(n_j)) if n_j > 1 else math.nan)
                at.append(float(alpha[sel, qf[sel]].mean()))
                if dominant is None or dominant in members:
                    ad.append(math.nan)
                else:
                    ad.append(float(alpha[sel, dominant].mean()))
            total = float(self.loss)
        # per-feature losses are not separately estimated; the recorder takes per-type values
        return Observation(
            Z,
            np.full((K, K), math.nan),
            np.full(K, total),
            total,
            bool(math.isfinite(total) and np.all(np.isfinite(Z))),
            {
                "loss_se_type": np.asarray(se),
                "loss_type": np.asarray(lt),
                "attn_target_type": np.asarray(at),
                "attn_dom_type": np.asarray(ad),
                "total_loss": total,
            },
        )

    def descend(self, eta: float) -> None:
        (grad,) = torch.autograd.grad(self.loss, self.Q)
        with torch.no_grad():
            self.Q -= eta * grad

    def Z(self) -> np.ndarray:
        V = self.setup.V
        return (V.T @ self.Q.detach() @ V).numpy()

    def extra_stats(self) -> dict[str, Any]:
        return {"batch_size": self.config.batch_size, "resample": self.config.resample}


#: The simulators by ``SoftmaxConfig.method``.
SIMULATORS: dict[str, type[_Exact] | type[_MeanField] | type[_MonteCarlo]] = {
    "exact": _Exact,
    "mean-field": _MeanField,
    "monte-carlo": _MonteCarlo,
}
