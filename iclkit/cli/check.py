"""``iclkit check``: verify every theorem claim numerically and write a report (the main job).

Run the registered theorem checks (reference EM rates, the Theorem 3.1 construction, the LSA
gradient flow, the softmax dynamics, generalization), print a table (check, theorem, measured,
mark, measured, expected, tolerance, status), and write DIR/report.json, DIR/report.md and the
plots DIR/*.png, DIR/*.pdf. A check that cannot run is SKIPPED with the reason; a reported
property that no fault of the claim could change is INFO; neither counts as a pass. Marks say
whose statement a row tests (READ, 2nd, RECON, MEASURED; docs/provenance.md). Exit code 1 if
any check fails, 0 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json

from iclkit.checks import CheckConfig, CheckRun, run_checks, select_checks
from iclkit.checks.report import format_table

from . import options

_DEFAULTS = CheckConfig()


def add(sub: options.SubParsers) -> None:
    p = options.add_subcommand(sub, "check", run, doc=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="small grids: the whole run takes a few minutes on 2 CPU cores (default)",
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="paper-scale grids and more seeds (much slower)",
    )
    p.set_defaults(mode=_DEFAULTS.mode)
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        default=None,
        help="run only this check or group (e.g. em, em.rate_d); repeat or comma-separate",
    )
    options.add_out_option(
        p, "folder for report.json, report.md and plots", default=str(_DEFAULTS.out_dir)
    )
    options.add_field_option(p, _DEFAULTS, "seed", "run seed")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument(
        "--json",
        action="store_true",
        help="with --list: one JSON object per check and line (name, theorem, mark, group, "
        "description)",
    )
    options.add_field_option(
        p, _DEFAULTS, "threads", "torch CPU threads (one is fastest for the checks' small problems)"
    )
    options.add_progress_option(p)


def _list(only: tuple[str, ...], as_json: bool) -> str:
    if as_json:
        return "\n".join(json.dumps(c.as_dict()) for c in select_checks(only))
    lines = []
    for c in select_checks(only):
        lines += [f"{c.name:<36} {c.theorem} {c.mark}", f"{'':<36} {c.description}"]
    return "\n".join(lines)


def _summary(run: CheckRun) -> str:
    c = run.counts
    return (
        f"{c['PASS']} passed, {c['FAIL']} failed, {c['INFO']} info (not counted as passes), "
        f"{c['SKIPPED']} skipped in {run.seconds:.1f} s; "
        f"report: {run.md_path} and {run.json_path}"
    )


def run(args: argparse.Namespace) -> int:
    only = tuple(args.only or ())
    if args.list:
        print(_list(only, args.json))
        return 0
    options.check_out_dir(args.out)  # before minutes of checks, not after
    config = options.config_from_args(CheckConfig, args, only=only, out_dir=args.out)
    result = run_checks(config)
    print(format_table(result.results))
    print(_summary(result))
    return 1 if result.failed else 0
