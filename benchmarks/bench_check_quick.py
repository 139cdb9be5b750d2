"""Wall time of ``iclkit check --quick`` (target: < 5 minutes on 2 CPU cores).

Runs the whole quick suite in-process (:func:`iclkit.checks.run_checks`, as the CLI does,
single-threaded torch by default) and prints the time of every check, of every group and in
total, plus the machine's load average so figures taken under load can be told apart. Not a
test: nothing is asserted.

Usage: ``python benchmarks/bench_check_quick.py [--threads N] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

from iclkit.checks import CheckConfig, run_checks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", action="append", default=None)
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        config = CheckConfig(
            only=tuple(args.only or ()), out_dir=out, threads=args.threads, progress=False
        )
        t0 = time.perf_counter()
        results = run_checks(config).results
        total = time.perf_counter() - t0
    groups: dict[str, float] = defaultdict(float)
    for r in results:
        groups[r.name.split(".")[0]] += r.seconds
        print(f"{r.name:<38} {r.status:<8} {r.seconds:7.2f} s")
    print("-" * 58)
    for g, s in groups.items():
        print(f"{g:<38} {'':<8} {s:7.2f} s")
    print(f"{'total':<38} {'':<8} {total:7.2f} s  (target < 300 s on 2 cores)")
    print(
        f"torch threads {args.threads}; load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f} (other jobs on the machine slow these figures)"
    )


if __name__ == "__main__":
    main()
