"""``iclkit check``: run the theorem checks and write the report."""

from __future__ import annotations

import argparse

from iclkit import __version__

from .options import SubParsers


def add(sub: SubParsers) -> None:
    p = sub.add_parser(
        "check",
        help="verify every theorem claim numerically and write a report (the main job)",
        description=(
            "Run the registered theorem checks (reference EM rates, the Theorem 3.1 "
            "construction, the LSA gradient flow, the softmax dynamics, generalization), print a "
            "table (check, theorem, measured, expected, tolerance, status), and write "
            "DIR/report.json, DIR/report.md and the plots DIR/*.png, DIR/*.pdf. A check whose "
            "capability is missing is SKIPPED with the reason, never passed. Exit code 1 if any "
            "check fails, 0 otherwise, 2 for bad arguments."
        ),
    )
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
    p.set_defaults(mode="quick")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        default=None,
        help="run only this check or group (e.g. em, em.rate_d); repeat or comma-separate",
    )
    p.add_argument(
        "--out",
        default="iclkit-report",
        metavar="DIR",
        help="folder for report.json, report.md and plots (default ./iclkit-report)",
    )
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the checks' small problems run fastest single-threaded)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from iclkit.checks.registry import run_checks, select_checks
    from iclkit.checks.report import format_table, summary, write_report
    from iclkit.theory.validation import check_int

    seed = check_int(args.seed, "--seed", minimum=0)
    threads = check_int(args.threads, "--threads", minimum=1)
    checks = select_checks(args.only)
    if args.list:
        for c in checks:
            print(f"{c.name:<36} {c.theorem} {c.mark}")
            print(f"{'':<36} needs: {', '.join(c.requires) or '-'}")
        return 0
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        results = run_checks(
            checks, mode=args.mode, seed=seed, out_dir=args.out, progress=not args.no_progress
        )
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - t0
    meta = {"iclkit_version": __version__, "mode": args.mode, "seed": seed, "seconds": seconds}
    json_path, md_path = write_report(results, args.out, meta)
    print(format_table(results))
    counts = summary(results)
    print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIPPED']} skipped "
        f"in {seconds:.1f} s; report: {md_path} and {json_path}"
    )
    return 1 if counts["FAIL"] else 0


# --------------------------------------------------------------------------- dynamics group
