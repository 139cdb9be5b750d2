"""The report of ``iclkit check``: a printed table, ``report.json`` and ``report.md``.

``report.json`` is one object: run metadata (``iclkit_version``, ``mode``, ``seed``,
``seconds``, ``summary`` counts per status) and ``checks``, a list with one object per check
holding ``name``, ``theorem``, ``mark`` (the statement's provenance), ``status``, ``measured``,
``expected``, ``tolerance``, ``seconds``, ``details`` (the check's plot files are in
``details``). Statuses: PASS, FAIL, INFO (a reported property, never counted as a pass) and
SKIPPED.
``report.md`` is the same as a readable page with the plots (``DIR/*.png``, PDF alongside).
Both files are written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iclkit.io import to_jsonable, write_text_atomically

from .registry import STATUSES, CheckResult

__all__ = ["format_table", "summary", "write_report"]

#: Longest detail value (characters of JSON) shown in ``report.md``; ``report.json`` has all.
MD_DETAIL_CHARS = 400


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    """Counts per status, ``{"PASS": .., "FAIL": .., "INFO": .., "SKIPPED": ..}``."""
    c = Counter(r.status for r in results)
    return {s: c.get(s, 0) for s in STATUSES}


_COLUMNS = ("check", "theorem", "mark", "measured", "expected", "tolerance", "status", "s")


def _rows(results: Sequence[CheckResult], width: int | None) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in results:
        tol = r.tolerance.split(": ", 1)[0] if width else r.tolerance
        theorem = r.theorem if not width else r.theorem.split(":", 1)[0]
        measured = _fmt(r.measured) if r.status != "SKIPPED" else "-"
        row = (r.name, theorem, r.mark, measured, _fmt(r.expected), tol, r.status)
        rows.append((*row, f"{r.seconds:.1f}"))
    return rows


def format_table(results: Sequence[CheckResult], *, width: int | None = 40) -> str:
    """A plain-text table (check, theorem, mark, measured, expected, tolerance, status, seconds).

    Cells longer than ``width`` are cut with an ellipsis; the tolerance column shows the band
    only (its reason is in the report). A SKIPPED row is followed by its reason.
    """

    def cut(s: str) -> str:
        return s if width is None or len(s) <= width else s[: width - 1] + "…"

    rows = [tuple(cut(c) for c in row) for row in _rows(results, width)]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(_COLUMNS)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r, row in zip(results, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if r.status == "SKIPPED":
            lines.append(f"    skipped: {r.details.get('reason', '')}")
        elif r.status == "FAIL" and "error" in r.details:
            lines.append(f"    error: {r.details['error']}")
    return "\n".join(lines)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _resolution(res: Any) -> str:
    """``"3% (note)"``: the smallest relative error in the tested quantity that makes the check
    FAIL, with how it follows from the band (``"-"`` when the check states none)."""
    if not isinstance(res, Mapping):
        return "-"
    rel = res.get("relative")
    head = "none (no relative error applies)" if rel is None else f"{rel:.3g} ({rel:.1%})"
    return f"{head}: {res.get('note', '')}"


def _markdown(results: Sequence[CheckResult], meta: Mapping[str, Any]) -> str:
    counts = summary(results)
    out = [
        "# iclkit check report",
        "",
        f"- iclkit {meta.get('iclkit_version', '?')}, mode `{meta.get('mode')}`, "
        f"seed {meta.get('seed')}, "
        f"{meta.get('seconds', 0):.1f} s in total",
        f"- {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['INFO']} INFO, "
        f"{counts['SKIPPED']} SKIPPED (INFO: a reported property, not a test; SKIPPED: the check "
        "could not run, for the reason given; neither is counted as a pass)",
        "- Marks: [2nd] restated by a third party; [READ ...] read from the named source; "
        "[RECON] reconstructed, not the paper's theorem; [MEASURED] this project's measurement "
        "(docs/provenance.md).",
        "",
        "| check | theorem | mark | status | measured | expected | tolerance | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            "| "
            + " | ".join(
                _md_escape(x)
                for x in (
                    f"[{r.name}](#{r.name.replace('.', '')})",
                    r.theorem,
                    r.mark,
                    f"**{r.status}**",
                    _fmt(r.measured),
                    _fmt(r.expected),
                    r.tolerance.split(": ", 1)[0],
                    f"{r.seconds:.1f}",
                )
            )
            + " |"
        )
    out.append("")
    for r in results:
        out += [f"## {r.name}", "", f"**{r.status}** — {r.theorem} {r.mark}", ""]
        if r.status == "SKIPPED":
            out += [f"Skipped: {r.details.get('reason', '')}", ""]
            continue
        out += [
            f"- measured: {_fmt(r.measured)}",
            f"- expected: {_fmt(r.expected)}",
            f"- tolerance: {r.tolerance}",
            f"- resolution: {_resolution(r.details.get('resolution'))}",
            f"- seconds: {r.seconds:.2f}",
        ]
        for k, v in r.details.items():
            if k in ("plots", "resolution"):
                continue
            text = json.dumps(to_jsonable(v)) if not isinstance(v, str) else v
            if len(text) > MD_DETAIL_CHARS:
                text = text[: MD_DETAIL_CHARS - 1] + "…"
            out.append(f"- {k}: {text}")
        out.append("")
        for p in r.plots:
            if p.endswith(".png"):
                pdf = p[:-4] + ".pdf"
                out += [f"![{r.name}]({p})", "", f"([PDF]({pdf}))", ""]
    return "\n".join(out) + "\n"


def write_report(
    results: Sequence[CheckResult], out_dir: Path | str, meta: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (atomically); returns both paths."""
    out = Path(out_dir)
    payload = {
        **{k: to_jsonable(v) for k, v in meta.items()},
        "summary": summary(results),
        "checks": [r.as_dict() for r in results],
    }
    j = write_text_atomically(out / "report.json", json.dumps(payload, indent=2) + "\n")
    m = write_text_atomically(out / "report.md", _markdown(results, meta))
    return Path(j), Path(m)
