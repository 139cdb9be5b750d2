"""Storage of a sweep's results: one parquet file per finished cell, with provenance.

The client of a sweep (the only writer) stores each finished cell's rows as one parquet file
``<results_dir>/cell-<id>.parquet``, written to a temporary file in the same folder and renamed
into place (:func:`iclkit.io.write_atomically`), so a reader never sees a partial file and a
rerun can skip every cell whose file exists. Each row carries the resolved config, the package
versions and the git commit (:func:`provenance`).
"""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
from datetime import UTC, datetime

import dask
import numpy
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from iclkit.io import write_atomically
from iclkit.theory.validation import ParameterError
from iclkit.version import __version__

__all__ = [
    "RESULT_SCHEMA",
    "clean_temporaries",
    "finished_cells",
    "provenance",
    "read_results",
    "results_dir",
    "write_cell",
]

#: Seconds a ``git`` call of :func:`provenance` may take before the commit is "unknown".
GIT_TIMEOUT_S = 10

_PREFIX, _SUFFIX = "cell-", ".parquet"

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


def clean_temporaries(out: str, figure: str) -> list[str]:
    """Remove the temporary files (``.tmp-*``, :func:`iclkit.io.write_atomically`) that a
    killed sweep of ``figure`` left under ``out``: in the figure's folder (figures), its
    ``results/`` and its ``checkpoints/``. Returns the paths removed.

    A sweep owns its output folder: two sweeps must not write into one ``out`` at once.
    """
    removed = []
    base = os.path.join(out, figure)
    for folder in (base, results_dir(out, figure), os.path.join(base, "checkpoints")):
        for stale in glob.glob(os.path.join(folder, ".tmp-*")):
            if os.path.isfile(stale):
                os.unlink(stale)
                removed.append(stale)
    return removed


def results_dir(out: str, figure: str) -> str:
    """The folder of ``figure``'s result files under the output folder ``out``."""
    return os.path.join(out, figure, "results")


def provenance() -> dict[str, str]:
    """Package versions (JSON) and the git commit of the iclkit source tree."""
    versions = {
        "python": platform.python_version(),
        "iclkit": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "dask": dask.__version__,
    }
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"versions_json": json.dumps(versions, sort_keys=True), "git_commit": commit}


def _cell_path(results_dir: str, cell_id: str) -> str:
    return os.path.join(results_dir, f"{_PREFIX}{cell_id}{_SUFFIX}")


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
    names = glob.glob(os.path.join(results_dir, f"{_PREFIX}*{_SUFFIX}"))
    return {os.path.basename(p)[len(_PREFIX) : -len(_SUFFIX)] for p in names}


def read_results(results_dir: str) -> pd.DataFrame:
    """All stored rows under ``results_dir`` (temporary files are ignored)."""
    files = sorted(glob.glob(os.path.join(results_dir, f"{_PREFIX}*{_SUFFIX}")))
    if not files:
        raise ParameterError(f"--results: no result files (cell-*.parquet) in {results_dir}")
    tables = [pq.read_table(f, schema=RESULT_SCHEMA) for f in files]
    return pa.concat_tables(tables).to_pandas()
