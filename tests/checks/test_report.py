"""Report: table layout, report.json fields, report.md links, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

from iclkit.checks.registry import CheckResult
from iclkit.checks.report import format_table, summary, write_report


def _results() -> list[CheckResult]:
    return [
        CheckResult(
            "em.a",
            "Thm 3.1: error ~ sqrt(d/n)",
            "[2nd]",
            "PASS",
            -0.51,
            -0.5,
            "slope in [-0.6, -0.4]: reason",
            1.25,
            {"fit": {"slope": -0.51}, "resolution": {"relative": 0.2, "note": "band 0.1 / 0.5"}},
            ("em_a.png", "em_a.pdf"),
        ),
        CheckResult(
            "em.b",
            "Thm X",
            "[RECON]",
            "FAIL",
            float("nan"),
            1.0,
            "== 1",
            0.5,
            {"error": "RuntimeError: boom"},
        ),
        CheckResult(
            "lsa.c",
            "ZFB Thm 4.1",
            "[READ-2nd]",
            "SKIPPED",
            None,
            None,
            "-",
            0.0,
            {"reason": "needs x"},
        ),
    ]


def test_table_lists_every_check_and_reasons() -> None:
    text = format_table(_results())
    lines = text.splitlines()
    assert lines[0].split() == [
        "check",
        "theorem",
        "mark",
        "measured",
        "expected",
        "tolerance",
        "status",
        "s",
    ]
    assert "em.a" in text and "PASS" in text and "-0.51" in text
    assert "skipped: needs x" in text and "error: RuntimeError: boom" in text
    # the tolerance column shows the band; its reason stays in the report
    assert "reason" not in lines[2]
    assert "[RECON]" in lines[3]  # the mark column
    assert summary(_results()) == {"PASS": 1, "FAIL": 1, "INFO": 0, "SKIPPED": 1}


def test_write_report(tmp_path: Path) -> None:
    j, m = write_report(
        _results(),
        tmp_path / "out",
        {"mode": "quick", "seed": 3, "seconds": 2.0, "iclkit_version": "0"},
    )
    data = json.loads(j.read_text())
    assert data["summary"] == {"PASS": 1, "FAIL": 1, "INFO": 0, "SKIPPED": 1}
    assert data["seed"] == 3
    for row in data["checks"]:
        assert set(row) == {
            "name",
            "theorem",
            "mark",
            "status",
            "measured",
            "expected",
            "tolerance",
            "seconds",
            "details",
        }
    assert data["checks"][1]["measured"] is None  # NaN -> null
    assert [row["mark"] for row in data["checks"]] == ["[2nd]", "[RECON]", "[READ-2nd]"]
    assert data["checks"][0]["details"]["plots"] == ["em_a.png", "em_a.pdf"]
    md = m.read_text()
    assert "![em.a](em_a.png)" in md and "(em_a.pdf)" in md
    assert "Skipped: needs x" in md and "| [em.a](#ema) |" in md
    # the resolution: one line per check, "-" where the check states none (a crash)
    assert "- resolution: 0.2 (20.0%): band 0.1 / 0.5" in md
    assert md.count("- resolution: -") == 1
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json", "report.md"]
