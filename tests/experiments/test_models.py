"""Tests of iclkit.experiments.models: shapes, causality (the prediction at position m must not
depend on y_m or on later tokens), the decoder's token format, the ReLU attention against a
direct loop, bad input."""

from __future__ import annotations

import pytest
import torch

from iclkit.experiments.models import ModelConfig, _ReLUAttention, build_model
from iclkit.theory.validation import ParameterError


@pytest.mark.parametrize(
    ("arch", "y_token"), [("gpt2", "xy"), ("gpt2", "y"), ("relu_encoder", "xy")]
)
def test_shape_and_causality(arch: str, y_token: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(d=3, max_n=8, D=16, layers=2, heads=2, arch=arch, y_token=y_token)  # type: ignore[arg-type]
    model = build_model(config, seed=1)
    X = torch.randn(4, 9, 3, dtype=torch.float64)
    y = torch.randn(4, 9, dtype=torch.float64)
    model = model.double()
    out = model(X, y)
    assert out.shape == (4, 9)
    m = 5
    X2, y2 = X.clone(), y.clone()
    y2[:, m:] += 10.0  # y_m and later labels: invisible to positions <= m
    X2[:, m + 1 :] -= 3.0  # later covariates: invisible to positions <= m
    out2 = model(X2, y2)
    # identical up to float64 round-off (the same operations on the same visible inputs)
    torch.testing.assert_close(out2[:, : m + 1], out[:, : m + 1], rtol=0, atol=1e-12)
    assert not torch.allclose(out2[:, m + 1 :], out[:, m + 1 :])  # later positions do change


@pytest.mark.parametrize("y_token", ["xy", "y"])
def test_decoder_tokens_are_the_documented_sequence(y_token: str) -> None:
    # x_0, y_0, ..., x_n with x token [x_m; 0] and y token [x_j; y_j] ("xy") or [0; y_j] ("y"):
    # the read-in's input, captured by a hook, against the format written out by hand
    d, N = 3, 5
    config = ModelConfig(d=d, max_n=8, D=8, layers=1, heads=2, y_token=y_token)  # type: ignore[arg-type]
    model = build_model(config, seed=0)
    seen: list[torch.Tensor] = []
    model.read_in.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    X, y = torch.randn(2, N, d), torch.randn(2, N)
    model(X, y)
    want = torch.zeros(2, 2 * N - 1, d + 1)
    for m in range(N):
        want[:, 2 * m, :d] = X[:, m]
        if m < N - 1:
            want[:, 2 * m + 1, d] = y[:, m]
            if y_token == "xy":
                want[:, 2 * m + 1, :d] = X[:, m]
    assert torch.equal(seen[0], want)


def test_relu_attention_matches_direct_sum() -> None:
    torch.manual_seed(0)
    D, heads, T, Tk = 8, 2, 5, 3
    att = _ReLUAttention(D, heads).double()
    h = torch.randn(1, T, D, dtype=torch.float64)
    mask = (torch.rand(T, Tk) > 0.3).double()
    got = att(h, mask, Tk)[0]
    Wq, Wk, Wv = att.qkv.weight.split(D, dim=0)
    dh = D // heads
    want = torch.zeros(T, D, dtype=torch.float64)
    for i in range(
        T
    ):  # Bai Def. 1, written out: sum_m (1/N_i) sum_j ReLU(<Q_m h_i, K_m h_j>) V_m h_j
        N_i = max(1.0, float(mask[i].sum()))
        acc = torch.zeros(D, dtype=torch.float64)
        for m in range(heads):
            sl = slice(m * dh, (m + 1) * dh)
            for j in range(Tk):
                s = torch.relu((Wq[sl] @ h[0, i]) @ (Wk[sl] @ h[0, j]))
                acc[sl] += mask[i, j] * s * (Wv[sl] @ h[0, j]) / N_i
        want[i] = att.out.weight @ acc
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)  # same sums, reordered


def test_same_seed_same_weights() -> None:
    cfg = ModelConfig(d=2, max_n=4, D=8, layers=1, heads=2)
    a, b = build_model(cfg, seed=3), build_model(cfg, seed=3)
    c = build_model(cfg, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="heads"):
        ModelConfig(d=2, max_n=4, D=10, heads=3)
    with pytest.raises(ParameterError, match="arch"):
        ModelConfig(d=2, max_n=4, arch="lstm")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="layers"):
        ModelConfig(d=2, max_n=4, layers=0)
    with pytest.raises(ParameterError, match="y_token"):
        ModelConfig(d=2, max_n=4, y_token="x")  # type: ignore[arg-type]
    model = build_model(ModelConfig(d=2, max_n=4, D=8, layers=1, heads=2))
    with pytest.raises(ParameterError, match="X"):
        model(torch.zeros(1, 3, 5), torch.zeros(1, 3))
    with pytest.raises(ParameterError, match="N"):
        model(torch.zeros(1, 9, 2), torch.zeros(1, 9))
