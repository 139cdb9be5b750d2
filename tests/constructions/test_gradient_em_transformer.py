"""Tests of the Theorem 3.1 transformer (iclkit.constructions.gradient_em_transformer).

The transformer is compared with the surrogate gradient EM computed directly as sums over the
examples (``surrogate_em``, and ``algorithms.gradient_em`` with the ReLU-sum nonlinearity),
never with the attention code itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit import cli
from iclkit.constructions import algorithms as A
from iclkit.constructions.gradient_em_transformer import (
    MAX_HEADS,
    build_gradient_em_transformer,
    estep_functions,
    layer_count,
    layerwise_relative_error,
    run_gradient_em_transformer,
)
from iclkit.constructions.surrogate_em import (
    EStepFunctions,
    general_surrogate_iterates,
    symmetric_surrogate_iterates,
)
from iclkit.theory.metrics import sign_invariant_error
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Relative tolerance of the layer-by-layer check (the 1e-9): the forward pass and the
# surrogate differ only in float64 summation order; observed ~1e-14.
REL = 1e-9


def _local_init(betas: torch.Tensor, rho: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(betas.shape, generator=g, dtype=f64), dim=-1)
    return betas + rho * u * torch.linalg.vector_norm(betas, dim=-1, keepdim=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(
        ((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-300)).max()
    )


@settings(max_examples=6)  # each example builds and runs a transformer of up to ~70 layers
@given(
    d=st.integers(2, 16),
    extra=st.integers(1, 400),
    K=st.sampled_from([2, 3]),
    sym=st.booleans(),
    T_inner=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_equals_surrogate_layer_by_layer(
    d: int, extra: int, K: int, sym: bool, T_inner: int, seed: int
) -> None:
    n = min(400, d + extra)
    symmetric = sym and K == 2
    pi = (0.5, 0.5) if K == 2 else (0.5, 0.3, 0.2)
    cfg = MoRConfig(d=d, K=K, n=n, sigma=0.3, pi=pi, symmetric=symmetric, prior="sphere")
    b = sample_mor(cfg, 1, seed=seed % 10_000)
    X, y, xq = b.X_train, b.y_train, b.x_query
    init = _local_init(b.betas, 0.3, seed % 10_000 + 1)
    T_outer = 2
    M = 12 if symmetric else 6
    tf = build_gradient_em_transformer(
        d, K, n, 0.3, T_outer, T_inner, 0.8, M, symmetric=symmetric, pi=pi
    )
    got = tf.block_iterates(X, y, init, xq)
    if symmetric:
        assert tf.tanh_sum is not None
        ref = symmetric_surrogate_iterates(
            X, y, init[:, 0], 0.3, tf.tanh_sum, T_outer=T_outer, T_inner=T_inner, alpha=0.8
        )
        for t in range(T_outer):
            for s in range(T_inner):
                assert _rel(got[t][s][:, 0], ref[t][s]) <= REL
        # and the lead's reference gradient EM with the ReLU-sum nonlinearity
        alg = A.gradient_em(
            X, y, init, 0.3, T_outer=T_outer, T_inner=T_inner, alpha=0.8, symmetric=True,
            nonlinearity=tf.tanh_sum,
        )  # fmt: skip
        assert _rel(got[-1][-1][:, 0], alg.betas[:, 0]) <= REL
    else:
        ref = general_surrogate_iterates(
            X, y, init, 0.3, pi, estep_functions(tf), T_outer=T_outer, T_inner=T_inner, alpha=0.8
        )
        for t in range(T_outer):
            for s in range(T_inner):
                assert _rel(got[t][s], ref[t][s]) <= REL
    assert tf.estimate_copies_spread(X, y, init, xq) <= 1e-10


@pytest.mark.parametrize(
    ("K", "symmetric", "T_outer", "T_inner", "M"),
    [
        (2, True, 3, 2, 30),
        (2, True, 0, 1, 8),
        (2, False, 2, 1, 9),
        (3, False, 1, 3, 7),
        (5, False, 1, 1, 4),
    ],
)
def test_heads_and_layer_formula(
    K: int, symmetric: bool, T_outer: int, T_inner: int, M: int
) -> None:
    tf = build_gradient_em_transformer(3, K, 10, 0.5, T_outer, T_inner, 1.0, M, symmetric=symmetric)
    r = tf.report
    assert r.max_heads_per_layer <= MAX_HEADS == 4
    assert all(1 <= h <= 4 for h in r.heads_per_layer)
    # independent restatement of the documented formula
    c4 = lambda x: math.ceil(x / 4)  # noqa: E731
    if symmetric:
        expected = T_outer * (c4(M + 2) + T_inner) + 1
    else:
        expected = (
            T_outer
            * (2 * c4(K * (M + 2)) + (K - 1) * c4(M + 2) + T_inner * (c4(2 * K * M) + c4(K)))
            + 1
        )
    assert r.L == expected == layer_count(K, T_outer, T_inner, M, symmetric=symmetric)
    assert len(r.heads_per_layer) == r.L
    assert r.weight_norm > 0 and math.isfinite(r.weight_norm)


def test_permutation_invariance() -> None:
    for K, sym in ((2, True), (3, False)):
        pi = (0.5, 0.5) if K == 2 else (0.5, 0.3, 0.2)
        b = sample_mor(MoRConfig(d=4, K=K, n=60, sigma=0.2, pi=pi, symmetric=sym), 2, seed=11)
        init = _local_init(b.betas, 0.2, 12)
        tf = build_gradient_em_transformer(4, K, 60, 0.2, 2, 2, 1.0, 10, symmetric=sym, pi=pi)
        beta1, y1 = tf(b.X_train, b.y_train, init, b.x_query)
        perm = torch.randperm(60, generator=torch.Generator().manual_seed(13))
        beta2, y2 = tf(b.X_train[:, perm], b.y_train[:, perm], init, b.x_query)
        # exact in exact arithmetic; float64 summation order only
        torch.testing.assert_close(beta1, beta2, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-13)


def test_wrong_step_size_is_detected() -> None:
    b = sample_mor(MoRConfig(d=3, K=2, n=50, sigma=0.2, symmetric=True), 2, seed=14)
    init = _local_init(b.betas, 0.3, 15)
    good = build_gradient_em_transformer(3, 2, 50, 0.2, 2, 1, 1.0, 10)
    bad = build_gradient_em_transformer(3, 2, 50, 0.2, 2, 1, 0.9, 10)  # injected wrong alpha
    assert good.tanh_sum is not None
    ref = symmetric_surrogate_iterates(
        b.X_train, b.y_train, init[:, 0], 0.2, good.tanh_sum, T_outer=2, T_inner=1, alpha=1.0
    )[-1][-1]
    assert _rel(good(b.X_train, b.y_train, init, b.x_query)[0][:, 0], ref) <= REL
    assert _rel(bad(b.X_train, b.y_train, init, b.x_query)[0][:, 0], ref) > 1e-3
    # the public check API: layer-by-layer error vs the surrogate with the intended step size
    args = (b.X_train, b.y_train, init, b.x_query)
    assert layerwise_relative_error(good, *args) <= REL
    assert layerwise_relative_error(bad, *args) <= REL  # consistent with its own (wrong) alpha
    assert layerwise_relative_error(bad, *args, alpha=1.0) > 1e-3
    gen = build_gradient_em_transformer(3, 2, 50, 0.2, 1, 2, 1.0, 6, pi=(0.6, 0.4))
    assert layerwise_relative_error(gen, *args) <= REL


def test_read_y_is_the_estimate_prediction() -> None:
    pi = (0.7, 0.3)
    b = sample_mor(MoRConfig(d=3, K=2, n=40, sigma=0.2, pi=pi), 3, seed=16)
    init = _local_init(b.betas, 0.1, 17)
    tf = build_gradient_em_transformer(3, 2, 40, 0.2, 1, 1, 1.0, 6, pi=pi)
    beta, y_hat = tf(b.X_train, b.y_train, init, b.x_query)
    w = 0.7 * beta[:, 0] + 0.3 * beta[:, 1]
    torch.testing.assert_close(y_hat, (b.x_query * w).sum(-1), rtol=1e-12, atol=1e-13)
    _, clipped = tf(b.X_train, b.y_train, init, b.x_query, R=1e-3)
    assert float(clipped.abs().max()) <= 1e-3


# --------------------------------------------------------------------------- rates
# The transformer equals the surrogate to round-off (test above, n <= 400); at n up to 6400 the
# rates are measured on the surrogate, which is the same function computed without attention.
NS = [100, 200, 400, 800, 1600, 3200, 6400]


def test_symmetric_parameter_error_rate() -> None:
    d, M = 5, 64
    tf = build_gradient_em_transformer(d, 2, 100, 0.1, 10, 1, 1.0, M)
    assert tf.tanh_sum is not None
    f = tf.tanh_sum.piecewise_linear()
    errs = []
    for n in NS:
        b = sample_mor(MoRConfig(d=d, K=2, n=n, snr=10, symmetric=True, prior="sphere"), 64, seed=n)
        init = _local_init(b.betas[:, 0], 0.3, n + 1)
        beta = symmetric_surrogate_iterates(
            b.X_train, b.y_train, init, b.sigma, f, T_outer=10, T_inner=1, alpha=1.0
        )[-1][-1]
        errs.append(float(sign_invariant_error(beta, b.betas[:, 0]).mean()))
    slope = np.polyfit(np.log(NS), np.log(errs), 1)[0]
    assert -0.6 <= slope <= -0.4, (slope, errs)


def test_general_prediction_error_rate() -> None:
    # Prediction error vs the oracle (non-zero: pi not uniform), as the root mean square over
    # the query distribution: E_xq[(y_hat - y_orc)^2]^(1/2) = ||w_hat - w_orc|| for x ~ N(0, I)
    # (removes the query's own noise from the fit). The weighted Hessian of component k is
    # ~ pi_k I, so with alpha = 1 gradient EM contracts by ~ (1 - pi_min) per iteration:
    # T_outer = 30 reaches the statistical error at every n.
    d, K, M, pi = 5, 3, 64, (0.5, 0.3, 0.2)
    tf = build_gradient_em_transformer(d, K, 100, 0.1, 30, 1, 1.0, M, pi=pi)
    sums = tf.relu_sums  # same functions, O(log M) evaluation (equal to round-off, see relu tests)
    fns = EStepFunctions(*(sums[k].piecewise_linear() for k in ("psi", "softplus", "exp")))
    w_pi = torch.tensor(pi, dtype=f64)[None, :, None]
    errs = []
    for n in NS:
        b = sample_mor(MoRConfig(d=d, K=K, n=n, snr=10, pi=pi, prior="sphere"), 32, seed=n)
        init = _local_init(b.betas, 0.1, n + 2)
        beta = general_surrogate_iterates(
            b.X_train, b.y_train, init, b.sigma, pi, fns, T_outer=30, T_inner=1, alpha=1.0
        )[-1][-1]
        w_hat = (w_pi * beta).sum(1)
        errs.append(float((w_hat - b.w_oracle).norm(dim=-1).mean()))
    slope = np.polyfit(np.log(NS), np.log(errs), 1)[0]
    assert -0.6 <= slope <= -0.4, (slope, errs)


def test_layers_for_target_error_grow_like_log_n_over_d() -> None:
    d, M, c, alpha = 5, 64, 0.2, 0.5
    tf = build_gradient_em_transformer(d, 2, 100, 0.1, 1, 1, alpha, M)
    assert tf.tanh_sum is not None
    f = tf.tanh_sum.piecewise_linear()
    layers = []
    for n in NS:
        b = sample_mor(
            MoRConfig(d=d, K=2, n=n, sigma=0.1, symmetric=True, prior="sphere"), 32, seed=n
        )
        init = _local_init(b.betas[:, 0], 0.5, n + 3)
        it = symmetric_surrogate_iterates(
            b.X_train, b.y_train, init, 0.1, f, T_outer=30, T_inner=1, alpha=alpha
        )
        errs = [float(sign_invariant_error(row[-1], b.betas[:, 0]).mean()) for row in it]
        T = next(t + 1 for t, e in enumerate(errs) if e <= c * math.sqrt(d / n))
        layers.append(layer_count(2, T, 1, M, symmetric=True))
    x = np.log(np.array(NS) / d)
    slope, _ = np.polyfit(x, layers, 1)
    # L grows with log(n/d): positive slope, strong linear fit
    assert slope > 0 and np.corrcoef(x, layers)[0, 1] > 0.8, layers
    assert layers[-1] > layers[0]


# --------------------------------------------------------------------------- API errors
def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="alpha"):
        build_gradient_em_transformer(3, 2, 10, 0.5, 1, 1, 0.0, 8)
    with pytest.raises(ParameterError, match="sigma"):
        build_gradient_em_transformer(3, 2, 10, -1.0, 1, 1, 1.0, 8)
    with pytest.raises(ParameterError, match="relu_terms"):
        build_gradient_em_transformer(3, 2, 10, 0.5, 1, 1, 1.0, 2)
    with pytest.raises(ParameterError, match="T_inner"):
        build_gradient_em_transformer(3, 2, 10, 0.5, 1, 0, 1.0, 8)
    with pytest.raises(ParameterError, match="K"):
        build_gradient_em_transformer(3, 3, 10, 0.5, 1, 1, 1.0, 8, symmetric=True)
    with pytest.raises(ParameterError, match="pi"):
        build_gradient_em_transformer(3, 2, 10, 0.5, 1, 1, 1.0, 8, pi=(1.0, 0.0))
    with pytest.raises(ParameterError, match="pi"):
        build_gradient_em_transformer(3, 2, 10, 0.5, 1, 1, 1.0, 8, pi=(0.6, 0.4), symmetric=True)
    X = torch.zeros(2, 5, 3, dtype=f64)
    with pytest.raises(ParameterError, match="sigma"):
        run_gradient_em_transformer(
            X, torch.zeros(2, 5, dtype=f64), torch.zeros(2, 2, 3, dtype=f64),
            torch.zeros(2, 3, dtype=f64), torch.tensor([1.0, 0.0], dtype=f64),
        )  # fmt: skip


# --------------------------------------------------------------------------- CLI
def test_cli_with_and_without_in(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    prompts = tmp_path / "p.npz"
    out = tmp_path / "o.npz"
    assert cli.main(["sample", "--d", "3", "--n", "40", "--batch", "2", "--sigma", "0.2",
                     "--pi", "0.6,0.4", "--out", str(prompts)]) == 0  # fmt: skip
    capsys.readouterr()
    code = cli.main(["construct", "--in", str(prompts), "--out", str(out), "--T-outer", "2",
                     "--relu-terms", "6", "--json"])  # fmt: skip
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["max_heads_per_layer"] <= 4 and rep["layers"] == layer_count(
        2, 2, 1, 6, symmetric=False
    )
    assert rep["max_abs_diff_vs_surrogate"] < 1e-9
    with np.load(out) as z:
        assert z["beta_tf"].shape == (2, 2, 3) and z["y_hat"].shape == (2,)
        assert np.abs(z["beta_tf"] - z["beta_surrogate"]).max() < 1e-9
    code = cli.main(["construct", "--d", "3", "--n", "30", "--snr", "10", "--batch", "2",
                     "--symmetric", "--T-outer", "2", "--relu-terms", "8", "--json"])  # fmt: skip
    assert code == 0
    rep = json.loads(capsys.readouterr().out.strip())
    assert {"prediction_error_vs_oracle", "parameter_error", "weight_norm"} <= rep.keys()


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--T-outer", "-1"], "--T-outer"),
        (["--T-inner", "0"], "--T-inner"),
        (["--alpha", "0"], "--alpha"),
        (["--relu-terms", "1"], "--relu-terms"),
        (["--in", "/nonexistent.npz"], "--in"),
        (["--batch", "0"], "--batch"),
    ],
)
def test_cli_bad_input(argv: list[str], name: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["construct", "--n", "10", *argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {name}" in err and "Traceback" not in err
