"""Generalization check: an untrained model (one optimiser step) shows no gap decaying in B,
so the check FAILs (the passing run is the full `iclkit check --quick`, ~25 s, not a unit test)."""

from __future__ import annotations

import pytest

from iclkit.checks.registry import run_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gap_vs_B_fails_for_an_untrained_model() -> None:
    r = run_check("generalization.gap_vs_B", params={"steps": 1, "seeds": 2})
    assert r.status == "FAIL"
    assert len(r.details["gaps"]) == 3  # B = 16, 64, 256, two seeds each
