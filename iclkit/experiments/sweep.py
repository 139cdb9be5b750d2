"""Resumable sweeps over the cells of MoR Figures 1-4, run on ``dask.distributed``.

The cells of a preset (:mod:`iclkit.experiments.cells`) run as tasks on a ``dask.distributed``
cluster: a ``LocalCluster`` by default, or an existing scheduler given by address (for example
one started by dask-jobqueue on SLURM; checkpoints then need a file system shared with the
workers). Checkpoints go to ``OUT/<figure>/checkpoints/train-<id>.pt``, named by the training part of the
cell's spec only (:func:`iclkit.experiments.cells.training_id`): a cell whose evaluation changes
reuses its trained model.

The client (the only writer) stores each finished cell's rows at once
(:mod:`iclkit.experiments.storage`, ``OUT/<figure>/results/cell-<id>.parquet``, atomically), so
a kill -9 loses at most the cells still running (their checkpoints remain) and a rerun skips
every cell whose file exists: no cell is ever stored twice.

The names of :mod:`.cells` and :mod:`.storage` that a sweep's user needs are re-exported here.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.config
from dask.distributed import Client, LocalCluster, as_completed
from tqdm.auto import tqdm

from iclkit.theory.validation import ParameterError

from .cells import FIGURES, SCALES, Cell, Preset, cell_id, cells_of, load_preset, run_cell
from .storage import (
    RESULT_SCHEMA,
    clean_temporaries,
    finished_cells,
    provenance,
    read_results,
    results_dir,
    write_cell,
)
from .training import RunStatus

__all__ = [
    "FIGURES",
    "RESULT_SCHEMA",
    "SCALES",
    "Cell",
    "Preset",
    "SweepResult",
    "cell_id",
    "cells_of",
    "finished_cells",
    "load_preset",
    "read_results",
    "results_dir",
    "run_cell",
    "run_sweep",
    "start_local_cluster",
    "write_cell",
]

#: Worker processes of the default LocalCluster when the preset names none (at most the CPUs):
#: two cells at a time keep a laptop responsive.
DEFAULT_WORKERS = 2

#: The local cluster's (unauthenticated) dashboard listens on the loopback interface only, on a
#: free port (its scheduler does too: LocalCluster's default host, or in-process transport).
LOCAL_HOST = "127.0.0.1"

#: Environment that dask's nannies export to every worker process before it starts, changed for
#: this workload. dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` by default (to hand freed memory back
#: to the OS sooner); setting any of glibc's malloc thresholds switches off its dynamic mmap
#: threshold, so every temporary tensor above 128 KiB is then mmap-ed and unmapped again, and
#: a training step pays for it in page faults: measured on one fig1 quick cell (300 steps and
#: its evaluation, one thread), 5.5 million minor page faults and 9.7 s of system time against
#: 0.23 million and 0.8 s without the variable, and 1.7x the CPU time per training step.
#: ``None`` removes the variable (dask's own convention); the BLAS thread counts stay 1.
WORKER_PRE_SPAWN_ENVIRON: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": None}

#: Seconds to wait for an existing scheduler (``--scheduler``) before giving up.
SCHEDULER_TIMEOUT_S = 30


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes
    ----------
    status : "finished" (every cell stored) or "failed" (some cells raised; see ``failures``).
    cells_total, cells_run, cells_skipped : counts over all figures.
    failures : cell label -> error message.
    results_dirs : figure -> folder of its parquet files.
    stats : wall time, scheduler.
    """

    status: RunStatus  # "finished" or "failed"
    cells_total: int
    cells_run: int
    cells_skipped: int
    failures: dict[str, str] = field(default_factory=dict)
    results_dirs: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def _cluster_settings(presets: Sequence[Preset], pending: int) -> dict[str, Any]:
    c = presets[0].sections.get("cluster", {})
    workers = c.get("n_workers", min(DEFAULT_WORKERS, os.cpu_count() or 1))
    return {
        "n_workers": max(1, min(int(workers), pending)),
        "threads_per_worker": int(c.get("threads_per_worker", 1)),
        "processes": bool(c.get("processes", True)),
    }


def start_local_cluster(settings: dict[str, Any]) -> LocalCluster:
    """A ``LocalCluster`` on the loopback interface whose worker processes start with
    :data:`WORKER_PRE_SPAWN_ENVIRON` applied to dask's pre-spawn environment."""
    environ = {
        f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_PRE_SPAWN_ENVIRON.items()
    }
    with dask.config.set(environ):
        return LocalCluster(
            dashboard_address=f"{LOCAL_HOST}:0", silence_logs=logging.ERROR, **settings
        )


def run_sweep(
    presets: Preset | Iterable[Preset],
    out: str,
    *,
    scheduler: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run (or resume) the sweeps of ``presets`` on Dask; store each finished cell at once.

    Parameters
    ----------
    presets : one preset or several (their cells are submitted together so workers stay busy).
    out : output folder; figure f's rows go to ``out/f/results``, checkpoints to
        ``out/f/checkpoints``.
    scheduler : address of an existing Dask scheduler (``tcp://host:8786``); ``None`` starts a
        ``LocalCluster`` on 127.0.0.1 with the preset's ``[cluster]`` settings (default 2
        single-threaded worker processes). The scheduler must be trusted: the client unpickles
        the results it sends back, which can run arbitrary code.
    progress : tqdm bar over cells (only on a terminal).
    """
    plist = [presets] if isinstance(presets, Preset) else list(presets)
    if not plist:
        raise ParameterError("presets must not be empty")
    t0 = time.perf_counter()
    todo: list[Cell] = []
    dirs: dict[str, str] = {}
    total = skipped = 0
    for p in plist:
        rdir = results_dir(out, p.figure)
        dirs[p.figure] = rdir
        os.makedirs(rdir, exist_ok=True)
        clean_temporaries(out, p.figure)  # left by a kill -9 (iclkit.io)
        done = finished_cells(rdir)
        for cell in cells_of(p):
            total += 1
            if cell.cell_id in done:
                skipped += 1
            else:
                todo.append(cell)
    failures: dict[str, str] = {}
    run = 0
    settings: dict[str, Any] = {}
    if todo:
        meta = provenance()
        cluster = None
        if scheduler is None:
            settings = _cluster_settings(plist, len(todo))
            cluster = start_local_cluster(settings)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise ParameterError(
                    f"--scheduler: cannot connect to {scheduler!r} ({exc})"
                ) from None
            settings = {"scheduler": scheduler}
        threads = int(settings.get("threads_per_worker", 1)) if cluster is not None else None
        try:
            futures: dict[str, Cell] = {}
            submitted = []
            for cell in todo:
                ckpt_dir = os.path.join(out, cell.figure, "checkpoints")
                os.makedirs(ckpt_dir, exist_ok=True)
                fut = client.submit(
                    run_cell,
                    cell.spec,
                    os.path.abspath(ckpt_dir),
                    torch_threads=threads,
                    key=f"iclkit-{cell.figure}-{cell.cell_id}",
                    pure=False,
                )
                futures[str(fut.key)] = cell
                submitted.append(fut)
            bar = tqdm(
                total=len(todo), desc="cells", disable=not (progress and sys.stderr.isatty())
            )
            for fut in as_completed(submitted):
                cell = futures[str(fut.key)]
                try:
                    frame = fut.result()
                except Exception as exc:  # one failing cell must not lose the others
                    failures[cell.label] = f"{type(exc).__name__}: {exc}"
                else:
                    write_cell(dirs[cell.figure], frame, meta)
                    run += 1
                bar.update(1)
            bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return SweepResult(
        status="failed" if failures else "finished",
        cells_total=total,
        cells_run=run,
        cells_skipped=skipped,
        failures=failures,
        results_dirs=dirs,
        stats={"seconds": time.perf_counter() - t0, "cluster": settings},
    )
