"""Tests of the propagated general-K certificate (iclkit.constructions.surrogate_em_bounds).

The transformer's estimates are read from its hidden states after every layer (attention code,
both architectures); the references are exact gradient EM (``algorithms.gradient_em``, checked
against the bound's own exact iterates) and the certificate of ``general_gap_bound``. The
pointwise error bounds of the ReLU sums are checked against a dense evaluation.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.constructions import algorithms as A
from iclkit.constructions.gradient_em_transformer import build_gradient_em_transformer
from iclkit.constructions.gradient_em_transformer.measure import MeasureSetting, mixture_prompts
from iclkit.constructions.gradient_em_transformer.nonlinearities import general_relu_sums
from iclkit.constructions.relu_approx import ReluSum
from iclkit.constructions.surrogate_em_bounds import SumError, general_gap_bound
from iclkit.theory.validation import ParameterError

f64 = torch.float64
ARCHS = ("attention-only", "attention-mlp")
PIS = {2: (0.6, 0.4), 3: (0.5, 0.3, 0.2)}
#: Setting of the per-layer test (docs table): ||beta_k|| = 1, init at relative distance 0.3,
#: the residual domain of psi 12 sigma wide on each side (the default 6 leaves a floor ~1e-2).
SETTING = MeasureSetting(d=5, n=300, sigma=0.1, B=4, alpha=1.0)
R_RES, M_TERMS, T_OUTER = 12.0, 64, 3
#: Round-off slack of the forward pass: the transformer equals its surrogate to 1e-10 relative
#: (``test_gradient_em_transformer_mlp``, observed ~1e-14).
SLACK = 1e-10

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prompts(s: MeasureSetting, K: int):  # type: ignore[no-untyped-def]
    X, y, init, xq, _ = mixture_prompts(s, K, PIS[K], symmetric=False)
    return X, y, init, xq


def _layer_ratio(tf, X, y, init, xq, sums, T_inner=1):  # type: ignore[no-untyped-def]
    """max over layers l, prompts and components of ``||beta_k(l) - beta_k|| / (bound + slack)``:
    ``beta_k(l)`` the query token's estimate after layer l, ``beta_k`` the exact gradient-EM
    iterate after the inner steps layer l has completed. Inside the blocks of a gradient step
    (spread over several blocks when it has more than 4 heads) a component is committed in one
    of them, so there it may match the next iterate instead. Returns (ratio, certificate)."""
    gb = general_gap_bound(
        X, y, init, tf.sigma, tf.pi, sums, T_outer=tf.T_outer, T_inner=T_inner, alpha=tf.alpha
    )
    ends = [layer for kind, _t, _s, layer in tf.report.block_ends if kind == "inner"]
    starts = [prev for kind, *_, prev in _previous(tf.report.block_ends) if kind == "inner"]
    K = init.shape[1]
    zero = torch.zeros(init.shape[:2], dtype=f64)
    refs = [(init, zero)] + [
        (gb.exact[:, t, s_], gb.bound[:, t, s_]) for t in range(tf.T_outer) for s_ in range(T_inner)
    ]
    rows = tf.model.token_states(tf.embed(X, y, init, xq), range(tf.report.L + 1))
    worst = 0.0
    for layer, row in rows.items():
        done = sum(1 for e in ends if e <= layer)
        cands = [refs[done]]
        if done < len(ends) and starts[done] < layer:  # inside the blocks of step done + 1
            cands.append(refs[done + 1])
        est = torch.stack([row[:, tf.layout.beta(k)] for k in range(K)], 1).to(f64)
        ratios = [
            (est - ref).norm(dim=-1) / (bound + SLACK * ref.norm(dim=-1)) for ref, bound in cands
        ]
        worst = max(worst, float(torch.stack(ratios).amin(0).max()))
    return worst, gb


def _previous(ends):  # type: ignore[no-untyped-def]
    """(kind, ..., layer where the phase starts) for each block end."""
    prev = 0
    for kind, t, s_, layer in ends:
        yield kind, t, s_, prev
        prev = layer


def test_exact_iterates_equal_gradient_em() -> None:
    X, y, init, _ = _prompts(SETTING, 3)
    sums = general_relu_sums(16, R_residual=R_RES)
    gb = general_gap_bound(X, y, init, 0.1, PIS[3], sums, T_outer=3, T_inner=2, alpha=0.7)
    pis = torch.tensor([PIS[3]] * SETTING.B, dtype=f64)
    for t in range(3):
        ref = A.gradient_em(X, y, init, 0.1, pis, T_outer=t + 1, T_inner=2, alpha=0.7).betas
        torch.testing.assert_close(gb.exact[:, t, -1], ref, rtol=1e-12, atol=1e-12)
    assert gb.bound.shape == (SETTING.B, 3, 2, 3) and bool((gb.bound > 0).all())
    assert gb.outer().shape == (SETTING.B, 3)


@pytest.mark.parametrize(
    ("arch", "K", "T_inner", "alpha"),
    [(arch, K, 1, 1.0) for arch in ARCHS for K in (2, 3)] + [("attention-mlp", 3, 2, 0.5)],
)
def test_general_estimate_within_propagated_certificate_at_every_layer(
    arch: str, K: int, T_inner: int, alpha: float
) -> None:
    s = SETTING
    X, y, init, xq = _prompts(s, K)
    tf = build_gradient_em_transformer(
        s.d, K, s.n, s.sigma, T_OUTER, T_inner, alpha, M_TERMS, symmetric=False, pi=PIS[K],
        R_residual=R_RES, architecture=arch,
    )  # fmt: skip
    ratio, gb = _layer_ratio(tf, X, y, init, xq, tf.relu_sums, T_inner)
    assert ratio <= 1.0, ratio
    assert float(gb.bound.max()) < 0.05  # informative: ||beta_k|| = 1 (measured <= 1.2e-2)


@settings(max_examples=6)  # each example builds and runs a transformer
@given(
    d=st.integers(2, 6),
    extra=st.integers(20, 200),
    K=st.sampled_from([2, 3]),
    sigma=st.sampled_from([0.1, 0.2, 0.4]),
    T_inner=st.integers(1, 2),
    alpha=st.sampled_from([0.5, 1.0]),
    M=st.sampled_from([16, 32, 64]),
    R=st.sampled_from([4.0, 6.0, 12.0]),
    seed=st.integers(0, 10_000),
)
def test_general_certificate_holds_on_random_prompts(
    d: int, extra: int, K: int, sigma: float, T_inner: int, alpha: float, M: int, R: float,
    seed: int,
) -> None:  # fmt: skip
    s = MeasureSetting(d=d, n=d + extra, sigma=sigma, B=2, alpha=alpha, seed=seed)
    X, y, init, xq = _prompts(s, K)
    tf = build_gradient_em_transformer(
        d, K, s.n, sigma, 3, T_inner, alpha, M, symmetric=False, pi=PIS[K], R_residual=R,
        architecture="attention-mlp",
    )  # fmt: skip
    got = tf.block_iterates(X, y, init, xq)
    gb = general_gap_bound(X, y, init, sigma, PIS[K], tf.relu_sums, T_outer=3, T_inner=T_inner,
                           alpha=alpha)  # fmt: skip
    for t, row in enumerate(got):
        for s_, est in enumerate(row):
            ref = gb.exact[:, t, s_]
            gap = (est - ref).norm(dim=-1)
            assert bool((gap <= gb.bound[:, t, s_] + SLACK * ref.norm(dim=-1)).all())


@pytest.mark.fault
def test_fault_general_estimate_within_propagated_certificate_detects_coarser_estep() -> None:
    # The transformer built with M = 16 ReLU terms, checked against the certificate of the
    # M = 128 sums: its gap exceeds that certificate (measured ratio 9.5; against its own
    # certificate the ratio is 0.18).
    s = SETTING
    X, y, init, xq = _prompts(s, 3)
    coarse = build_gradient_em_transformer(
        s.d, 3, s.n, s.sigma, 2, 1, s.alpha, 16, symmetric=False, pi=PIS[3], R_residual=R_RES,
        architecture="attention-mlp",
    )  # fmt: skip
    fine = general_relu_sums(128, R_residual=R_RES)
    ratio, _ = _layer_ratio(coarse, X, y, init, xq, fine)
    assert ratio > 1.0, ratio


# --------------------------------------------------------------------------- pointwise bounds
def _sums(M: int) -> dict[str, ReluSum]:
    return general_relu_sums(M, R_residual=6.0)


@given(
    name=st.sampled_from(["psi", "softplus", "exp"]),
    M=st.sampled_from([8, 32]),
    centre=st.floats(-40.0, 40.0),
    width=st.floats(0.0, 20.0),
)
def test_sum_error_bounds_hold_on_a_dense_grid(
    name: str, M: int, centre: float, width: float
) -> None:
    err = SumError.of(name, _sums(M)[name])
    if name == "exp":
        centre = min(centre, 20.0)  # keep e^z finite and of a size float64 resolves
    a, b = centre - width / 2, centre + width / 2
    z = torch.linspace(a, b, 4001, dtype=f64)
    f, fa = err.f(z), err.approx(z)
    ta, tb = torch.tensor([a], dtype=f64), torch.tensor([b], dtype=f64)
    # the bound is exact at the ends, so allow float64 round-off of the values only
    tol = 1e-12 * (1 + float(f.abs().max()))
    lo, hi = err.value_range(ta, tb)
    assert float(lo) - tol <= float((f - fa).min()) and float((f - fa).max()) <= float(hi) + tol
    lo_s, hi_s = err.slope_range(ta, tb)
    zs = z[::10]  # 401 points: secant slopes of the piecewise-linear sum
    slopes = torch.diff(err.approx(zs)) / torch.diff(zs)
    if width > 1e-6:  # finite differences: the round-off of the M-term sums over the spacing
        tol_s = 1e-9 + 1e-13 * (1 + float(fa.abs().max())) / (width / 400)
        assert float(slopes.min()) >= float(lo_s) - tol_s
        assert float(slopes.max()) <= float(hi_s) + tol_s
    if name == "psi":
        lo_v, hi_v = err.convex_range(ta, tb)
        assert float(lo_v) <= float(fa.min()) + tol and float(fa.max()) <= float(hi_v) + tol
        m = torch.tensor([max(abs(a), abs(b), 1.0)], dtype=f64)
        zz = torch.linspace(-float(m), float(m), 4001, dtype=f64)
        ds = torch.diff(err.approx(zz)) / torch.diff(zz) - err.df(zz[:-1] + 0.5 * torch.diff(zz))
        step = 2 * float(m) / 4000  # g' = z moves by step / 2 within a grid cell
        assert float(ds.abs().max()) <= float(err.slope_sup(m)) + step + 1e-9


def test_sum_error_rejects_unknown_or_unproven_sums() -> None:
    sums = _sums(8)
    with pytest.raises(ParameterError, match="relu_sums"):
        SumError.of("tanh", sums["psi"])
    X, y, init, _ = _prompts(MeasureSetting(B=1), 2)
    with pytest.raises(ParameterError, match="relu_sums"):
        general_gap_bound(X, y, init, 0.1, PIS[2], {"psi": sums["psi"]}, T_outer=1, T_inner=1,
                          alpha=1.0)  # fmt: skip
    with pytest.raises(ParameterError, match="pi"):
        general_gap_bound(X, y, init, 0.1, (1.0,), sums, T_outer=1, T_inner=1, alpha=1.0)
