"""Exact population GD of softmax attention on reduced parameters (``docs/provenance.md`` §11, [RECON]).

The columns of ``Z = V^T Q V`` whose query features share a probability follow one exact
reduced dynamics (:class:`ColumnType`), and when the initialisation is symmetric within each
class of features, equal entries stay equal; :func:`exact_structure` builds the parameter vector
theta of the distinct entries and the count tables (:func:`.population.count_table`) that give
the exact expectation of the loss and gradient of each column type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iclkit.theory.validation import ParameterError, check_int

from .population import (
    DEFAULT_MAX_TERMS,
    DEFAULT_TAIL_MASS,
    ColumnTable,
    column_expectations,
    count_table,
    validate_Zp,
)

__all__ = ["ColumnType", "ExactStructure", "exact_structure"]


@dataclass(frozen=True)
class ColumnType:
    """Columns that share one exact reduced dynamics (query features of one class).

    Attributes
    ----------
    columns : (n_cols,) int
        Query features of this type.
    representative : int
        One of them, k.
    rows : tuple of (s_g,) int arrays
        Row groups of the representative column (group 0 = [k]).
    params : (G,) int
        Index of each group's logit in the reduced parameter vector theta.
    table : ColumnTable
        Count distribution of the group totals (None for the mean field).
    """

    columns: np.ndarray
    representative: int
    rows: tuple[np.ndarray, ...]
    params: np.ndarray
    table: ColumnTable | None
    p_query: float


@dataclass(frozen=True)
class ExactStructure:
    """Reduced parameterisation ``Z[n, k] = theta[index_map[n, k]]`` preserved by GD.

    If the permutations of features with equal probability leave ``Z0`` invariant (true for
    the zero initialisation), they leave every GD iterate invariant, so each column type and row
    group carries one logit. Otherwise every entry of Z is its own parameter (and the count sums
    run over all compositions, small K and N only).
    """

    index_map: np.ndarray
    types: tuple[ColumnType, ...]
    n_params: int
    symmetric: bool
    N: int | None
    include_query_in_softmax: bool

    def expand(self, theta: np.ndarray) -> np.ndarray:
        """(K, K) matrix Z from the reduced parameters theta."""
        return theta[self.index_map]

    def step_quantities(
        self, theta: np.ndarray
    ) -> tuple[np.ndarray, list[tuple[float, np.ndarray]]]:
        """Gradient of L with respect to each entry class of theta, and per-type moments.

        Returns
        -------
        grad_theta : (n_params,)
            ``dL/dZ[n, k]`` for any (n, k) mapped to each parameter (all equal by symmetry).
        per_type : list of (loss_k, attention_groups (G,))
            For the representative column of each type.
        """
        grad = np.zeros(self.n_params)
        per_type = []
        for ct in self.types:
            z = theta[ct.params]
            if ct.table is None:
                raise ParameterError("internal: exact structure without count table")
            lk, gk, ak = column_expectations(
                z, ct.table, include_query_in_softmax=self.include_query_in_softmax
            )
            sizes = np.array([r.shape[0] for r in ct.rows], dtype=np.float64)
            grad[ct.params] = ct.p_query * gk / sizes
            per_type.append((lk, ak))
        return grad, per_type


def exact_structure(
    p: Sequence[float] | np.ndarray,
    N: int,
    Z0: np.ndarray,
    *,
    include_query_in_softmax: bool = False,
    tail_mass: float = DEFAULT_TAIL_MASS,
    max_terms: int = DEFAULT_MAX_TERMS,
) -> tuple[ExactStructure, np.ndarray]:
    """Build the reduced parameterisation of exact population GD and its initial theta.

    Returns
    -------
    structure : ExactStructure
    theta0 : (n_params,)
    """
    Zarr, parr = validate_Zp(Z0, p)
    N = check_int(N, "N", minimum=1)
    K = parr.shape[0]
    _, cls = np.unique(parr, return_inverse=True)
    symmetric = _is_class_symmetric(Zarr, cls)
    index_map = np.zeros((K, K), dtype=np.int64)
    types: list[ColumnType] = []
    theta: list[float] = []
    if symmetric:
        n_cls = int(cls.max()) + 1
        for c in range(n_cls):
            members = np.flatnonzero(cls == c)
            k = int(members[0])
            rows = [np.array([k])]
            for c2 in range(n_cls):
                r = np.flatnonzero((cls == c2) & (np.arange(K) != k))
                if r.size:
                    rows.append(r)
            params = np.arange(len(theta), len(theta) + len(rows))
            theta.extend(float(Zarr[r[0], k]) for r in rows)
            # every column of this class maps its rows the same way (group of own feature,
            # then the other members of each class)
            for kk in members:
                index_map[kk, kk] = params[0]
                gi = 1
                for c2 in range(n_cls):
                    r = np.flatnonzero((cls == c2) & (np.arange(K) != kk))
                    if r.size:
                        index_map[r, kk] = params[gi]
                        gi += 1
            table = count_table(
                N,
                [parr[r[0]] for r in rows],
                [r.size for r in rows],
                tail_mass=tail_mass,
                max_terms=max_terms,
            )
            types.append(
                ColumnType(
                    columns=members,
                    representative=k,
                    rows=tuple(rows),
                    params=params,
                    table=table,
                    p_query=float(parr[k]),
                )
            )
    else:
        for k in range(K):
            rows = [np.array([k])] + [np.array([n]) for n in range(K) if n != k]
            params = np.arange(len(theta), len(theta) + K)
            theta.extend(float(Zarr[r[0], k]) for r in rows)
            for gi, r in enumerate(rows):
                index_map[r, k] = params[gi]
            table = count_table(
                N, [parr[r[0]] for r in rows], [1] * K, tail_mass=tail_mass, max_terms=max_terms
            )
            types.append(
                ColumnType(
                    columns=np.array([k]),
                    representative=k,
                    rows=tuple(rows),
                    params=params,
                    table=table,
                    p_query=float(parr[k]),
                )
            )
    structure = ExactStructure(
        index_map=index_map,
        types=tuple(types),
        n_params=len(theta),
        symmetric=symmetric,
        N=N,
        include_query_in_softmax=include_query_in_softmax,
    )
    return structure, np.asarray(theta, dtype=np.float64)


def _is_class_symmetric(Z: np.ndarray, cls: np.ndarray) -> bool:
    """True if Z[n, k] depends only on (class n, class k, n == k)."""
    K = Z.shape[0]
    ref: dict[tuple[int, int, bool], float] = {}
    for k in range(K):
        for n in range(K):
            key = (int(cls[n]), int(cls[k]), n == k)
            v = float(Z[n, k])
            if key in ref and ref[key] != v:
                return False
            ref.setdefault(key, v)
    return True
