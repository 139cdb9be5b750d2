"""Tests of the in-context spectral initialisation (iclkit.constructions.spectral_init and
iclkit.constructions.gradient_em_transformer.{spectral_init,in_context}).

The transformer is compared with the surrogate computed directly as sums over the examples
(``spectral_init`` with the construction's ReLU sums, then surrogate gradient EM); the surrogate's
directions are compared with an eigendecomposition of the moment matrix (torch.linalg.eigh), and
the moment identity with a Monte Carlo average - never with the attention code itself.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit import cli
from iclkit.constructions.attention import AttentionLayer, Head
from iclkit.constructions.gradient_em_transformer import (
    MAX_HEADS,
    ConstructionConfig,
    build_in_context_transformer,
    layer_count,
    run_gradient_em_transformer,
    run_in_context_transformer,
)
from iclkit.constructions.gradient_em_transformer.in_context import InContextEMTransformer
from iclkit.constructions.gradient_em_transformer.run import surrogate_iterates
from iclkit.constructions.gradient_em_transformer.spectral_init import init_layer_count
from iclkit.constructions.spectral_init import (
    INV_DOMAIN,
    NEWTON_STEPS,
    RSQRT_DOMAIN,
    SCALE_DOMAIN,
    SpectralFunctions,
    geometric_relu_sum,
    spectral_functions,
    spectral_init,
    spectral_init_k2,
    spectral_relu_sums,
)
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

f64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Relative tolerance transformer vs surrogate: they differ only in float64 summation order
# (observed ~1e-13 after ~750 layers).
REL = 1e-9


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    num = (a - b).flatten(1).norm(dim=1)
    return float((num / b.flatten(1).norm(dim=1).clamp_min(1e-300)).max())


def _prompts(d: int, K: int, n: int, B: int, seed: int, *, symmetric: bool = False):  # type: ignore[no-untyped-def]
    return sample_mor(MoRConfig(d=d, K=K, n=n, snr=10.0, symmetric=symmetric), B, seed=seed)


def _config(symmetric: bool, T_outer: int = 2, T_power: int = 3) -> ConstructionConfig:
    return ConstructionConfig(
        T_outer=T_outer, relu_terms=8, symmetric=symmetric, init="in-context",
        power_iterations=T_power,
    )  # fmt: skip


# ----------------------------------------------------------------------------- transformer = surrogate
@settings(max_examples=4, deadline=None)
@given(
    d=st.integers(2, 6),
    n=st.integers(10, 120),
    case=st.sampled_from([(2, True), (2, False), (3, False)]),
    seed=st.integers(0, 10**6),
)
def test_transformer_equals_surrogate_init_and_final(
    d: int, n: int, case: tuple[int, bool], seed: int
) -> None:
    K, sym = case
    K = min(K, d)
    b = _prompts(d, K, n, 2, seed, symmetric=sym)
    cfg = _config(sym)
    tf = build_in_context_transformer(d, K, n, float(b.sigma[0]), cfg, pi=tuple(b.pi[0].tolist()))
    X, y, xq = b.X_train[:1], b.y_train[:1], b.x_query[:1]
    init_tf = tf.initial_estimate(X, y, xq)
    fns = spectral_functions(tf.sums)
    if tf.layout.k2:  # general K = 2: the first-moment-corrected start
        sur = spectral_init_k2(X, y, tf.em.sigma, tf.em.pi, fns, T_power=3)
    else:
        sur = spectral_init(X, y, tf.em.sigma, tf.layout.P, fns, T_power=3)
    assert _rel(init_tf, sur.init) <= REL
    beta_tf, _ = tf(X, y, xq)
    last = surrogate_iterates(tf.em, X, y, sur.init)[-1][-1]
    ref = torch.cat([last, -last], 1) if sym else last
    assert _rel(beta_tf, ref) <= REL


@pytest.mark.parametrize(("K", "sym"), [(2, True), (3, False)])
def test_run_reports_equality_heads_and_layer_formula(K: int, sym: bool) -> None:
    b = _prompts(4, K, 80, 3, 1, symmetric=sym)
    cfg = _config(sym)
    res = run_in_context_transformer(b.X_train, b.y_train, b.x_query, b.sigma, b.pi, cfg, K=K)
    assert res.run.max_abs_diff_vs_surrogate <= REL * float(res.run.beta_surrogate.abs().max())
    assert res.max_abs_diff_init_vs_surrogate <= REL * float(res.init_surrogate.abs().max())
    rep = res.run.report
    assert rep.max_heads_per_layer <= MAX_HEADS and max(rep.heads_per_layer) <= MAX_HEADS
    P = 1 if sym else K
    sums = spectral_relu_sums()
    L_init = init_layer_count(P, cfg.power_iterations, sums, NEWTON_STEPS)
    L_em = layer_count(K, cfg.T_outer, cfg.T_inner, cfg.relu_terms, symmetric=sym)
    assert rep.L == L_init + L_em
    assert rep.block_ends[0] == ("init", 0, 0, L_init)


def test_estimate_copies_agree_in_every_token() -> None:
    b = _prompts(3, 3, 40, 1, 2)
    tf = build_in_context_transformer(3, 3, 40, float(b.sigma[0]), _config(False))
    H = tf.model(tf.embed(b.X_train, b.y_train, b.x_query))
    sl = slice(tf.layout.base.D, tf.layout.D)  # every slot of the initialisation
    assert float((H[:, :, sl] - H[:, -1:, sl]).abs().max()) <= 1e-12 * float(
        H[:, -1, sl].abs().max()
    )


@pytest.mark.fault
def test_fault_spectral_init_wrong_weight_is_detected() -> None:
    """A construction whose last head writes ``0.8 r sc v`` into ``beta`` differs from the
    surrogate by far more than the 1e-9 tolerance (the comparison can fail). (Faults the later
    layers correct would not do: a wrong sign of ``-m2 w`` - ``M_hat + m2 I`` has the same
    eigenvectors - or a wrong first Newton step - the next steps converge anyway.)"""
    b = _prompts(3, 2, 60, 1, 3, symmetric=True)
    tf = build_in_context_transformer(3, 2, 60, float(b.sigma[0]), _config(True))
    layers = tf.model.attention_layers
    lab = "beta_0 = r_0 sc v_0"
    i = next(i for i, la in enumerate(layers) if any(h.label == lab for h in la.heads))
    heads = tuple(
        Head(h.Q, h.K, 0.8 * h.V, h.label) if h.label == lab else h for h in layers[i].heads
    )
    tf.model.layers[i] = AttentionLayer(heads)
    bad = InContextEMTransformer(tf.em, tf.model, tf.layout, tf.report, tf.init_layers, 3, tf.sums)
    X, y = b.X_train, b.y_train
    sur = spectral_init(X, y, tf.em.sigma, 1, spectral_functions(tf.sums), T_power=3)
    assert _rel(bad.initial_estimate(X, y, b.x_query), sur.init) > 1e-3


# ----------------------------------------------------------------------------- the algorithm
def test_moment_matrix_mean_is_two_beta_beta_t() -> None:
    """E[(1/n) sum y^2 (x x^T - I)] = 2 sum_k pi_k beta_k beta_k^T: Monte Carlo, n = 4e5, d = 3.
    Entries of y^2 x x^T have variance O(||beta||^4 + ...) ~ 30 here, so the sample mean's sd is
    ~ 0.01: tolerance 0.06 (6 sd)."""
    b = _prompts(3, 3, 400_000, 1, 4)
    X, y = b.X_train[0], b.y_train[0]
    M = torch.einsum("n,ni,nj->ij", y * y, X, X) / X.shape[0] - (y * y).mean() * torch.eye(3)
    ref = 2 * torch.einsum("k,ki,kj->ij", b.pi[0], b.betas[0], b.betas[0])
    assert float((M - ref).abs().max()) <= 0.06


@pytest.mark.parametrize("K", [1, 3])
def test_exact_spectral_init_spans_the_top_eigenvectors(K: int) -> None:
    """With enough power iterations the basis spans the top-K eigenvectors of M_hat
    (eigh, an independent computation): projector distance <= 1e-6 and orthonormal to 1e-10."""
    b = _prompts(5, max(K, 2), 4000, 4, 5, symmetric=K == 1)
    X, y = b.X_train, b.y_train
    res = spectral_init(X, y, b.sigma, K, SpectralFunctions.exact(), T_power=60)
    n = X.shape[1]
    M = torch.einsum("bn,bni,bnj->bij", y * y, X, X) / n
    M = M - (y * y).mean(1)[:, None, None] * torch.eye(5)
    _, evecs = torch.linalg.eigh(M)
    top = evecs[..., -K:]
    U = res.basis.transpose(1, 2)
    assert float((U.transpose(1, 2) @ U - torch.eye(K)).abs().max()) <= 1e-10
    dist = (U @ U.transpose(1, 2) - top @ top.transpose(1, 2)).abs().max()
    assert float(dist) <= 1e-6
    scale = ((y * y).mean(1) - b.sigma**2).sqrt()
    assert torch.allclose(res.scale, scale, rtol=1e-12)


def test_relu_sums_change_scales_only() -> None:
    """The surrogate's unit vectors equal the exact ones (1e-9): the ReLU sums set positive
    factors only; its init differs from the exact one by the scale sum's error only."""
    b = _prompts(5, 3, 500, 4, 6)
    X, y = b.X_train, b.y_train
    ex = spectral_init(X, y, b.sigma, 3, SpectralFunctions.exact(), T_power=6)
    su = spectral_init(X, y, b.sigma, 3, spectral_functions(spectral_relu_sums()), T_power=6)
    assert float((ex.basis - su.basis).abs().max()) <= 1e-9
    eps = spectral_relu_sums()["scale"].certificate.eps
    assert bool(((su.scale / ex.scale - 1).abs() <= eps + 1e-12).all())


@pytest.mark.parametrize(
    ("name", "g", "domain", "bound"),
    [
        ("inv", lambda z: 1 / z, INV_DOMAIN, 0.13),
        ("scale", torch.sqrt, SCALE_DOMAIN, 0.06),
        ("rsqrt", torch.rsqrt, RSQRT_DOMAIN, 0.19),
    ],
)
def test_geometric_sums_relative_error_and_positivity(name, g, domain, bound) -> None:  # type: ignore[no-untyped-def]
    """Measured relative error on a log grid independent of the builder's (3001 points) within
    the documented bound (chord of a convex/concave power on [1, ratio]); > 0 far outside."""
    lo, ratio, M = domain
    f = spectral_relu_sums()[name]
    assert f.M == M
    hi = lo * ratio ** (M - 2)
    z = torch.logspace(math.log10(lo), math.log10(hi), 3001, dtype=f64)
    assert float(((f(z) - g(z)) / g(z)).abs().max()) <= bound
    wide = torch.logspace(math.log10(lo) - 6, math.log10(hi) + 6, 301, dtype=f64)
    assert bool((f(wide) > 0).all())


def test_geometric_sum_rejects_bad_parameters() -> None:
    with pytest.raises(ParameterError, match="ratio"):
        geometric_relu_sum(torch.sqrt, 1.0, 1.0, 5)
    with pytest.raises(ParameterError, match="lo"):
        geometric_relu_sum(torch.sqrt, -1.0, 2.0, 5)


# ----------------------------------------------------------------------------- interface
def test_config_validates_init_and_power_iterations() -> None:
    with pytest.raises(ParameterError, match="init"):
        ConstructionConfig(init="oracle")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="power_iterations"):
        ConstructionConfig(power_iterations=-1)
    assert ConstructionConfig().init == "given"  # the library stays explicit


def test_runners_refuse_the_other_init_mode() -> None:
    b = _prompts(3, 2, 30, 1, 7)
    with pytest.raises(ParameterError, match="init"):
        run_gradient_em_transformer(
            b.X_train, b.y_train, b.betas, b.x_query, b.sigma, b.pi, _config(False)
        )
    with pytest.raises(ParameterError, match="init"):
        run_in_context_transformer(
            b.X_train, b.y_train, b.x_query, b.sigma, b.pi, ConstructionConfig(), K=2
        )


def test_more_components_than_dimensions_is_refused() -> None:
    with pytest.raises(ParameterError, match="K"):
        build_in_context_transformer(2, 3, 30, 0.1, _config(False))


def test_cli_defaults_to_in_context_when_sampling(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["construct", "--d", "3", "--n", "40", "--K", "2", "--snr", "10", "--batch", "2",
            "--T-outer", "1", "--relu-terms", "8", "--power-iterations", "2", "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["init"] == "in-context"
    assert out["max_abs_diff_vs_surrogate"] <= 1e-9
    assert out["max_heads_per_layer"] <= MAX_HEADS
    assert out["layers"] > out["init_layers"] > 0


@pytest.mark.parametrize(
    ("field", "value"), [("architecture", "attention-mlp"), ("dtype", "float32")]
)
def test_in_context_refuses_what_it_does_not_build(field: str, value: str) -> None:
    """The spectral-initialisation layers exist for the attention-only float64 form only: the
    other settings are refused by name, never silently ignored."""
    from iclkit.constructions.gradient_em_transformer import (
        ConstructionConfig,
        build_in_context_transformer,
    )

    cfg = ConstructionConfig(init="in-context", **{field: value})
    with pytest.raises(ParameterError, match=field):
        build_in_context_transformer(4, 2, 50, 0.5, cfg)
