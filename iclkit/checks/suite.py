"""Running the theorem checks as one job: :class:`CheckConfig` in, :class:`CheckRun` out.

:func:`run_checks` selects the checks (:func:`~iclkit.checks.registry.select_checks`), runs each
with :func:`~iclkit.checks.registry.run_check` under a progress bar and a fixed number of torch
CPU threads, and writes ``report.json`` and ``report.md`` (:mod:`iclkit.checks.report`). This is
what ``iclkit check`` calls.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from iclkit.theory.validation import ParameterError, check_int, check_seed
from iclkit.version import __version__

from .registry import CheckResult, Mode, run_check, select_checks
from .report import summary, write_report

__all__ = ["CheckConfig", "CheckRun", "run_checks"]


@dataclass(frozen=True)
class CheckConfig:
    """Settings of one run of the checks.

    Attributes
    ----------
    mode : {"quick", "full"}
        ``quick``: small grids, the whole suite in minutes on 2 CPU cores; ``full``: paper scale.
    seed : int
        Run seed, >= 0; each check derives its own from it and its name.
    only : tuple of str
        Check names or groups to run (comma-separated entries allowed); empty: all.
    out_dir : path
        Folder for ``report.json``, ``report.md`` and the plots.
    threads : int
        torch CPU threads while the checks run (default 1: their small problems run fastest
        single-threaded); the previous setting is restored afterwards.
    progress : bool
        Show a progress bar (only when stderr is a terminal).
    params : mapping
        Check name -> overrides of that check's settings (fault injection).
    """

    mode: Mode = "quick"
    seed: int = 0
    only: tuple[str, ...] = ()
    out_dir: str | Path = "iclkit-report"
    threads: int = 1
    progress: bool = True
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("quick", "full"):
            raise ParameterError(f"mode must be 'quick' or 'full', got {self.mode!r}")
        check_seed(self.seed, "seed")
        check_int(self.threads, "threads", minimum=1)


@dataclass(frozen=True)
class CheckRun:
    """The results of :func:`run_checks` and where the report went."""

    config: CheckConfig
    results: tuple[CheckResult, ...]
    seconds: float
    json_path: Path
    md_path: Path

    @property
    def counts(self) -> dict[str, int]:
        """Checks per status, ``{"PASS": .., "FAIL": .., "INFO": .., "SKIPPED": ..}``."""
        return summary(self.results)

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return self.counts["FAIL"] > 0


def run_checks(config: CheckConfig) -> CheckRun:
    """Run the selected checks and write the report into ``config.out_dir``.

    Raises :class:`ParameterError` for an ``only`` entry that names no check or group; a
    failing or crashing check is a ``FAIL`` row, never an exception.
    """
    checks = select_checks(config.only)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    hide = not config.progress or not sys.stderr.isatty()
    t0 = time.perf_counter()
    results: list[CheckResult] = []
    try:
        with tqdm(checks, desc="iclkit check", unit="check", disable=hide, leave=False) as bar:
            for check in bar:
                bar.set_postfix_str(check.name)
                results.append(
                    run_check(
                        check,
                        mode=config.mode,
                        seed=config.seed,
                        out_dir=config.out_dir,
                        params=config.params.get(check.name),
                    )
                )
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - t0
    meta = {
        "iclkit_version": __version__,
        "mode": config.mode,
        "seed": config.seed,
        "seconds": seconds,
    }
    json_path, md_path = write_report(results, config.out_dir, meta)
    return CheckRun(config, tuple(results), seconds, json_path, md_path)
