"""The cells of a sweep over MoR Figures 1-4: presets, their grid of cells, and one cell's run.

A *preset* (TOML, one per figure and scale, shipped in ``iclkit/experiments/presets``) fixes
the base settings (``[data]``, ``[model]``, ``[train]``, ``[eval]``, ``[cluster]``) and a
``[grid]`` of swept values (K, snr, n, d, D, layers, heads, B, seed). Each point of the grid is
a *cell*: its fully resolved configuration (``spec``) is hashed into :func:`cell_id`.

A cell trains one transformer (:func:`iclkit.experiments.training.train`, checkpointing to
``<checkpoint_dir>/train-<training id>.pt``) and evaluates it and the baselines on the same held-out
prompts (:func:`iclkit.experiments.evaluation.evaluate`): :func:`run_cell`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
import json
import math
import os
import time
import tomllib
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError, check_int, check_seed

from .evaluation import EvalConfig, evaluate
from .models import ModelConfig
from .training import Curriculum, TrainConfig, train

__all__ = [
    "FIGURES",
    "GRID_KEYS",
    "SCALES",
    "Cell",
    "Preset",
    "build_configs",
    "cell_id",
    "cells_of",
    "checkpoint_path",
    "load_preset",
    "run_cell",
    "training_id",
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

#: Hex digits of the SHA-256 of a spec kept as its id: 64 bits, so two cells of any realistic
#: sweep never share an id.
CELL_ID_HEX_DIGITS = 16


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


def _spec_json(spec: dict[str, Any]) -> str:
    """The canonical JSON of a spec (sorted keys, no spaces): what :func:`cell_id` hashes."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def cell_id(spec: dict[str, Any]) -> str:
    """The id of a cell: the first hex digits of the SHA-256 of its canonical spec JSON."""
    return hashlib.sha256(_spec_json(spec).encode()).hexdigest()[:CELL_ID_HEX_DIGITS]


#: The parts of a spec that determine the trained weights; the checkpoint is named by their hash
#: alone, so a cell whose evaluation changes (a new baseline, other prompt lengths) gets a new
#: cell id and new results but reuses the trained model.
TRAINING_KEYS: tuple[str, ...] = ("data", "model", "train", "seed")


def training_id(spec: dict[str, Any]) -> str:
    """The id of a cell's training run: the hash of its :data:`TRAINING_KEYS` only."""
    return cell_id({k: spec[k] for k in TRAINING_KEYS})


def checkpoint_path(checkpoint_dir: str, spec: dict[str, Any]) -> str:
    """``checkpoint_dir/train-<training id>.pt``; a checkpoint left under the cell's own id by an
    earlier version (``cell-<cell id>.pt``, the same training by construction) is renamed to it
    so that its training is not repeated."""
    path = os.path.join(checkpoint_dir, f"train-{training_id(spec)}.pt")
    legacy = os.path.join(checkpoint_dir, f"cell-{cell_id(spec)}.pt")
    if not os.path.exists(path) and os.path.exists(legacy):
        os.replace(legacy, path)
    return path


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
        n = _data_config(spec).n
        spec["eval"]["positions"] = _positions(spec["eval"].get("positions"), n)
        build_configs(spec)  # validate early: a bad preset fails before any training
        out.append(Cell(preset.figure, cell_id(spec), spec))
    return out


def _data_config(spec: dict[str, Any]) -> MoRConfig:
    data_kw = dict(spec["data"])
    if "pi" in data_kw and data_kw["pi"] is not None:
        data_kw["pi"] = tuple(data_kw["pi"])
    try:
        return MoRConfig(**data_kw)
    except TypeError as exc:
        raise ParameterError(f"data: {exc}") from None


def build_configs(spec: dict[str, Any]) -> tuple[MoRConfig, ModelConfig, TrainConfig, EvalConfig]:
    """The library configs of a resolved cell spec: (data, model, train, eval)."""
    data = _data_config(spec)
    model_kw = dict(spec["model"])
    model_kw.setdefault("max_n", data.n)
    try:
        model = ModelConfig(d=data.d, **model_kw)
        train_kw = dict(spec["train"])
        seed = check_seed(spec.get("seed", 0), "seed")
        cur = train_kw.pop("curriculum", None)
        train_config = TrainConfig(
            **train_kw, seed=seed, curriculum=Curriculum(**cur) if cur else None
        )
        ev_kw = dict(spec["eval"])
        ev_kw["positions"] = tuple(ev_kw["positions"])
        if "methods" in ev_kw:
            ev_kw["methods"] = tuple(ev_kw["methods"])
        ev = EvalConfig(**ev_kw)
    except TypeError as exc:
        raise ParameterError(f"preset: {exc}") from None
    return data, model, train_config, ev


def run_cell(
    spec: dict[str, Any],
    checkpoint_dir: str,
    *,
    torch_threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Train and evaluate one cell; return its rows (without the provenance columns).

    Runs on a Dask worker. Resumes from :func:`checkpoint_path` if it exists: cells that differ
    only in their evaluation share one training run.
    """
    if torch_threads is not None:
        torch.set_num_threads(check_int(torch_threads, "torch_threads", minimum=1, maximum=4096))
    data, model_config, train_config, eval_config = build_configs(spec)
    cid = cell_id(spec)
    ckpt = checkpoint_path(checkpoint_dir, spec)
    result = train(model_config, data, train_config, checkpoint=ckpt, progress=progress)
    t0 = time.perf_counter()
    ev = evaluate(result.model, data, eval_config, seed=train_config.seed)
    eval_seconds = time.perf_counter() - t0
    frame = ev.to_frame()
    frame["figure"] = spec["figure"]
    frame["scale"] = spec["scale"]
    frame["cell_id"] = cid
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
    frame["config_json"] = _spec_json(spec)
    return frame
