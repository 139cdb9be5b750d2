"""Exact population loss and gradient of the softmax-attention model on Z = V^T Q V, §A.3.

All formulas here are [RECON] (``docs/provenance.md`` §11; derived in this project and checked against
autograd of the full model and finite differences in the tests, not read from the paper).

With orthonormal features and ``E[w w^T] = I``, the loss depends on Q only through
``Z = V^T Q V`` (K, K), and splits over the query feature k::

    L(Z) = sum_k p_k L_k(Z[:, k]),   L_k(z) = 1/2 E_c || alpha(z, c) - e_k ||^2,
    alpha_n = c_n exp(z_n) / D,      D = sum_m c_m exp(z_m)  (+ exp(z_k) with the query in the softmax),

where ``c ~ Mult(N, p)`` are the feature counts of the prompt. The gradient is

    dL/dZ_mk = p_k E_c[ alpha_m (alpha_m - delta_mk) - beta_m (||alpha||^2 - alpha_k) ],

with ``beta_m = alpha_m`` (prompt-only softmax) and ``beta_k = alpha_k + exp(z_k)/D`` with the query
in the softmax (``beta`` are the denominator shares, ``sum_m beta_m = 1``, hence the column-sum
invariant ``1^T dL/dZ[:, k] = 0``).

Exact expectation over the counts (no sampling). In column k, features n != k with equal
``(p_n, Z_nk)`` are exchangeable; grouping them, the loss and the group-summed gradient are linear
in ``S_g = sum_{m in g} c_m^2``, whose conditional mean given the group total T_g is
``T_g (1 - 1/s_g) + T_g^2 / s_g`` (multinomial second moment, s_g = group size). So the
expectation is a sum over the multinomial of the group totals only: 1-D (binomial) for balanced
data and dominant queries, 2-D (trinomial) for under-represented queries. The group totals are
enumerated as chained conditional binomials; terms are dropped only below ``tail_mass`` of total
probability, which bounds the error of every returned quantity by ``2 * tail_mass`` (each
integrand lies in [-2, 2]).

Mean-field limit N -> infinity: ``alpha = softmax(Z[:, k] + log p)`` (the query's own logit has
weight 1/N -> 0, so both softmax variants share it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from iclkit.theory.validation import ParameterError, check_int, check_real

__all__ = [
    "DEFAULT_MAX_TERMS",
    "DEFAULT_TAIL_MASS",
    "ColumnTable",
    "PopulationMoments",
    "column_expectations",
    "count_table",
    "mean_field_moments",
    "population_moments",
]

#: Probability mass of the count distribution that may be dropped (error <= 2 x this).
DEFAULT_TAIL_MASS = 1e-15
#: Size limit of one count table (memory guard).
DEFAULT_MAX_TERMS = 2_000_000


@dataclass(frozen=True)
class PopulationMoments:
    """Population loss, gradient and expected attention at one Z.

    Attributes
    ----------
    loss : float
        L(Z) = sum_k p_k L_k.
    loss_per_query : (K,)
        L_k, the loss of prompts whose query is feature k.
    grad : (K, K)
        dL/dZ.
    attention : (K, K)
        ``attention[n, k] = E_c[alpha_n]`` for query feature k (total attention on feature n).
    dropped_mass : float
        Largest probability mass left out of a count sum (0 for the mean field).
    """

    loss: float
    loss_per_query: np.ndarray
    grad: np.ndarray
    attention: np.ndarray
    dropped_mass: float = 0.0


@dataclass(frozen=True)
class ColumnTable:
    """Distribution of the group totals of one column: ``totals (M, G)``, ``prob (M,)``.

    ``sq_counts (M, G)`` holds ``E[sum_{m in g} c_m^2 | totals]``; group 0 is the query feature.
    """

    totals: np.ndarray
    prob: np.ndarray
    sq_counts: np.ndarray
    dropped_mass: float


def count_table(
    N: int,
    group_probs: Sequence[float],
    sizes: Sequence[int],
    *,
    tail_mass: float = DEFAULT_TAIL_MASS,
    max_terms: int = DEFAULT_MAX_TERMS,
) -> ColumnTable:
    """Enumerate the multinomial of group totals ``T ~ Mult(N, (s_g p_g)_g)``.

    Parameters
    ----------
    N : int
        Prompt length.
    group_probs : (G,)
        Per-feature probability p_g of each group's members.
    sizes : (G,)
        Group sizes s_g (group 0 is the query feature, size 1).
    tail_mass : float
        Total probability that may be dropped (smallest terms first), in [0, 1e-6].
    max_terms : int
        Refuse (ParameterError) when the enumeration would exceed this many terms.
    """
    N = check_int(N, "N", minimum=1)
    tail_mass = check_real(tail_mass, "tail_mass", minimum=0.0, maximum=1e-6)
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    probs = np.asarray(group_probs, dtype=np.float64) * sizes_arr
    G = probs.shape[0]
    if G < 1 or np.any(sizes_arr < 1):
        raise ParameterError("sizes must be positive group sizes")
    probs = probs / probs.sum()
    budget = tail_mass / max(G - 1, 1)
    totals = np.zeros((1, 0), dtype=np.int64)
    logp = np.zeros(1)
    remaining = np.full(1, N, dtype=np.int64)
    mass_left = 1.0
    dropped = 0.0
    for g in range(G - 1):
        r = min(max(probs[g] / mass_left, 0.0), 1.0) if mass_left > 0 else 0.0
        mass_left = max(mass_left - probs[g], 0.0)
        lengths = remaining + 1
        n_new = int(lengths.sum())
        if n_new > max_terms:
            raise ParameterError(
                f"N: the exact count expectation needs more than {max_terms} terms "
                f"(N={N}, {G} exchangeable groups); use method='mean-field' or 'monte-carlo', "
                "a smaller N, or a symmetric initialisation"
            )
        parent = np.repeat(np.arange(totals.shape[0]), lengths)
        offsets = np.cumsum(lengths) - lengths
        t_g = np.arange(n_new) - np.repeat(offsets, lengths)
        n_par = remaining[parent]
        logp_new = logp[parent] + _binom_logpmf(t_g, n_par, r)
        totals = np.concatenate([totals[parent], t_g[:, None]], axis=1)
        remaining = n_par - t_g
        logp = logp_new
        # drop the smallest terms while their total mass stays within the budget
        p_now = np.exp(logp)
        order = np.argsort(p_now)
        csum = np.cumsum(p_now[order])
        n_drop = int(np.searchsorted(csum, budget, side="right"))
        if n_drop > 0:
            dropped += float(csum[n_drop - 1])
            keep = np.sort(order[n_drop:])
            totals, logp, remaining = totals[keep], logp[keep], remaining[keep]
    totals = np.concatenate([totals, remaining[:, None]], axis=1).astype(np.float64)
    q = 1.0 / sizes_arr.astype(np.float64)
    sq_counts = totals * (1.0 - q) + totals**2 * q
    return ColumnTable(totals=totals, prob=np.exp(logp), sq_counts=sq_counts, dropped_mass=dropped)


def _binom_logpmf(k: np.ndarray, n: np.ndarray, r: float) -> np.ndarray:
    out = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if r <= 0.0:
            return np.where(k == 0, 0.0, -np.inf)
        if r >= 1.0:
            return np.where(k == n, 0.0, -np.inf)
        return out + k * np.log(r) + (n - k) * np.log1p(-r)


def column_expectations(
    z: np.ndarray, table: ColumnTable, *, include_query_in_softmax: bool
) -> tuple[float, np.ndarray, np.ndarray]:
    """Expected loss, group-summed gradient and group attention of one column.

    Parameters
    ----------
    z : (G,)
        Logit of each group (group 0: the query feature).
    table : ColumnTable

    Returns
    -------
    loss : float
        ``E[1/2 ||alpha - e_k||^2]``.
    grad : (G,)
        ``E[sum_{m in g} d ell / d z_m]`` (without the factor p_k).
    attention : (G,)
        ``E[sum_{m in g} alpha_m]``.
    """
    T = table.totals
    e = np.exp(z - z.max())
    D = T @ e
    if include_query_in_softmax:
        D = D + e[0]
    if not np.all(D > 0) or not np.all(np.isfinite(D)):
        return _column_expectations_log(z, table, include_query_in_softmax)
    # Everything is reduced to matrix-vector products with the (M, G) tables:
    # b_g = T_g e_g / D, E[sum_g alpha^2] = S_g e_g^2 / D^2, a0 = b_0, r = ||alpha||^2 - a0.
    inv = 1.0 / D
    e2 = e * e
    w1 = table.prob * inv
    w2 = w1 * inv
    norm2 = (table.sq_counts @ e2) * inv * inv
    a0 = T[:, 0] * e[0] * inv
    w3 = w1 * (norm2 - a0)
    TtW = T.T @ np.stack([w1, w3], axis=1)  # (G, 2)
    attention = e * TtW[:, 0]
    sq = e2 * (table.sq_counts.T @ w2)
    grad = sq - e * TtW[:, 1]
    mean_a0 = attention[0]
    grad[0] -= mean_a0
    if include_query_in_softmax:
        grad[0] -= e[0] * float(w3.sum())
    loss = 0.5 * (1.0 - 2.0 * mean_a0 + float(sq.sum()))
    return loss, grad, attention


def _column_expectations_log(
    z: np.ndarray, table: ColumnTable, include_query_in_softmax: bool
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log-space version of :func:`column_expectations` (for extreme logit gaps)."""
    T = table.totals
    with np.errstate(divide="ignore"):
        logw = np.log(T) + z  # (M, G), -inf where T_g = 0
    cols = [logw]
    if include_query_in_softmax:
        cols.append(np.full((T.shape[0], 1), z[0]))
    allw = np.concatenate(cols, axis=1)
    m = allw.max(axis=1, keepdims=True)
    logD = (m + np.log(np.exp(allw - m).sum(axis=1, keepdims=True)))[:, 0]
    b = np.exp(logw - logD[:, None])
    with np.errstate(divide="ignore"):
        sq = np.exp(np.log(table.sq_counts) + 2.0 * z - 2.0 * logD[:, None])
    a0 = b[:, 0]
    norm2 = sq.sum(axis=1)
    beta = b.copy()
    if include_query_in_softmax:
        beta[:, 0] += np.exp(z[0] - logD)
    ell = 0.5 * ((1.0 - a0) ** 2 + norm2 - sq[:, 0])
    grad_terms = sq - beta * (norm2 - a0)[:, None]
    grad_terms[:, 0] -= a0
    P = table.prob
    return float(P @ ell), P @ grad_terms, P @ b


def validate_Zp(Z: np.ndarray, p: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Z, p)`` as float64 arrays, Z (K, K) finite and p a probability vector (K,)."""
    Zarr = np.asarray(Z, dtype=np.float64)
    parr = np.asarray(p, dtype=np.float64).reshape(-1)
    K = parr.shape[0]
    if K < 2:
        raise ParameterError(f"p must have at least 2 entries, got {K}")
    if Zarr.shape != (K, K):
        raise ParameterError(f"Z must have shape ({K}, {K}), got {Zarr.shape}")
    if not np.all(np.isfinite(Zarr)):
        raise ParameterError("Z must be finite")
    if not np.all(np.isfinite(parr)) or np.any(parr <= 0) or abs(parr.sum() - 1.0) > 1e-8:
        raise ParameterError("p must be a probability vector with positive entries")
    return Zarr, parr


def population_moments(
    Z: np.ndarray,
    p: Sequence[float] | np.ndarray,
    N: int,
    *,
    include_query_in_softmax: bool = False,
    tail_mass: float = DEFAULT_TAIL_MASS,
    max_terms: int = DEFAULT_MAX_TERMS,
) -> PopulationMoments:
    """Exact population loss, gradient and attention at any Z (finite N).

    In each column the rows n != k are grouped by equal ``(p_n, Z_nk)``; with no such
    symmetry every row is its own group and the sum runs over all compositions of N into K
    parts (feasible for small K and N only; ``max_terms`` guards it).

    Parameters
    ----------
    Z : (K, K)
        ``Z = V^T Q V``; column k holds the logits of query feature k.
    p : (K,)
        Feature probabilities.
    N : int
        Prompt length.
    """
    Zarr, parr = validate_Zp(Z, p)
    N = check_int(N, "N", minimum=1)
    K = parr.shape[0]
    grad = np.zeros((K, K))
    attention = np.zeros((K, K))
    loss_k = np.zeros(K)
    dropped = 0.0
    for k in range(K):
        groups = _column_groups(Zarr[:, k], parr, k)
        sizes = [len(g) for g in groups]
        table = count_table(
            N, [parr[g[0]] for g in groups], sizes, tail_mass=tail_mass, max_terms=max_terms
        )
        dropped = max(dropped, table.dropped_mass)
        zg = np.array([Zarr[g[0], k] for g in groups])
        lk, gk, ak = column_expectations(
            zg, table, include_query_in_softmax=include_query_in_softmax
        )
        loss_k[k] = lk
        for gi, rows in enumerate(groups):
            grad[rows, k] = parr[k] * gk[gi] / len(rows)
            attention[rows, k] = ak[gi] / len(rows)
    return PopulationMoments(
        loss=float(parr @ loss_k),
        loss_per_query=loss_k,
        grad=grad,
        attention=attention,
        dropped_mass=dropped,
    )


def _column_groups(col: np.ndarray, p: np.ndarray, k: int) -> list[list[int]]:
    groups: dict[tuple[float, float], list[int]] = {}
    for n in range(col.shape[0]):
        if n != k:
            groups.setdefault((float(p[n]), float(col[n])), []).append(n)
    return [[k], *groups.values()]


def mean_field_moments(Z: np.ndarray, p: Sequence[float] | np.ndarray) -> PopulationMoments:
    """Mean-field (N -> infinity) loss, gradient and attention: ``alpha = softmax(Z[:, k] + log p)``.

    Vectorised over all K columns (independent of the grouping code of
    :func:`population_moments`, which the tests use as a cross-check).
    """
    Zarr, parr = validate_Zp(Z, p)
    logits = Zarr + np.log(parr)[:, None]
    logits = logits - logits.max(axis=0, keepdims=True)
    A = np.exp(logits)
    A /= A.sum(axis=0, keepdims=True)  # A[n, k] = alpha_n for query k
    K = parr.shape[0]
    eye = np.eye(K)
    norm2 = (A * A).sum(axis=0)
    a_diag = np.diagonal(A)
    loss_k = 0.5 * ((A - eye) ** 2).sum(axis=0)
    grad = A * ((A - eye) - (norm2 - a_diag)[None, :]) * parr[None, :]
    return PopulationMoments(
        loss=float(parr @ loss_k), loss_per_query=loss_k, grad=grad, attention=A
    )
