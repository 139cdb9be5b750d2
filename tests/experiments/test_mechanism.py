"""Tests of the mechanism metrics (iclkit.experiments.mechanism, mechanism_run, mechanism_plots).

Known answers: gradient EM measured against itself (cosine 1 and gap 0 on the diagonal, probe
R^2 ~ 1, gradient cosine 1), a constant model (cosine ~ 0, probe R^2 ~ 0, gradient cosine 0),
hand-made prediction vectors, the reference algorithm of iclkit.constructions.algorithms, finite
differences, and a run that resumes.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import Tensor

from iclkit.constructions.algorithms import gradient_em
from iclkit.constructions.gradient_em_transformer import (
    ConstructionConfig,
    build_gradient_em_transformer,
    build_in_context_transformer,
)
from iclkit.constructions.predictors import initial_estimate
from iclkit.constructions.spectral_init import SpectralFunctions, spectral_init
from iclkit.experiments.constructed_vs_trained import COMPARISON_TRAINING
from iclkit.experiments.mechanism import (
    ConstructionModel,
    GradientEMModel,
    InContextConstructionModel,
    SpectralStart,
    TransformerModel,
    algorithm_gradients,
    alignment,
    gradient_cosine,
    input_gradients,
    probe_r2,
)
from iclkit.experiments.mechanism_run import (
    MECHANISM_SCALES,
    MechanismConfig,
    measure_model,
    run_mechanism,
    scale_x,
)
from iclkit.experiments.models import ModelConfig, build_model
from iclkit.experiments.reproduce import reproduce_mechanism
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIGMA = 0.5
PI = (0.5, 0.5)
T = 3
B = 256
#: float64 round-off allowance of identities computed two ways (sums over <= 10^3 terms).
ROUNDOFF = 1e-10


@pytest.fixture(scope="module")
def prompts() -> tuple[MoRBatch, Tensor]:
    batch = sample_mor(MoRConfig(d=3, K=2, n=12, sigma=SIGMA), B, seed=7)
    init = initial_estimate(batch.betas, rho=0.5, generator=torch.Generator().manual_seed(1))
    return batch, init


def _shifted(batch: MoRBatch, init: Tensor) -> list[tuple[str, float, MoRBatch, Tensor]]:
    return [("x_scale", 1.0, batch, init), ("x_scale", 2.0, scale_x(batch, 2.0), init)]


class ConstantModel:
    """Predicts ``c`` at every layer; its states are noise independent of the prompt."""

    name = "constant"
    depths = (0, 1, 2)

    def __init__(self, c: float = 0.7) -> None:
        self.c = c

    def layer_predictions(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        return torch.full((3, X.shape[0]), self.c, dtype=torch.float64)

    def layer_states(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        g = torch.Generator().manual_seed(3)
        return [torch.randn(X.shape[0], 4, generator=g, dtype=torch.float64) for _ in range(3)]

    def predict(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        return torch.full((X.shape[0],), self.c, dtype=torch.float64)


# --------------------------------------------------------------------------- metrics
def test_alignment_known_vectors() -> None:
    a = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    model = torch.stack([2 * a, -a, torch.zeros(4, dtype=torch.float64)])
    cos, gap = alignment(model, a[None])
    assert cos[:, 0].tolist() == pytest.approx([1.0, -1.0, 0.0], abs=1e-15)
    ms = float((a**2).mean())  # gap of 2a vs a is mean(a^2); of -a vs a, 4 mean(a^2)
    assert gap[:, 0].tolist() == pytest.approx([ms, 4 * ms, ms], rel=1e-15)
    with pytest.raises(ParameterError, match="algorithm_predictions"):
        alignment(model, torch.zeros(1, 5))
    with pytest.raises(ParameterError, match="2-d"):
        alignment(a, a[None])


def test_gradient_cosine_known_vectors() -> None:
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    h = torch.tensor([[3.0, 0.0], [-1.0, -1.0], [1.0, 2.0]], dtype=torch.float64)
    c = gradient_cosine(g, h)  # per prompt: 1, -1, 0 (zero gradient)
    assert c.mean == pytest.approx(0.0, abs=1e-15) and c.count == 3
    with pytest.raises(ParameterError, match="model_grad"):
        gradient_cosine(g, h[:2])


def test_gradient_em_model_equals_reference_algorithm(prompts: tuple[MoRBatch, Tensor]) -> None:
    batch, init = prompts
    alg = GradientEMModel(SIGMA, PI, T, T_inner=2, alpha=0.7)
    ours = alg.iterates(batch.X_train, batch.y_train, init)
    assert len(ours) == T + 1
    for k in range(T + 1):  # an independent implementation (weighted moments, not sums)
        ref = gradient_em(
            batch.X_train, batch.y_train, init, SIGMA, None, T_outer=k, T_inner=2, alpha=0.7
        ).betas
        assert torch.allclose(ours[k], ref, rtol=0, atol=ROUNDOFF)


def test_a_model_that_is_gradient_em_aligns_on_the_diagonal(
    prompts: tuple[MoRBatch, Tensor],
) -> None:
    batch, init = prompts
    alg = GradientEMModel(SIGMA, PI, T)
    tables = measure_model(alg, batch, init, alg, _shifted(batch, init))
    a = tables["alignment"]
    assert len(a) == (T + 1) ** 2
    diag = a[a["layer"] == a["iterate"]]
    assert diag["cosine"].tolist() == pytest.approx([1.0] * (T + 1), abs=1e-12)
    assert diag["mse_gap"].max() == 0.0
    off = a[a["layer"] != a["iterate"]]
    assert off["mse_gap"].min() > 1e-4  # rho = 0.5: the iterates do move
    p = tables["probes"]
    same = p[(p["target"] == "iterate") & (p["layer"] == p["iterate"])]
    assert same["r2"].min() > 0.999  # the state holds beta^(k); w^(k) is linear in it
    s = tables["sensitivity"]
    last = s[s["iterate"] == T]
    assert last["cosine"].tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    first_y = s[(s["iterate"] == 0) & (s["wrt"] == "y")]
    assert float(first_y["cosine"].iloc[0]) == 0.0  # y^(0) = x_q^T w^(0) does not depend on y
    o = tables["ood"]
    assert set(zip(o["shift"], o["value"], strict=True)) == {("x_scale", 1.0), ("x_scale", 2.0)}


def test_a_model_one_iterate_ahead_is_seen_off_the_diagonal(
    prompts: tuple[MoRBatch, Tensor],
) -> None:
    batch, init = prompts
    alg = GradientEMModel(SIGMA, PI, T)
    ref = alg.layer_predictions(batch.X_train, batch.y_train, batch.x_query, init)
    cos, gap = alignment(ref[1:], ref)  # row l of this "model" is iterate l + 1
    for r in range(T):
        assert int(gap[r].argmin()) == r + 1 and float(gap[r, r + 1]) == 0.0
        assert float(cos[r, r + 1]) == pytest.approx(1.0, abs=1e-12)
        assert float(gap[r, r]) > 1e-4  # rho = 0.5: consecutive iterates differ


def test_a_constant_model_scores_zero(prompts: tuple[MoRBatch, Tensor]) -> None:
    batch, init = prompts
    alg = GradientEMModel(SIGMA, PI, T)
    tables = measure_model(ConstantModel(), batch, init, alg, _shifted(batch, init))
    # cosine of c 1 with v is mean(v) / rms(v): x_query is symmetric, so |.| < 4 / sqrt(B) (4 SE)
    assert tables["alignment"]["cosine"].abs().max() < 4 / B**0.5
    # noise states: held-out R^2 <= 0 up to the fit's overfitting (4 features, 128 prompts)
    assert tables["probes"]["r2"].max() < 0.1
    assert tables["sensitivity"]["cosine"].abs().max() == 0.0  # zero gradients


def test_probe_r2_is_the_shared_probe() -> None:
    g = torch.Generator().manual_seed(0)
    F = torch.randn(300, 5, generator=g, dtype=torch.float64)
    assert probe_r2(F, F[:, :2] * 3 - 1) > 0.999


# --------------------------------------------------------------------------- adapters
@pytest.fixture(scope="module")
def construction() -> ConstructionModel:
    tf = build_gradient_em_transformer(3, 2, 12, SIGMA, 2, relu_terms=8, symmetric=False, pi=PI)
    return ConstructionModel(tf)


def test_construction_rows_are_its_gradient_em_iterates(
    prompts: tuple[MoRBatch, Tensor], construction: ConstructionModel
) -> None:
    batch, init = prompts
    X, y, xq = batch.X_train, batch.y_train, batch.x_query
    alg = GradientEMModel(SIGMA, PI, 2)
    preds = construction.layer_predictions(X, y, xq, init)
    assert construction.depths[0] == 0 and len(construction.depths) == 3
    cos, gap = alignment(preds, alg.layer_predictions(X, y, xq, init))
    assert float(gap[0, 0]) < ROUNDOFF  # row 0 is the input: the initial estimate itself
    for r in range(3):  # each row is nearest its own iterate (the ReLU sums are approximate)
        assert int(gap[r].argmin()) == r and float(cos[r, r]) > 0.999
    with torch.no_grad():  # the read-out layer writes x_q^T sum_k pi_k beta_k of the last row
        assert torch.allclose(construction.predict(X, y, xq, init), preds[-1], atol=ROUNDOFF)
    states = construction.layer_states(X, y, xq, init)
    assert [s.shape for s in states] == [(B, construction.tf.report.D)] * 3


@pytest.fixture(scope="module")
def in_context() -> InContextConstructionModel:
    config = ConstructionConfig(T_outer=2, relu_terms=8, init="in-context")
    return InContextConstructionModel(build_in_context_transformer(3, 2, 12, SIGMA, config, pi=PI))


def test_spectral_start_is_the_exact_spectral_init_up_to_its_scale(
    prompts: tuple[MoRBatch, Tensor],
) -> None:
    batch, _ = prompts
    X, y = batch.X_train, batch.y_train
    start = SpectralStart(SIGMA, 2, 8)(X, y)
    exact = spectral_init(X, y, SIGMA, 2, SpectralFunctions.exact(), T_power=8)
    # same unit vectors (the Newton steps refine the ReLU-sum rsqrt to round-off) ...
    unit = start / start.norm(dim=-1, keepdim=True)
    assert torch.allclose(unit, exact.basis, atol=1e-9)
    # ... and a scale within the documented <= 6 % of the sqrt sum (inside its domain)
    ratio = start.norm(dim=-1) / exact.init.norm(dim=-1)
    assert float((ratio - 1).abs().max()) <= 0.06


def test_in_context_construction_rows_are_its_gradient_em_iterates(
    prompts: tuple[MoRBatch, Tensor], in_context: InContextConstructionModel
) -> None:
    batch, _ = prompts
    s = slice(0, 128)
    X, y, xq = batch.X_train[s], batch.y_train[s], batch.x_query[s]
    ignored = torch.full((128, 2, 3), float("nan"), dtype=torch.float64)  # it computes its own
    start = SpectralStart(SIGMA, 2, in_context.tf.T_power, pi=PI)
    alg = GradientEMModel(SIGMA, PI, 2, start=start)
    with torch.no_grad():
        preds = in_context.layer_predictions(X, y, xq, ignored)
        alg_preds = alg.layer_predictions(X, y, xq, ignored)
        beta0 = in_context.tf.initial_estimate(X, y, xq)
    L0 = in_context.tf.init_layers
    assert in_context.depths[0] == L0 and len(in_context.depths) == 3
    assert in_context.depths[1] > L0 and in_context.depths[-1] < in_context.tf.model.L
    # row 0 is the algorithm's start: the transformer equals the surrogate to ~1e-13; 1e-9
    # leaves room for the round-off of 177 layers at other seeds
    assert torch.allclose(beta0, start(X, y), atol=1e-9, rtol=0)
    assert torch.allclose(preds[0], alg_preds[0], atol=1e-9, rtol=0)
    cos, gap = alignment(preds, alg_preds)
    for r in range(3):
        # each row is nearest its own iterate; cosine > 0.9: with M = 8 ReLU terms and the
        # (far) spectral start of n = 12 points the E-step sums are coarse (measured 0.957,
        # 0.972 on these prompts)
        assert int(gap[r].argmin()) == r and float(cos[r, r]) > 0.9
    with torch.no_grad():
        assert torch.allclose(in_context.predict(X, y, xq, ignored), preds[-1], atol=ROUNDOFF)
    states = in_context.layer_states(X, y, xq, ignored)
    assert [h.shape for h in states] == [(128, in_context.tf.layout.D)] * 3


def test_in_context_gradients_include_the_start(
    prompts: tuple[MoRBatch, Tensor], in_context: InContextConstructionModel
) -> None:
    batch, init = prompts
    s = slice(0, 3)
    X, y, xq, i0 = batch.X_train[s], batch.y_train[s], batch.x_query[s], init[s]
    gx, gy = input_gradients(in_context, X, y, xq, i0, chunk=2)
    fd = _finite_differences(in_context, X, y, xq, i0)
    assert torch.allclose(torch.cat([gx, gy], 1), fd, atol=1e-6, rtol=0)
    # the algorithm with a start differentiates through it: its d y^(0) / d y is not zero
    alg = GradientEMModel(SIGMA, PI, 2, start=SpectralStart(SIGMA, 2, 8, pi=PI))
    g0 = algorithm_gradients(alg, X, y, xq, i0)[0][1]
    assert float(g0.abs().max()) > 1e-3
    fd_alg = _finite_differences(alg, X, y, xq, i0)
    last = algorithm_gradients(alg, X, y, xq, i0)[-1]
    assert torch.allclose(torch.cat(last, 1), fd_alg, atol=1e-6, rtol=0)


def _finite_differences(model: object, X: Tensor, y: Tensor, xq: Tensor, init: Tensor) -> Tensor:
    """Central differences of ``predict`` in (x_query, y), step 1e-5 (error ~ h^2 f''' ~ 1e-10
    away from ReLU kinks, round-off ~ 1e-16 / h = 1e-11)."""
    h = 1e-5
    inputs = torch.cat([xq, y], 1)
    d = xq.shape[1]
    cols = []
    with torch.no_grad():
        for j in range(inputs.shape[1]):
            e = torch.zeros_like(inputs)
            e[:, j] = h
            plus, minus = inputs + e, inputs - e
            fp = model.predict(X, plus[:, d:], plus[:, :d], init)  # type: ignore[attr-defined]
            fm = model.predict(X, minus[:, d:], minus[:, :d], init)  # type: ignore[attr-defined]
            cols.append((fp - fm) / (2 * h))
    return torch.stack(cols, 1)


def test_construction_gradients_match_finite_differences(
    prompts: tuple[MoRBatch, Tensor], construction: ConstructionModel
) -> None:
    batch, init = prompts
    s = slice(0, 4)
    X, y, xq, i0 = batch.X_train[s], batch.y_train[s], batch.x_query[s], init[s]
    gx, gy = input_gradients(construction, X, y, xq, i0, chunk=3)
    fd = _finite_differences(construction, X, y, xq, i0)
    assert torch.allclose(torch.cat([gx, gy], 1), fd, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["relu_encoder", "gpt2"])
def test_transformer_model_readout_and_gradients(
    arch: str, prompts: tuple[MoRBatch, Tensor]
) -> None:
    batch, init = prompts
    s = slice(0, 5)
    X, y, xq, i0 = batch.X_train[s], batch.y_train[s], batch.x_query[s], init[s]
    net = build_model(ModelConfig(d=3, max_n=12, D=8, layers=2, heads=2, arch=arch), seed=4)  # type: ignore[arg-type]
    m = TransformerModel(net, arch)
    assert m.depths == (0, 1, 2)
    with torch.no_grad():
        preds = m.layer_predictions(X, y, xq, i0)
        direct = net.double()(torch.cat([X, xq[:, None]], 1), torch.cat([y, y[:, :1] * 0], 1))
    assert preds.shape == (3, 5)
    assert torch.allclose(preds[-1], direct[:, -1], atol=ROUNDOFF)  # the last row = the output
    assert [h.shape for h in m.layer_states(X, y, xq, i0)] == [(5, 8)] * 3
    gx, gy = input_gradients(m, X, y, xq, i0)
    fd = _finite_differences(m, X, y, xq, i0)
    assert torch.allclose(torch.cat([gx, gy], 1), fd, atol=1e-6, rtol=0)


def test_scale_x_scales_the_signal_and_keeps_the_noise(prompts: tuple[MoRBatch, Tensor]) -> None:
    batch, _ = prompts
    b2 = scale_x(batch, 2.0)
    assert torch.allclose(b2.y_oracle, 2 * batch.y_oracle, atol=ROUNDOFF)
    beta_z = batch.betas[torch.arange(B)[:, None], batch.z]  # (B, n+1, d)
    noise = batch.y - (batch.X * beta_z).sum(-1)
    assert torch.allclose(b2.y - (b2.X * beta_z).sum(-1), noise, atol=ROUNDOFF)


# --------------------------------------------------------------------------- the run
def _tiny(init: str = "given") -> MechanismConfig:
    return MechanismConfig(
        init=init,  # type: ignore[arg-type]
        d=2,
        n=6,
        prompts=16,
        construction=ConstructionConfig(T_outer=1, relu_terms=4),
        D=8,
        layers=1,
        heads=2,
        training=replace(COMPARISON_TRAINING, steps=3),
        models=("gradient_em", "construction", "relu_encoder"),
        x_scales=(1.0, 2.0),
        sigma_factors=(1.0,),
    )


@pytest.mark.parametrize("init", ["given", "in-context"])
def test_run_writes_tables_and_resumes(init: str, tmp_path: object) -> None:
    out = str(tmp_path)
    first = run_mechanism(_tiny(init), out)
    assert first.models_run == ("gradient_em", "construction", "relu_encoder")
    a = first.tables["alignment"]
    # one row per (model, layer, iterate): 2 rows x 2 iterates, encoder 2 layers x 2 iterates
    assert len(a) == 3 * 4 and not a.duplicated(["model", "layer", "iterate"]).any()
    assert set(first.tables["ood"]["shift"]) == {"x_scale", "sigma_factor"}
    for pdf, png in first.figures.values():
        assert open(png, "rb").read(4) == b"\x89PNG" and open(pdf, "rb").read(4) == b"%PDF"
    results = os.path.join(first.folder, "results")
    files = sorted(os.listdir(results))
    assert len(files) == 3 * 4  # four tables per model
    stamps = {f: os.stat(os.path.join(results, f)).st_mtime_ns for f in files}
    stale = os.path.join(results, ".tmp-killed.parquet")
    open(stale, "wb").close()
    second = run_mechanism(_tiny(init), out, draw=False)
    assert second.models_run == () and len(second.models_skipped) == 3
    assert not os.path.exists(stale)  # a killed run's temporary file is cleaned
    assert {f: os.stat(os.path.join(results, f)).st_mtime_ns for f in files} == stamps
    pd.testing.assert_frame_equal(second.tables["alignment"], a)
    # losing one model's file reruns that model only; its checkpoint gives the same model
    os.unlink(os.path.join(results, f"probes-relu_encoder-{first.run_id}.parquet"))
    third = run_mechanism(_tiny(init), out, draw=False)
    assert third.models_run == ("relu_encoder",) and third.figures == {}
    cols = ["model", "layer", "iterate", "cosine", "mse_gap"]
    pd.testing.assert_frame_equal(third.tables["alignment"][cols], a[cols])
    if init == "in-context":  # the construction's row 0 sits after its initialisation layers
        con = a[a["model"] == "construction"]
        assert int(con["depth"].min()) > 0
        row0 = con[(con["layer"] == 0) & (con["iterate"] == 0)]
        assert float(row0["mse_gap"].iloc[0]) < 1e-18  # (1e-9)^2: row 0 is the start


def test_config_and_preset_errors(tmp_path: object) -> None:
    assert set(MECHANISM_SCALES) == {"smoke", "quick", "paper"}
    assert {c.init for c in MECHANISM_SCALES.values()} == {"in-context"}
    with pytest.raises(ParameterError, match="init"):
        MechanismConfig(init="oracle")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="d must be"):
        MechanismConfig(d=1, init="in-context")
    with pytest.raises(ParameterError, match="models"):
        MechanismConfig(models=("lstm",))
    with pytest.raises(ParameterError, match="symmetric"):
        MechanismConfig(construction=ConstructionConfig(symmetric=True))
    with pytest.raises(ParameterError, match="x_scales"):
        MechanismConfig(x_scales=(0.0,))
    with pytest.raises(ParameterError, match="preset"):
        reproduce_mechanism("huge", str(tmp_path))


def test_training_id_ignores_what_does_not_train() -> None:
    """The trained models' checkpoints are keyed by the training fields only: a new construction
    or init reuses them, a new training setting does not."""
    from dataclasses import replace

    from iclkit.experiments.mechanism_run import MECHANISM_SCALES, run_id, training_id

    c = MECHANISM_SCALES["smoke"]
    other_con = replace(c, construction=replace(c.construction, relu_terms=8), init="given")
    assert run_id(other_con) != run_id(c) and training_id(other_con) == training_id(c)
    assert training_id(replace(c, D=c.D * 2)) != training_id(c)
    assert training_id(replace(c, training=replace(c.training, lr=1e-4))) != training_id(c)


def test_training_id_follows_the_model_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model default the mechanism config does not name (the decoder's y token) is part of
    the checkpoint id: a different default gets different checkpoints."""
    from dataclasses import replace

    from iclkit.experiments import mechanism_run
    from iclkit.experiments.mechanism_run import MECHANISM_SCALES, training_id

    c = MECHANISM_SCALES["smoke"]
    before = training_id(c)
    real = mechanism_run._model_config
    monkeypatch.setattr(
        mechanism_run, "_model_config", lambda cfg, arch: replace(real(cfg, arch), y_token="y")
    )
    assert training_id(c) != before
