"""Tests of the three GD simulators (iclkit.dynamics.softmax.simulate)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from iclkit.dynamics import Status
from iclkit.dynamics.softmax import SoftmaxConfig, simulate_softmax
from iclkit.dynamics.softmax.config import DEFAULT_STEPS, default_horizon
from iclkit.dynamics.softmax.phases import detect_phases
from iclkit.dynamics.softmax.population import population_moments
from iclkit.theory.features import FeatureConfig
from iclkit.theory.validation import ParameterError


def _run(fc, **kw):
    return simulate_softmax(SoftmaxConfig(features=fc, **kw))


def test_mean_field_balanced_invariants_on_full_Z():
    # the mean-field simulator updates all K^2 entries (no symmetry imposed), so equal target
    # weights and off-target = -target/(K-1) are consequences, not assumptions
    K = 7
    tr = _run(
        FeatureConfig(K=K, N=100),
        method="mean-field",
        eta=2.0,
        max_time=2000,
        store_Z=True,
        record_resolution=50,
    )
    Z = tr.Z_final
    assert tr.column_sum_drift.max() < 1e-10
    assert np.ptp(np.diagonal(Z)) < 1e-12
    off = Z[~np.eye(K, dtype=bool)]
    assert np.abs(off + Z[0, 0] / (K - 1)).max() < 1e-12
    # target weights nondecreasing (exact gradient sign, §A.3)
    assert np.all(np.diff(tr.target_weight[:, 0]) >= -1e-13)
    # loss nonincreasing for this small eta
    assert np.all(np.diff(tr.loss) <= 1e-15)


@pytest.mark.parametrize("query", [False, True])
def test_exact_imbalanced_invariants(query):
    fc = FeatureConfig(K=8, N=60, p_mode="imbalanced", p_dominant=0.5)
    tr = _run(fc, method="exact", eta=1.0, max_time=1500, include_query_in_softmax=query)
    assert tr.status is Status.MAX_TIME and "no stop_loss" in tr.message
    assert tr.column_sum_drift.max() < 1e-10
    assert np.all(np.diff(tr.target_weight, axis=0) >= -1e-13)
    # dominant off-target weight of under-represented queries decreases monotonically (§A.5)
    ju = tr.type_index("under_represented")
    assert np.all(np.diff(tr.offtarget_dominant[:, ju]) <= 1e-13)


def test_monte_carlo_agrees_with_exact():
    fc = FeatureConfig(K=4, N=20, d=6, basis="random", p_mode="imbalanced", p_dominant=0.55)
    common = {"steps": 80, "eta": 2.0, "record_resolution": 20}
    mc = _run(fc, method="monte-carlo", batch_size=4000, store_Z=True, **common)
    ex = _run(fc, method="exact", **common)
    assert mc.status is Status.MAX_TIME and mc.loss_se_per_type is not None
    # (1) each recorded batch loss is an unbiased estimate of the exact loss at the MC iterate:
    # within 4 standard errors (58 records x 2 types: a false alarm has probability ~1e-2 at
    # worst, and the seeds are fixed)
    for i in range(mc.steps.shape[0]):
        m = population_moments(mc.Z_history[i], fc.probabilities, fc.N)
        for j, feats in enumerate(mc.type_features):
            exact = m.loss_per_query[list(feats)].mean()
            assert abs(mc.loss_per_type[i, j] - exact) <= 4 * mc.loss_se_per_type[i, j]
    # (2) the MC trajectory tracks the exact one: the gradient noise per step is ~1/sqrt(B) =
    # 1.6% relative and averages over 80 steps (measured 0.5%); allow 3%
    rel = np.linalg.norm(mc.Z_final - ex.Z_final) / np.linalg.norm(ex.Z_final)
    assert rel < 0.03
    # target attention: batch average over ~1000-2000 prompts per type (se ~0.005)
    assert np.abs(mc.attention_target[-1] - ex.attention_target[-1]).max() < 0.03
    # full-model gradients keep the column sums of V^T Q V at 0 too
    assert mc.column_sum_drift.max() < 1e-10


def test_exact_tends_to_mean_field_as_N_grows():
    # time to Attn_k = 1/2, balanced K = 10 (docs/provenance.md §11: 191, 158, 147, 145 -> 143.9)
    fc_mf = FeatureConfig(K=10, N=10)
    t_mf = _half_time(_run(fc_mf, method="mean-field", eta=1.0, max_time=400))
    gaps = []
    for N in (20, 50, 200, 1000):
        t_N = _half_time(_run(FeatureConfig(K=10, N=N), method="exact", eta=1.0, max_time=400))
        gaps.append(abs(t_N - t_mf))
    assert all(a > b for a, b in itertools.pairwise(gaps))
    assert gaps[-1] / t_mf < 0.02


def _half_time(tr):
    i = int(np.argmax(tr.attention_target[:, 0] >= 0.5))
    assert tr.attention_target[i, 0] >= 0.5
    return float(tr.time[i])


def test_phase_times_do_not_depend_on_small_eta():
    # GD tracks the gradient flow: the time to Attn_k = 1/2 in units of eta t (interpolated
    # between records) agrees within 2% for eta in {0.25, 1, 4} (measured spread 0.4%;
    # docs/provenance.md §11: 544.7 / 546 / 550 at K = 20)
    times = []
    for eta in (0.25, 1.0, 4.0):
        tr = _run(FeatureConfig(K=16, N=400), method="exact", eta=eta, max_time=500)
        times.append(detect_phases(tr).queries[0].events["half_attention"])
    assert max(times) / min(times) < 1.02


def test_status_and_stats():
    fc = FeatureConfig(K=3, N=5)
    tr = _run(fc, method="exact", steps=5, stop_loss=1e-9)
    assert tr.status is Status.MAX_TIME and "stop_loss" in tr.message
    assert tr.stats.steps == 5 and tr.stats.extra["count_terms"] == [6]
    assert tr.stats.function_evaluations == 6 and tr.stats.method == "exact"
    tr = _run(fc, method="mean-field", steps=3)
    assert tr.status is Status.MAX_TIME and tr.steps.tolist() == [0, 1, 2, 3]
    # random initialisation: no symmetry, exact sums over all compositions (small K, N)
    tr = _run(fc, method="exact", steps=3, init="random", init_scale=0.5, seed=2)
    assert not tr.stats.extra["symmetric_reduction"] and tr.stats.extra["reduced_parameters"] == 9
    assert tr.column_sum_drift.max() < 1e-12
    with pytest.raises(ParameterError, match="^query type"):
        tr.type_index("dominant")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"eta": 0.0}, "eta"),
        ({"method": "ode"}, "method"),
        ({"steps": 3, "max_time": 3.0}, "steps"),
        ({"steps": 0}, "steps"),
        ({"stop_loss": -1.0}, "stop_loss"),
        ({"init": "ones"}, "init"),
        ({"batch_size": 1}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"tail_mass": 0.5}, "tail_mass"),
        ({"torch_threads": 0}, "torch_threads"),
    ],
)
def test_bad_config_raises(kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}"):
        SoftmaxConfig(features=FeatureConfig(K=3, N=4), **kwargs)


def test_bad_entry_input():
    with pytest.raises(ParameterError, match="^features"):
        SoftmaxConfig(features={"K": 3})  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^config"):
        simulate_softmax("exact")  # type: ignore[arg-type]
    # exact sums that would be too large are refused with advice
    cfg = SoftmaxConfig(
        features=FeatureConfig(K=6, N=400), method="exact", init="random", steps=2, max_terms=10**5
    )
    with pytest.raises(ParameterError, match="mean-field"):
        simulate_softmax(cfg)


@pytest.mark.parametrize("method", ["exact", "mean-field"])
def test_status_converged_when_stop_loss_reached(method):
    tr = _run(FeatureConfig(K=3, N=30), method=method, max_time=2000, stop_loss=1e-2)
    assert tr.status is Status.CONVERGED and "stop_loss" in tr.message
    assert tr.loss_per_type[-1].max() <= 1e-2 and tr.time[-1] < 2000


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_status_diverged_for_a_too_large_step():
    # exact count sums overflow to non-finite values for a huge step (the mean-field and Monte
    # Carlo losses are bounded and their softmax saturates instead)
    fc = FeatureConfig(K=3, N=6)
    tr = _run(fc, method="exact", eta=1e4, steps=50, init="random", init_scale=1.0)
    assert tr.status is Status.DIVERGED and "reduce eta" in tr.message
    assert not tr.status.ok


def test_default_horizon_from_stop_loss():
    fc = FeatureConfig(K=4, N=10, p_mode="imbalanced", p_dominant=0.7)
    p_min = float(fc.probabilities.min())
    assert default_horizon(p_min, 1e-3) == 4.0 / p_min**2 + 2.0 / (p_min * 1e-3)
    cfg = SoftmaxConfig(features=fc, eta=2.0, stop_loss=1e-3)
    assert cfg.steps == int(np.ceil(default_horizon(p_min, 1e-3) / 2.0 - 1e-9))
    assert SoftmaxConfig(features=fc).steps == DEFAULT_STEPS
    with pytest.raises(ParameterError, match="^eps"):
        default_horizon(0.5, 0.0)
