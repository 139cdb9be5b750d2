"""Tests of the exact population loss/gradient on Z (iclkit.dynamics.softmax.population)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom, multinomial

from iclkit.dynamics.softmax.exact import exact_structure
from iclkit.dynamics.softmax.population import (
    count_table,
    mean_field_moments,
    population_moments,
)
from iclkit.theory.validation import ParameterError


def test_count_table_is_the_multinomial():
    # independent reference: scipy's multinomial pmf on every listed composition
    N, probs, sizes = 7, [0.2, 0.15, 0.1], [1, 2, 3]
    t = count_table(N, probs, sizes, tail_mass=0.0)
    P = np.array(probs) * np.array(sizes)
    ref = multinomial.pmf(t.totals, N, P / P.sum())
    assert np.allclose(t.prob, ref, rtol=1e-12, atol=0)
    assert abs(t.prob.sum() - 1.0) < 1e-13
    assert t.totals.shape[0] == 36  # C(7 + 2, 2) compositions
    # E[sum_{m in g} c_m^2 | T_g] for T_g spread uniformly over s_g members
    g = t.totals[:, 2]
    assert np.allclose(t.sq_counts[:, 2], g * (1 - 1 / 3) + g**2 / 3)


def test_count_table_truncation_bounds_dropped_mass():
    t = count_table(1000, [0.5 / 79, 0.5, 0.5 / 79], [1, 1, 78], tail_mass=1e-15)
    assert t.dropped_mass <= 1e-15
    assert abs(t.prob.sum() + t.dropped_mass - 1.0) < 1e-12
    assert t.totals.shape[0] < 20000


def test_balanced_gradient_matches_one_dimensional_binomial_sum():
    """docs/provenance.md §11: with Z_kk = A, Z_nk = B = -A/(K-1), s = A - B, c ~ Bin(N, 1/K),
    R = N - c, q = 1/(K-1): alpha_k = c e^s / (c e^s + R),
    S2 = (R(1-q) + R^2 q) / (c e^s + R)^2, dL/dA = -(1/K) E[alpha_k((1-alpha_k)^2 + S2)]."""
    K, N, A = 6, 25, 0.7
    B = -A / (K - 1)
    Z = np.full((K, K), B) + (A - B) * np.eye(K)
    m = population_moments(Z, np.full(K, 1 / K), N)
    s, q = A - B, 1 / (K - 1)
    c = np.arange(N + 1)
    R = N - c
    D = c * np.exp(s) + R
    ak = c * np.exp(s) / D
    S2 = (R * (1 - q) + R**2 * q) / D**2
    pmf = binom.pmf(c, N, 1 / K)
    dA = -(1 / K) * pmf @ (ak * ((1 - ak) ** 2 + S2))
    loss = pmf @ (0.5 * ((1 - ak) ** 2 + S2))
    assert np.allclose(np.diagonal(m.grad), dA, rtol=1e-12, atol=1e-15)
    assert abs(m.loss - loss) < 1e-13
    # all target gradients equal; off-target = -target/(K-1) (column-sum invariant)
    off = m.grad[~np.eye(K, dtype=bool)]
    assert np.allclose(off, -dA / (K - 1), rtol=1e-11, atol=1e-16)


@given(K=st.integers(2, 4), N=st.integers(1, 6), query=st.booleans(), seed=st.integers(0, 10**6))
def test_gradient_columns_sum_to_zero(K, N, query, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(K)) * 0.9 + 0.1 / K
    Z = 2 * rng.standard_normal((K, K))
    m = population_moments(Z, p, N, include_query_in_softmax=query)
    assert np.abs(m.grad.sum(axis=0)).max() < 1e-14
    # expected attention of each query sums to 1 (prompt only) or < 1 (query takes a share)
    tot = m.attention.sum(axis=0)
    if query:
        assert np.all(tot < 1.0)
    else:
        assert np.allclose(tot, 1.0, atol=1e-13)
    mf = mean_field_moments(Z, p)
    assert np.abs(mf.grad.sum(axis=0)).max() < 1e-14


def test_exact_converges_to_mean_field_as_N_grows():
    rng = np.random.default_rng(1)
    K = 3
    p = np.array([0.5, 0.3, 0.2])
    Z = rng.standard_normal((K, K))
    mf = mean_field_moments(Z, p)
    errs = [np.abs(population_moments(Z, p, N).grad - mf.grad).max() for N in (50, 200, 800)]
    # the finite-N correction is O(1/N): each 4x in N cuts the error by about 4 (allow >= 3)
    assert errs[0] / errs[1] > 3 and errs[1] / errs[2] > 3
    assert errs[2] < 1e-3


def test_exact_structure_reduces_balanced_and_imbalanced():
    K, N = 8, 40
    s, th = exact_structure(np.full(K, 1 / K), N, np.zeros((K, K)))
    assert s.symmetric and s.n_params == 2 and len(s.types) == 1
    p = np.array([0.5] + [0.5 / (K - 1)] * (K - 1))
    s, th = exact_structure(p, N, np.zeros((K, K)))
    assert s.symmetric and s.n_params == 5  # dominant column: 2 logits; others: 3
    # the reduced gradient equals the full-Z gradient at a symmetric point (grouping by value)
    th = np.array([0.3, -0.3 / (K - 1), 0.9, -0.5, -0.4 / (K - 2)])
    order = {ct.p_query: ct for ct in s.types}
    th_map = np.zeros(5)
    th_map[order[0.5].params] = th[:2]
    th_map[order[p[1]].params] = th[2:]
    Z = s.expand(th_map)
    g, _ = s.step_quantities(th_map)
    full = population_moments(Z, p, N)
    assert np.allclose(s.expand(g), full.grad, rtol=1e-12, atol=1e-16)
    # a non-symmetric start falls back to one parameter per entry
    s2, _ = exact_structure(np.full(3, 1 / 3), 4, np.arange(9.0).reshape(3, 3))
    assert not s2.symmetric and s2.n_params == 9


def test_bad_input_raises():
    with pytest.raises(ParameterError, match="^Z"):
        population_moments(np.zeros((2, 3)), [0.5, 0.5], 3)
    with pytest.raises(ParameterError, match="^Z"):
        population_moments(np.full((2, 2), np.nan), [0.5, 0.5], 3)
    with pytest.raises(ParameterError, match="^p"):
        population_moments(np.zeros((2, 2)), [0.7, 0.7], 3)
    with pytest.raises(ParameterError, match="^N"):
        population_moments(np.zeros((2, 2)), [0.5, 0.5], 0)
    with pytest.raises(ParameterError, match="^tail_mass"):
        count_table(5, [0.5, 0.5], [1, 1], tail_mass=0.1)
    with pytest.raises(ParameterError, match="^N"):
        population_moments(
            np.arange(36.0).reshape(6, 6) / 36, np.full(6, 1 / 6), 400, max_terms=10**5
        )
