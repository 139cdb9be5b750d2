"""Tests of the attention-mlp architecture of the Theorem 3.1 construction, of the per-layer
certificate against exact gradient EM and of the float32 forward pass
(iclkit.constructions.gradient_em_transformer: mlp, mlp_build, measure).

References are computed without the attention code: the surrogate gradient EM as sums over the
examples (``surrogate_em``), exact gradient EM (``algorithms.gradient_em``), the propagated
certificate (``surrogate_em.symmetric_gap_bound``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit import cli
from iclkit.constructions import algorithms as A
from iclkit.constructions.attention import PathCounts
from iclkit.constructions.gradient_em_transformer import (
    MAX_HEADS,
    ConstructionConfig,
    build_gradient_em_transformer,
    layer_count,
    run_gradient_em_transformer,
    surrogate_iterates,
)
from iclkit.constructions.gradient_em_transformer.measure import (
    MeasureSetting,
    float32_error_bound,
    symmetric_prompts,
)
from iclkit.constructions.surrogate_em import symmetric_gap_bound
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

f64 = torch.float64
ARCHS = ("attention-only", "attention-mlp")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Both forward passes equal the surrogate up to float64 summation order (observed <= 2e-14
# relative); 1e-10 leaves room for the 1/sigma^2 amplification of the E-step at sigma = 0.3.
REL = 1e-10


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    num = (a - b).flatten(1).norm(dim=1)
    return float((num / b.flatten(1).norm(dim=1).clamp_min(1e-300)).max())


def _prompts(d: int, K: int, n: int, sigma: float, sym: bool, seed: int, B: int = 1):  # type: ignore[no-untyped-def]
    pi = (0.5, 0.5) if K == 2 else (0.5, 0.3, 0.2)
    b = sample_mor(MoRConfig(d=d, K=K, n=n, sigma=sigma, pi=pi, symmetric=sym), B, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.nn.functional.normalize(torch.randn(b.betas.shape, generator=g, dtype=f64), dim=-1)
    init = b.betas + 0.3 * u * b.betas.norm(dim=-1, keepdim=True)
    if sym:
        init = torch.stack([init[:, 0], -init[:, 0]], 1)
    return b, pi, init


@settings(max_examples=8)  # each example builds and runs two transformers
@given(
    d=st.integers(2, 8),
    extra=st.integers(1, 150),
    sym_K=st.sampled_from([(True, 2), (False, 3)]),
    T_inner=st.integers(1, 2),
    M=st.integers(4, 24),
    seed=st.integers(0, 10_000),
)
def test_both_architectures_equal_the_surrogate_at_every_block(
    d: int, extra: int, sym_K: tuple[bool, int], T_inner: int, M: int, seed: int
) -> None:
    sym, K = sym_K
    n = d + extra
    b, pi, init = _prompts(d, K, n, 0.3, sym, seed)
    for arch in ARCHS:
        tf = build_gradient_em_transformer(
            d, K, n, 0.3, 2, T_inner, 0.8, M, symmetric=sym, pi=pi, architecture=arch
        )
        got = tf.block_iterates(b.X_train, b.y_train, init, b.x_query)
        ref = surrogate_iterates(tf, b.X_train, b.y_train, init)  # same ReLU sums, no attention
        for row_g, row_r in zip(got, ref, strict=True):
            for g_, r_ in zip(row_g, row_r, strict=True):
                assert _rel(g_, r_) <= REL, arch
        assert tf.estimate_copies_spread(b.X_train, b.y_train, init, b.x_query) <= 1e-10


@pytest.mark.parametrize(("sym", "K"), [(True, 2), (False, 2), (False, 3), (False, 5)])
def test_mlp_depth_is_independent_of_relu_terms_and_heads_at_most_four(sym: bool, K: int) -> None:
    c2 = math.ceil(2 * K / 4)  # independent restatement of the documented formula
    for T_outer, T_inner in ((1, 1), (3, 2)):
        expected = T_outer * (1 + T_inner) + 1 if sym else T_outer * (c2 + K + 2 * T_inner * c2) + 1
        Ls = set()
        for M in (8, 16, 128):
            tf = build_gradient_em_transformer(
                3, K, 10, 0.5, T_outer, T_inner, 1.0, M, symmetric=sym,
                architecture="attention-mlp",
            )  # fmt: skip
            r = tf.report
            assert r.architecture == "attention-mlp" and "independent of M" in r.layer_formula
            assert all(0 <= h <= MAX_HEADS == 4 for h in r.heads_per_layer)
            assert r.max_heads_per_layer <= 4 and len(r.mlp_widths) == r.L
            assert max(r.mlp_widths) >= M  # the MLP carries the M ReLU terms
            Ls.add(r.L)
            args = (K, T_outer, T_inner, M)
            assert r.L == layer_count(*args, symmetric=sym, architecture="attention-mlp")
            only = layer_count(*args, symmetric=sym)
            assert only > r.L or M == 8  # attention-only grows with M
        assert Ls == {expected}


def test_attention_only_layer_formula_still_reported() -> None:
    tf = build_gradient_em_transformer(3, 2, 10, 0.5, 2, 1, 1.0, 30, symmetric=True)
    assert tf.report.architecture == "attention-only" and tf.report.mlp_widths == ()
    assert tf.report.L == 2 * (math.ceil(32 / 4) + 1) + 1


@pytest.mark.parametrize(("sym", "K"), [(True, 2), (False, 3)])
def test_mlp_structured_attention_equals_dense(sym: bool, K: int) -> None:
    b, pi, init = _prompts(4, K, 50, 0.3, sym, 3, B=2)
    tf = build_gradient_em_transformer(
        4, K, 50, 0.3, 2, 2, 0.8, 10, symmetric=sym, pi=pi, architecture="attention-mlp"
    )
    counts = PathCounts()
    H = tf.embed(b.X_train, b.y_train, init, b.x_query)
    auto = tf.model(H, path="auto", counts=counts)
    dense = tf.model(H, path="dense")
    assert counts.dense == 0 and counts.structured == sum(tf.report.heads_per_layer)
    assert _rel(auto, dense) <= 1e-12
    states = tf.model.hidden_states(H)
    assert len(states) == tf.report.L + 1 and torch.equal(states[-1], auto)


# --------------------------------------------------------------------------- certificate
def _exact_iterates(X, y, init, sigma, T, alpha):  # type: ignore[no-untyped-def]
    """[beta_0, ..., beta_T] of exact symmetric gradient EM (one call per iteration count)."""
    out = [init[:, 0]]
    for t in range(1, T + 1):
        r = A.gradient_em(X, y, init, sigma, T_outer=t, T_inner=1, alpha=alpha, symmetric=True)
        out.append(r.betas[:, 0])
    return out


def _certificate_ratio(tf, X, y, init, xq, sigma, eps, T, alpha):  # type: ignore[no-untyped-def]
    """max over layers l and prompts of ``||beta(l) - beta_t|| / (bound_t + slack)``: beta(l) the
    query token's estimate after layer l, t the outer iterations completed by layer l."""
    exact = _exact_iterates(X, y, init, sigma, T, alpha)
    bound = symmetric_gap_bound(X, y, exact[:-1], sigma, eps, T_inner=1, alpha=alpha)  # (B, T)
    bound = torch.cat([torch.zeros_like(bound[:, :1]), bound], 1)  # t = 0: the input, exact
    ends = [layer for kind, _t, _s, layer in tf.report.block_ends if kind == "inner"]
    L = tf.report.L
    rows = tf.model.token_states(tf.embed(X, y, init, xq), range(L + 1))  # every layer
    sl = tf.layout.beta(0)
    worst = 0.0
    for layer in range(L + 1):
        t = sum(1 for e in ends if e <= layer)  # outer iterations completed
        gap = (rows[layer][:, sl].to(f64) - exact[t]).norm(dim=-1)
        # round-off slack of the forward pass (1e-10 relative, see REL)
        slack = 1e-10 * exact[t].norm(dim=-1)
        worst = max(worst, float((gap / (bound[:, t] + slack)).max()))
    return worst, bound


@pytest.mark.parametrize("arch", ARCHS)
def test_estimate_within_propagated_certificate_at_every_layer(arch: str) -> None:
    # Symmetric construction (general K: test_surrogate_em_bounds.py, certificate
    # surrogate_em_bounds.general_gap_bound). Setting of the docs' table: d = 5, n = 300,
    # sigma = 0.1, alpha = 1, M = 64 (bound non-vacuous there).
    s = MeasureSetting(B=6)
    X, y, init, xq = symmetric_prompts(s)
    T, M = 5, 64
    tf = build_gradient_em_transformer(
        s.d, 2, s.n, s.sigma, T, 1, s.alpha, M, symmetric=True, architecture=arch
    )
    assert tf.tanh_sum is not None
    eps = tf.tanh_sum.certificate.eps_global
    ratio, bound = _certificate_ratio(tf, X, y, init, xq, s.sigma, eps, T, s.alpha)
    assert ratio <= 1.0, ratio
    assert float(bound.max()) < 0.05  # the certificate says something (||beta|| = 1)


@pytest.mark.fault
def test_fault_estimate_within_propagated_certificate_detects_coarser_estep() -> None:
    # A transformer built with M = 16 checked against the certificate of M = 128: its gap
    # (~1.3e-2) exceeds that certificate (~2e-3), so the criterion fails.
    s = MeasureSetting(B=6)
    X, y, init, xq = symmetric_prompts(s)
    coarse = build_gradient_em_transformer(s.d, 2, s.n, s.sigma, 5, 1, s.alpha, 16, symmetric=True)
    fine = build_gradient_em_transformer(s.d, 2, s.n, s.sigma, 5, 1, s.alpha, 128, symmetric=True)
    assert fine.tanh_sum is not None
    eps = fine.tanh_sum.certificate.eps_global
    ratio, _ = _certificate_ratio(coarse, X, y, init, xq, s.sigma, eps, 5, s.alpha)
    assert ratio > 1.0


# --------------------------------------------------------------------------- float32
def _float32_ratio(tf, tf32, X, y, init, xq):  # type: ignore[no-untyped-def]
    it64 = tf.block_iterates(X, y, init, xq)
    it32 = tf32.block_iterates(X, y, init, xq)
    err = torch.stack(
        [(a[-1].to(f64) - b[-1]).flatten(1).norm(dim=1) for a, b in zip(it32, it64, strict=True)],
        1,
    )
    iters = [init[:, 0]] + [row[-1][:, 0] for row in it64[:-1]]
    return err, float32_error_bound(tf, X, y, iters)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("sigma", [0.1, 0.3])
def test_float32_forward_within_round_off_bound(arch: str, sigma: float) -> None:
    s = MeasureSetting(sigma=sigma, B=4)
    X, y, init, xq = symmetric_prompts(s)
    tf = build_gradient_em_transformer(
        s.d, 2, s.n, sigma, 6, 1, s.alpha, 32, symmetric=True, architecture=arch
    )
    tf32 = tf.astype(torch.float32)
    assert tf32.dtype == torch.float32 and tf32.embed(X, y, init, xq).dtype == torch.float32
    err, bound = _float32_ratio(tf, tf32, X, y, init, xq)
    assert bool((err <= bound).all()), (err, bound)
    assert float(err.max()) > 2.0**-24  # float32 really ran (float64 would give ~1e-15)


@pytest.mark.fault
def test_fault_float32_forward_within_round_off_bound_detects_wrong_weights() -> None:
    # "float32" pass of a different construction (M = 8 instead of 32): the difference is the
    # E-step's approximation error, far above the round-off bound.
    s = MeasureSetting(sigma=0.3, B=4)
    X, y, init, xq = symmetric_prompts(s)
    tf = build_gradient_em_transformer(s.d, 2, s.n, 0.3, 6, 1, s.alpha, 32, symmetric=True)
    wrong = build_gradient_em_transformer(s.d, 2, s.n, 0.3, 6, 1, s.alpha, 8, symmetric=True)
    err, bound = _float32_ratio(tf, wrong.astype(torch.float32), X, y, init, xq)
    assert not bool((err <= bound).all())


def test_run_float32_and_mlp_through_config() -> None:
    b, pi, init = _prompts(3, 3, 40, 0.3, False, 5, B=2)
    sig = torch.full((2,), 0.3, dtype=f64)
    pis = torch.tensor([pi] * 2, dtype=f64)
    base = ConstructionConfig(T_outer=2, relu_terms=8)
    runs = {}
    for arch in ARCHS:
        for dt in ("float64", "float32"):
            cfg = ConstructionConfig(T_outer=2, relu_terms=8, architecture=arch, dtype=dt)  # type: ignore[arg-type]
            runs[arch, dt] = run_gradient_em_transformer(
                b.X_train, b.y_train, init, b.x_query, sig, pis, cfg
            )
    r64 = runs["attention-only", "float64"]
    assert r64.max_abs_diff_vs_surrogate < 1e-12
    assert runs["attention-mlp", "float64"].max_abs_diff_vs_surrogate < 1e-12
    assert runs["attention-mlp", "float64"].report.L < r64.report.L
    for arch in ARCHS:
        r32 = runs[arch, "float32"]
        assert r32.beta_tf.dtype == f64 and 1e-9 < r32.max_abs_diff_vs_surrogate < 1e-4
    assert base.architecture == "attention-only" and base.dtype == "float64"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"architecture": "mlp"}, "architecture"),
        ({"dtype": "float16"}, "dtype"),
        ({"dtype": torch.float32}, "dtype"),
    ],
)
def test_config_validation(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ParameterError, match=name):
        ConstructionConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="architecture"):
        build_gradient_em_transformer(3, 2, 10, 0.5, 1, architecture="x")  # type: ignore[arg-type]


def test_cli_architecture_and_dtype(capsys) -> None:  # type: ignore[no-untyped-def]
    reps = {}
    for M in ("16", "128"):
        argv = ["construct", "--d", "3", "--n", "40", "--batch", "2", "--snr", "10",
                "--architecture", "attention-mlp", "--relu-terms", M, "--T-outer", "2", "--json"]  # fmt: skip
        assert cli.main(argv) == 0
        reps[M] = json.loads(capsys.readouterr().out)
    assert reps["16"]["layers"] == reps["128"]["layers"]
    assert reps["128"]["max_heads_per_layer"] <= 4
    assert reps["128"]["max_abs_diff_vs_surrogate"] < 1e-9
    assert reps["128"]["architecture"] == "attention-mlp"
    argv = ["construct", "--n", "40", "--T-outer", "1", "--relu-terms", "8", "--dtype", "float32",
            "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert 0 < rep["max_abs_diff_vs_surrogate"] < 1e-3
    with pytest.raises(SystemExit) as exc:  # argparse refuses an unknown choice
        cli.main(["construct", "--n", "10", "--architecture", "mlp"])
    assert exc.value.code == 2 and "--architecture" in capsys.readouterr().err


def test_depth_table_measurement_small_grid() -> None:
    from iclkit.constructions.gradient_em_transformer.measure import depth_vs_relu_terms

    s = MeasureSetting(d=3, n=60, B=2, sigma=0.2)
    for pi in ((0.5, 0.5), (0.5, 0.3, 0.2)):
        rows = depth_vs_relu_terms([8, 16], 2, s, pi=pi)
        mlp = [r for r in rows if r.architecture == "attention-mlp"]
        only = [r for r in rows if r.architecture == "attention-only"]
        assert len({r.L for r in mlp}) == 1 and only[1].L > only[0].L
        for a, b in zip(only, mlp, strict=True):  # same surrogate: same gap to exact EM
            assert abs(a.gap_vs_gradient_em - b.gap_vs_gradient_em) <= 1e-9
            assert a.gap_vs_surrogate <= REL and b.gap_vs_surrogate <= REL
            assert a.max_heads_per_layer <= 4 and b.max_heads_per_layer <= 4


def test_mlp_layer_equals_its_formula_across_token_chunks() -> None:
    from iclkit.constructions.gradient_em_transformer import MLPLayer

    g = torch.Generator().manual_seed(0)
    D, h = 7, 5
    W1 = torch.randn(h, D, generator=g, dtype=f64)
    W1[:, 2] = 0.0  # a coordinate no unit reads
    W2 = torch.zeros(D, h, dtype=f64)
    W2[[1, 4]] = torch.randn(2, h, generator=g, dtype=f64)  # two written coordinates
    H = torch.randn(2, 3001, D, generator=g, dtype=f64)  # 6002 tokens: two chunks
    layer = MLPLayer(W1, W2)
    expected = H + torch.relu(H @ W1.T) @ W2.T  # Bai's MLP with residual, directly
    torch.testing.assert_close(layer(H), expected, rtol=1e-13, atol=1e-13)
    H2 = H.clone()
    assert layer(H2, inplace=True) is H2
    torch.testing.assert_close(H2, expected, rtol=1e-13, atol=1e-13)
    with pytest.raises(ParameterError, match="W2"):
        MLPLayer(W1, W2[:, :3])
