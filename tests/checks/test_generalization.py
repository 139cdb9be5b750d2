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


@pytest.mark.parametrize("name", ["generalization.gap_vs_B", "generalization.gap_vs_L"])
def test_report_says_the_measured_quantity_is_a_trained_models_gap(name: str) -> None:
    gaps = [[1.0, 1.1, 0.9], [0.5, 0.55, 0.45], [0.25, 0.27, 0.23]]
    r = run_check(name, params={"gaps": gaps})
    text = r.details["measured_quantity"]
    assert "train/test gap" in text and "400-step AdamW" in text
    assert "not the excess risk of the ERM solution" in text
    assert "not the excess risk of the ERM solution" in r.theorem
    assert "400-step AdamW" in r.tolerance
