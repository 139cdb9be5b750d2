"""Tests of phase detection (iclkit.dynamics.softmax.phases) on exact GD trajectories: the paper's
qualitative claims ([READ] abstract) under this project's operational phase definitions."""

from __future__ import annotations

import pytest

from iclkit.dynamics.softmax import SoftmaxConfig, simulate_softmax
from iclkit.dynamics.softmax.phases import detect_phases
from iclkit.theory.features import FeatureConfig
from iclkit.theory.validation import ParameterError


def _exact(K, N, *, p_dominant=None, **kw):
    mode = "balanced" if p_dominant is None else "imbalanced"
    fc = FeatureConfig(K=K, N=N, p_mode=mode, p_dominant=p_dominant)
    return simulate_softmax(SoftmaxConfig(features=fc, method="exact", **kw))


def test_balanced_two_phases_and_one_over_t_convergence():
    tr = _exact(10, 200, eta=4.0, max_time=1e5)
    rep = detect_phases(tr, eps=1e-3)
    q = rep.by_query("balanced")
    assert [ph.name for ph in q.phases] == ["target growth", "convergence"]
    assert rep.summary["n_phases"] == {"balanced": 2}
    ev = q.events
    assert 0 < ev["half_attention"] < ev["convergence_regime"] < ev["loss_eps"]
    assert q.events_ordered
    # last phase: L ~ K / (4 eta t) (docs/provenance.md §11), fitted log-log slope in [-1.1, -0.9]
    assert q.final_loss_slope is not None and -1.1 <= q.final_loss_slope <= -0.9
    # and t * L(t) -> K/4 in units of eta t (within 10% at the end: the shift by the phase-I
    # time is ~T1 / t = 2% there, the 1 - 1/K and N corrections are a few % more)
    assert abs(tr.time[-1] * tr.loss[-1] / (10 / 4) - 1) < 0.1


def test_imbalanced_four_phases_in_order_and_dominant_one_phase():
    tr = _exact(10, 200, p_dominant=0.5, eta=1.0, max_time=8000, stop_loss=1e-3)
    rep = detect_phases(tr, eps=1e-3)
    u, d = rep.by_query("under_represented"), rep.by_query("dominant")
    assert [ph.name for ph in u.phases] == [
        "off-target growth",
        "off-target decay",
        "target growth",
        "convergence",
    ]
    ev = u.events
    assert 0 < ev["offtarget_peak"] < ev["overtake_dominant"] < ev["half_attention"]
    assert ev["half_attention"] < ev["convergence_regime"]
    assert u.events_ordered
    # definitional at p_dominant = 1/2: Attn_dominant(0) = 1/2, so half_attention is at t = 0
    jd = tr.type_index("dominant")
    assert d.events["half_attention"] == 0.0 and tr.attention_target[0, jd] >= 0.5
    assert d.n_phases == 1 and d.phases[0].name == "convergence"
    assert rep.summary["n_phases"] == {"dominant": 1, "under_represented": 4}
    # the phases tile [0, end]
    for q in (u, d):
        assert q.phases[0].start == 0.0 and q.phases[-1].end == rep.end_time
        assert all(a.end == b.start for a, b in zip(q.phases, q.phases[1:], strict=False))
    assert len(rep.phases) == 5 and set(rep.phases[0]) == {"query", "name", "start", "end"}


@pytest.mark.parametrize(
    ("p_dominant", "dominant_phases", "under_phases"),
    [(0.3, 2, 3), (0.4, 2, 4), (0.5, 1, 4)],
)
def test_phase_counts_across_imbalance(p_dominant, dominant_phases, under_phases):
    """The counts at p_dominant in {0.3, 0.4, 0.5} (K = 10, N = 200, eta = 4). The dominant
    query's "1 phase" holds at p_dominant = 1/2 only, by definition: its target attention starts
    at p_dominant, so below 1/2 it first has a target-growth phase (2 phases). The
    under-represented queries show 4 phases at 0.4 and 0.5; at 0.3 the non-dominant off-target
    weights never rise (no interior peak), so 3."""
    tr = _exact(10, 200, p_dominant=p_dominant, eta=4.0, max_time=8000, stop_loss=1e-3)
    rep = detect_phases(tr, eps=1e-3)
    d, u = rep.by_query("dominant"), rep.by_query("under_represented")
    jd = tr.type_index("dominant")
    assert abs(tr.attention_target[0, jd] - p_dominant) < 1e-12
    assert d.n_phases == dominant_phases
    assert (d.events["half_attention"] == 0.0) == (p_dominant >= 0.5)
    assert u.n_phases == under_phases and u.events_ordered
    assert (u.events["offtarget_peak"] is None) == (under_phases == 3)


def test_stagewise_dominant_converges_while_under_represented_is_order_one():
    K = 40
    tr = _exact(K, 1000, p_dominant=0.5, eta=1.0, max_time=800)
    rep = detect_phases(tr, eps=1e-3)
    stage = rep.summary["stagewise"]
    ju = tr.type_index("under_represented")
    # when dominant queries reach loss 1e-3, under-represented ones keep at least half of their
    # initial loss (~1/2) and their target attention is still small (initially 1/78)
    assert stage["under_represented_loss_then"] >= 0.5 * tr.loss_per_type[0, ju]
    assert stage["under_represented_attention_then"] < 0.1


def test_dominant_time_to_eps_independent_of_K():
    times = []
    for K in (10, 20, 40):
        tr = _exact(K, 1000, p_dominant=0.5, eta=1.0, max_time=800)
        times.append(detect_phases(tr, eps=1e-3).by_query("dominant").events["loss_eps"])
    # docs/provenance.md §11 measured 534-590 for K = 10..80 at N = inf; claim: within 20%
    assert max(times) / min(times) < 1.2


def test_final_loss_slope_is_the_1_over_t_law():
    tr = _exact(10, 200, eta=4.0, max_time=1e5)
    q = detect_phases(tr).by_query("balanced")
    assert q.final_loss_slope is not None and -1.1 <= q.final_loss_slope <= -0.9


def test_bad_input_raises():
    tr = _exact(3, 5, steps=3)
    with pytest.raises(ParameterError, match="^eps"):
        detect_phases(tr, eps=0.0)
    with pytest.raises(ParameterError, match="^slope_band"):
        detect_phases(tr, slope_band=2.0)
    with pytest.raises(ParameterError, match="^trajectory"):
        detect_phases("not a trajectory")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^query"):
        detect_phases(tr).by_query("dominant")
