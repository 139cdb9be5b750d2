"""Tests of the softmax-dynamics figures (iclkit.dynamics.softmax.plots)."""

from __future__ import annotations

from iclkit.dynamics.softmax import SoftmaxConfig, simulate_softmax
from iclkit.dynamics.softmax.phases import detect_phases
from iclkit.dynamics.softmax.plots import plot_softmax_dynamics
from iclkit.dynamics.softmax.scaling import phase_time_scaling
from iclkit.theory.features import FeatureConfig


def test_figures_written_as_truetype_pdf_and_png(tmp_path):
    fc = FeatureConfig(K=5, N=40, p_mode="imbalanced", p_dominant=0.6)
    tr = simulate_softmax(SoftmaxConfig(features=fc, method="exact", max_time=400))
    rep = detect_phases(tr, eps=1e-2)
    scaling = phase_time_scaling([4, 6], N=40, eps=0.1)
    paths = plot_softmax_dynamics(tr, rep, tmp_path / "figs", scaling)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        f"softmax_{s}.{e}" for s in ("loss", "attention", "phase_scaling") for e in ("pdf", "png")
    )
    for p in paths:
        data = p.read_bytes()
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert data[:5] == b"%PDF-"
            # fonttype 42: embedded TrueType (FontFile2), no Type 3 fonts
            assert b"/FontFile2" in data and b"/Type3" not in data
    # no temporary files left behind (atomic writes)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == names


def test_monte_carlo_loss_band(tmp_path):
    fc = FeatureConfig(K=3, N=10)
    tr = simulate_softmax(SoftmaxConfig(features=fc, method="monte-carlo", steps=5, batch_size=64))
    paths = plot_softmax_dynamics(tr, detect_phases(tr), tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
