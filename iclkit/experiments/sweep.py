"""Resumable sweeps over the cells of MoR Figures 1-4, run on ``dask.distributed``.

A *preset* (TOML, one per figure and scale, shipped in ``iclkit/experiments/presets``) fixes
the base settings (``[data]``, ``[model]``, ``[train]``, ``[eval]``, ``[cluster]``) and a
``[grid]`` of swept values (K, snr, n, d, D, layers, heads, B, seed). Each point of the grid is
a *cell*: its fully resolved configuration is hashed into ``cell_id``.

A cell trains one transformer (:func:`iclkit.experiments.training.train`, checkpointing to
``OUT/<figure>/checkpoints/cell-<id>.pt``) and evaluates it and the baselines on the same
held-out prompts (:func:`iclkit.experiments.evaluation.evaluate`). Cells run as tasks on a
``dask.distributed`` cluster: a ``LocalCluster`` by default, or an existing scheduler given by
address (for example one started by dask-jobqueue on SLURM; checkpoints then need a file
system shared with the workers).

Results: the client (the only writer) stores each finished cell's rows as one parquet file
``OUT/<figure>/results/cell-<id>.parquet``, written to a temporary file in the same folder
and renamed into place, so a reader never sees a partial file, a kill -9 loses at most the
cells still running (their checkpoints remain) and a rerun skips every cell whose file exists,
so no cell is ever stored twice. Each row carries the resolved config, the package versions
and the git commit.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.resources
import itertools
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from iclkit.io import write_atomically
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError, check_int

__all__ = [
    "FIGURES",
    "RESULT_SCHEMA",
    "SCALES",
    "Cell",
    "Preset",
    "SweepResult",
    "cells_of",
    "load_preset",
    "read_results",
    "run_cell",
    "run_sweep",
]

FIGURES: tuple[str, ...] = ("fig1", "fig2", "fig3", "fig4")
SCALES: tuple[str, ...] = ("smoke", "quick", "paper")

# grid key -> (section, field) of the resolved cell spec
GRID_KEYS: dict[str, tuple[str, str]] = {
    "K": ("data", "K"),
    "snr": ("data", "snr"),
    "n": ("data", "n"),
    "d": ("data", "d"),
    "D": ("model", "D"),
    "layers": ("model", "layers"),
    "heads": ("model", "heads"),
    "B": ("train", "pool_size"),
    "seed": ("", "seed"),
}
_SECTIONS = ("data", "model", "train", "eval", "cluster")

RESULT_SCHEMA = pa.schema(
    [
        ("figure", pa.string()),
        ("scale", pa.string()),
        ("cell_id", pa.string()),
        ("seed", pa.int64()),
        ("method", pa.string()),
        ("position", pa.int64()),
        ("excess_risk", pa.float64()),
        ("excess_risk_se", pa.float64()),
        ("excess_risk_direct", pa.float64()),
        ("excess_risk_direct_se", pa.float64()),
        ("mse", pa.float64()),
        ("mse_se", pa.float64()),
        ("oracle_mse", pa.float64()),
        ("prompts", pa.int64()),
        ("K", pa.int64()),
        ("d", pa.int64()),
        ("n", pa.int64()),
        ("snr", pa.float64()),
        ("D", pa.int64()),
        ("layers", pa.int64()),
        ("heads", pa.int64()),
        ("arch", pa.string()),
        ("train_mode", pa.string()),
        ("B", pa.int64()),
        ("train_steps", pa.int64()),
        ("final_train_loss", pa.float64()),
        ("train_seconds", pa.float64()),
        ("eval_seconds", pa.float64()),
        ("config_json", pa.string()),
        ("versions_json", pa.string()),
        ("git_commit", pa.string()),
        ("finished_utc", pa.string()),
    ]
)


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """A parsed preset: figure, scale, base sections and the grid (as read from TOML)."""

    figure: str
    scale: str
    description: str
    grid: dict[str, list[Any]]
    sections: dict[str, dict[str, Any]]
    source: str


def load_preset(figure: str, preset: str = "quick") -> Preset:
    """Load the preset ``preset`` (smoke|quick|paper, or a path to a TOML file) of ``figure``."""
    if figure not in FIGURES:
        raise ParameterError(f"figure must be one of {FIGURES}, got {figure!r}")
    if preset in SCALES:
        ref = (
            importlib.resources.files("iclkit.experiments") / "presets" / f"{figure}_{preset}.toml"
        )
        text, source = ref.read_text(encoding="utf-8"), f"{figure}_{preset}.toml"
    elif preset.endswith(".toml"):
        if not os.path.isfile(preset):
            raise ParameterError(f"--preset: file not found: {preset}")
        with open(preset, encoding="utf-8") as fh:
            text, source = fh.read(), os.path.abspath(preset)
    else:
        raise ParameterError(f"--preset must be one of {SCALES} or a .toml path, got {preset!r}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"--preset: {source} is not valid TOML ({exc})") from None
    fig = raw.get("figure", figure)
    if fig != figure:
        raise ParameterError(f"--preset: {source} is for figure {fig!r}, not {figure!r}")
    grid = raw.get("grid", {})
    unknown = [k for k in grid if k not in GRID_KEYS]
    if unknown:
        raise ParameterError(
            f"grid: unknown key(s) {unknown} in {source}; allowed: {sorted(GRID_KEYS)}"
        )
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ParameterError(f"grid.{k} must be a non-empty list in {source}")
    extra = [k for k in raw if k not in (*_SECTIONS, "grid", "figure", "scale", "description")]
    if extra:
        raise ParameterError(f"--preset: unknown section(s) {extra} in {source}")
    return Preset(
        figure=figure,
        scale=str(raw.get("scale", preset if preset in SCALES else "custom")),
        description=str(raw.get("description", "")),
        grid={k: list(v) for k, v in grid.items()},
        sections={s: dict(raw.get(s, {})) for s in _SECTIONS},
        source=source,
    )


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One point of a sweep: ``spec`` is the fully resolved configuration (JSON-able)."""

    figure: str
    cell_id: str
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        d, m, t = self.spec["data"], self.spec["model"], self.spec["train"]
        parts = [f"K={d['K']}", f"snr={d['snr']}", f"d={d['d']}", f"n={d['n']}", f"D={m['D']}"]
        if t.get("pool_size") is not None:
            parts.append(f"B={t['pool_size']}")
        return f"{self.figure}[{' '.join(parts)} seed={self.spec['seed']}]"


def _positions(spec: Any, n: int) -> list[int]:
    if spec is None or spec == "query":
        return [n]
    if spec == "all":
        return list(range(1, n + 1))
    if isinstance(spec, str) and spec.startswith("log:"):
        count = check_int(int(spec[4:]), "eval.positions (log:COUNT)", minimum=2)
        pts = {max(1, min(n, round(math.exp(math.log(n) * i / (count - 1))))) for i in range(count)}
        return sorted(pts | {n})
    if isinstance(spec, list):
        return sorted({check_int(p, "eval.positions", minimum=1, maximum=n) for p in spec})
    raise ParameterError(
        f"eval.positions must be 'query', 'all', 'log:COUNT' or a list of ints, got {spec!r}"
    )


def cells_of(preset: Preset) -> list[Cell]:
    """The cells of ``preset``: the Cartesian product of its grid over the base sections."""
    keys = list(preset.grid)
    out = []
    for values in itertools.product(*(preset.grid[k] for k in keys)) if keys else [()]:
        spec: dict[str, Any] = {
            "figure": preset.figure,
            "scale": preset.scale,
            "seed": 0,
            **{s: dict(preset.sections[s]) for s in ("data", "model", "train", "eval")},
        }
        for k, v in zip(keys, values, strict=True):
            section, name = GRID_KEYS[k]
            if section:
                spec[section][name] = v
            else:
                spec[name] = v
        if spec["train"].get("pool_size") is not None:
            spec["train"]["mode"] = "fixed"
        n = int(spec["data"].get("n", 100))
        spec["eval"]["positions"] = _positions(spec["eval"].get("positions"), n)
        _build_configs(spec)  # validate early: a bad preset fails before any training
        blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        cell_id = hashlib.sha256(blob.encode()).hexdigest()[:16]
        out.append(Cell(preset.figure, cell_id, spec))
    return out


def _build_configs(spec: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    from .evaluation import EvalConfig
    from .models import ModelConfig
    from .training import Curriculum, TrainConfig

    data_kw = dict(spec["data"])
    if "pi" in data_kw and data_kw["pi"] is not None:
        data_kw["pi"] = tuple(data_kw["pi"])
    try:
        data = MoRConfig(**data_kw)
    except TypeError as exc:
        raise ParameterError(f"data: {exc}") from None
    model_kw = dict(spec["model"])
    model_kw.setdefault("max_n", data.n)
    try:
        model = ModelConfig(d=data.d, **model_kw)
        train_kw = dict(spec["train"])
        seed = check_int(spec.get("seed", 0), "seed", minimum=0)
        cur = train_kw.pop("curriculum", None)
        train = TrainConfig(**train_kw, seed=seed, curriculum=Curriculum(**cur) if cur else None)
        ev_kw = dict(spec["eval"])
        ev_kw["positions"] = tuple(ev_kw["positions"])
        if "methods" in ev_kw:
            ev_kw["methods"] = tuple(ev_kw["methods"])
        ev = EvalConfig(**ev_kw)
    except TypeError as exc:
        raise ParameterError(f"preset: {exc}") from None
    return data, model, train, ev


def run_cell(
    spec: dict[str, Any],
    checkpoint_dir: str,
    *,
    torch_threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Train and evaluate one cell; return its rows (without the provenance columns).

    Runs on a Dask worker. Resumes from ``checkpoint_dir/cell-<id>.pt`` if it exists.
    """
    import torch

    from .evaluation import evaluate
    from .training import train

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    data, model_config, train_config, eval_config = _build_configs(spec)
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    cell_id = hashlib.sha256(blob.encode()).hexdigest()[:16]
    ckpt = os.path.join(checkpoint_dir, f"cell-{cell_id}.pt")
    result = train(model_config, data, train_config, checkpoint=ckpt, progress=progress)
    t0 = time.perf_counter()
    ev = evaluate(result.model, data, eval_config, seed=train_config.seed)
    eval_seconds = time.perf_counter() - t0
    frame = ev.to_frame()
    frame["figure"] = spec["figure"]
    frame["scale"] = spec["scale"]
    frame["cell_id"] = cell_id
    frame["seed"] = train_config.seed
    frame["K"] = data.K
    frame["d"] = data.d
    frame["n"] = data.n
    frame["snr"] = float("nan") if data.snr is None else float(data.snr)
    frame["D"] = model_config.D
    frame["layers"] = model_config.layers
    frame["heads"] = model_config.heads
    frame["arch"] = model_config.arch
    frame["train_mode"] = train_config.mode
    frame["B"] = train_config.pool_size if train_config.pool_size is not None else pd.NA
    frame["train_steps"] = result.step
    frame["final_train_loss"] = result.final_loss
    frame["train_seconds"] = float(result.stats["seconds"])
    frame["eval_seconds"] = eval_seconds
    frame["config_json"] = blob
    return frame


# --------------------------------------------------------------------------- provenance
def provenance() -> dict[str, str]:
    """Package versions (JSON) and the git commit of the iclkit source tree."""
    import dask
    import numpy
    import torch

    import iclkit

    versions = {
        "python": platform.python_version(),
        "iclkit": iclkit.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "dask": dask.__version__,
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(iclkit.__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"versions_json": json.dumps(versions, sort_keys=True), "git_commit": commit}


# --------------------------------------------------------------------------- results I/O
def _cell_path(results_dir: str, cell_id: str) -> str:
    return os.path.join(results_dir, f"cell-{cell_id}.parquet")


def write_cell(results_dir: str, frame: pd.DataFrame, meta: dict[str, str]) -> str:
    """Store one cell's rows atomically (temporary file + rename) under ``results_dir``."""
    frame = frame.copy()
    for k, v in meta.items():
        frame[k] = v
    frame["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    table = pa.Table.from_pandas(
        frame[RESULT_SCHEMA.names], schema=RESULT_SCHEMA, preserve_index=False
    )
    path = _cell_path(results_dir, str(frame["cell_id"].iloc[0]))
    return write_atomically(path, lambda fh: pq.write_table(table, fh))


def finished_cells(results_dir: str) -> set[str]:
    """Ids of the cells whose result file exists."""
    names = glob.glob(os.path.join(results_dir, "cell-*.parquet"))
    return {os.path.basename(p)[5:-8] for p in names}


def read_results(results_dir: str) -> pd.DataFrame:
    """All stored rows under ``results_dir`` (temporary files are ignored)."""
    files = sorted(glob.glob(os.path.join(results_dir, "cell-*.parquet")))
    if not files:
        raise ParameterError(f"--results: no result files (cell-*.parquet) in {results_dir}")
    tables = [pq.read_table(f, schema=RESULT_SCHEMA) for f in files]
    return pa.concat_tables(tables).to_pandas()


# --------------------------------------------------------------------------- sweep
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

    status: Literal["finished", "failed"]
    cells_total: int
    cells_run: int
    cells_skipped: int
    failures: dict[str, str] = field(default_factory=dict)
    results_dirs: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def results_dir(out: str, figure: str) -> str:
    return os.path.join(out, figure, "results")


def _cluster_settings(presets: Sequence[Preset], pending: int) -> dict[str, Any]:
    c = presets[0].sections.get("cluster", {})
    workers = c.get("n_workers", min(2, os.cpu_count() or 1))
    return {
        "n_workers": max(1, min(int(workers), pending)),
        "threads_per_worker": int(c.get("threads_per_worker", 1)),
        "processes": bool(c.get("processes", True)),
    }


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
        ``LocalCluster`` with the preset's ``[cluster]`` settings (default 2 single-threaded
        worker processes).
    progress : tqdm bar over cells (only on a terminal).
    """
    from tqdm.auto import tqdm

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
        for stale in glob.glob(os.path.join(rdir, ".tmp-*")):  # left by a kill -9
            os.unlink(stale)
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
        from dask.distributed import Client, LocalCluster, as_completed

        meta = provenance()
        cluster = None
        if scheduler is None:
            settings = _cluster_settings(plist, len(todo))
            cluster = LocalCluster(dashboard_address=":0", silence_logs=logging.ERROR, **settings)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout=30)
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
