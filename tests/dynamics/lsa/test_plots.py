"""Tests of iclkit.dynamics.lsa.plots and the tail-rate fit it shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iclkit.dynamics.lsa.convergence import lsa_convergence, tail_rate
from iclkit.dynamics.lsa.init import structured_init
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.dynamics.lsa.plots import plot_lsa_flow


def test_tail_rate_exact_on_exponential() -> None:
    t = np.linspace(0, 20, 200)
    assert tail_rate(t, 3.0 * np.exp(-1.7 * t)) == pytest.approx(1.7, rel=1e-10)
    assert np.isnan(tail_rate(t[:3], np.exp(-t[:3]) * 1e-6))


def test_plot_writes_pdf_with_truetype_and_png(tmp_path: Path) -> None:
    m = LSAMoments.linear(3, 6)
    res = lsa_convergence(m, structured_init(m, 0.5, seed=0), t_max=100)
    paths = plot_lsa_flow(res, tmp_path / "figs", stem="x", title="t")
    assert [p.name for p in paths] == ["x.pdf", "x.png"]
    pdf = paths[0].read_bytes()
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert paths[1].read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in (tmp_path / "figs").iterdir() if p.name.startswith(".")]
