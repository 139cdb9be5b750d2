"""Run every mutant of :mod:`tests.mutation.mutants` against ``iclkit check --quick``.

Usage (from the repository root; on demand, not in CI)::

    OMP_NUM_THREADS=1 python -m tests.mutation.run [--only NAME ...] [--json PATH] [--out DIR]

Each mutant is applied, the quick checks of its groups run through
:func:`iclkit.checks.run_checks`, and the mutant is restored. A mutant is *killed* when at least
one check FAILs; the table printed (markdown) lists the killing checks with their measured value
and the checks that still passed. The unmutated quick run is the baseline (every check passes;
``iclkit check --quick``), so it is not repeated here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from iclkit.checks import CheckConfig, run_checks

from .mutants import MUTANTS, Mutant, applied


def run_mutant(mutant: Mutant, out_dir: Path) -> dict[str, Any]:
    """Run ``mutant``'s groups under it; returns its row: killed, killers, survivors, seconds."""
    start = time.perf_counter()
    with applied(mutant):
        run = run_checks(
            CheckConfig(
                mode="quick", only=mutant.groups, out_dir=out_dir / mutant.name, progress=False
            )
        )
    killers = {r.name: r.measured for r in run.results if r.status == "FAIL"}
    errors = {
        r.name: str(r.details.get("error", ""))[:200] for r in run.results if "error" in r.details
    }
    passed = [r.name for r in run.results if r.status == "PASS"]
    return {
        "mutant": mutant.name,
        "what": mutant.what,
        "groups": list(mutant.groups),
        "killed": bool(killers),
        "killed_by": killers,
        "errors": errors,
        "still_pass": passed,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _fmt(v: Any) -> str:
    """A measured value, 4 significant digits when numeric."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the rows."""
    lines = [
        "| mutant | bug | groups run | killed by (measured) | s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        killed = r["killed_by"].items()
        killers = ", ".join(f"`{k}` ({_fmt(v)})" for k, v in killed) or "**survived**"
        lines.append(
            f"| `{r['mutant']}` | {r['what']} | {', '.join(r['groups'])} | {killers} | "
            f"{r['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the mutants (all, or ``--only``), print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="mutant names")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: temp)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    out = args.out or Path(tempfile.mkdtemp(prefix="iclkit-mutation-"))
    rows = []
    for m in chosen:
        rows.append(run_mutant(m, out))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
