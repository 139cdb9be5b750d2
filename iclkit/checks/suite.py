"""Running the theorem checks as one job: :class:`CheckConfig` in, :class:`CheckRun` out.

:func:`run_checks` selects the checks (:func:`~iclkit.checks.registry.select_checks`), runs each
with :func:`~iclkit.checks.registry.run_check` under a progress bar and a fixed number of torch
CPU threads, and writes ``report.json`` and ``report.md`` (:mod:`iclkit.checks.report`). This is
what ``iclkit check`` calls.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from iclkit.theory.validation import ParameterError, check_bool, check_int, check_seed
from iclkit.version import __version__

from .registry import CheckResult, Mode, run_check, select_checks
from .report import summary, write_report

__all__ = ["CheckConfig", "CheckRun", "run_checks"]


#: Most torch CPU threads a run may ask for (a typo guard; torch takes a C int).
MAX_THREADS = 4096


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
        object.__setattr__(self, "seed", check_seed(self.seed, "seed"))
        object.__setattr__(
            self, "threads", check_int(self.threads, "threads", minimum=1, maximum=MAX_THREADS)
        )
        check_bool(self.progress, "progress")
        if isinstance(self.only, str):  # a bare "em,lsa" would iterate over its characters
            object.__setattr__(self, "only", (self.only,))
        if not isinstance(self.only, (tuple, list)) or not all(
            isinstance(w, str) for w in self.only
        ):
            raise ParameterError(f"only must be a tuple of check names, got {self.only!r}")
        object.__setattr__(self, "only", tuple(self.only))
        if not isinstance(self.out_dir, (str, Path)) or not str(self.out_dir):
            raise ParameterError(f"out_dir must be a non-empty path, got {self.out_dir!r}")
        if not isinstance(self.params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in self.params.items()
        ):
            raise ParameterError(
                f"params must map check names to mappings of settings, got {self.params!r}"
            )


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


def _prepare_out_dir(out_dir: str | Path) -> None:
    """Create ``out_dir`` (and its parents), or raise :class:`ParameterError` naming it.

    Not in :class:`CheckConfig` itself: a config is also made at import time (the CLI's
    defaults), where a stray file of the default folder's name must not break every command.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ParameterError(f"out_dir: {out_dir} is a file, not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ParameterError(f"out_dir: cannot create directory {out_dir} ({reason})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ParameterError(f"out_dir: directory {out_dir} is not writable (permission denied)")


def run_checks(config: CheckConfig) -> CheckRun:
    """Run the selected checks and write the report into ``config.out_dir``.

    Raises :class:`ParameterError` for an ``only`` entry that names no check or group; a
    failing or crashing check is a ``FAIL`` row, never an exception.
    """
    if not isinstance(config, CheckConfig):
        raise ParameterError(f"config must be a CheckConfig, got {config!r}")
    checks = select_checks(config.only)
    _prepare_out_dir(config.out_dir)  # a bad folder fails now, not after minutes of checks
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
