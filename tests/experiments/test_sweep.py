"""Tests of iclkit.experiments.sweep: shipped presets resolve, grids expand, results follow
RESULT_SCHEMA, a rerun skips finished cells, and a sweep killed with SIGKILL in a real
subprocess loses no finished cell and duplicates none; CLI bad input exits 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iclkit import cli
from iclkit.experiments.sweep import (
    FIGURES,
    RESULT_SCHEMA,
    SCALES,
    cells_of,
    finished_cells,
    load_preset,
    read_results,
    run_sweep,
    start_local_cluster,
)
from iclkit.theory.validation import ParameterError

TINY = """
figure = "fig1"
scale = "test"
[grid]
K = {K}
snr = [5.0]
[data]
d = 2
n = 6
[model]
arch = "relu_encoder"
D = 8
layers = 1
heads = 2
[train]
steps = {steps}
batch_size = 8
checkpoint_every = 10
[eval]
prompts = 16
positions = "log:3"
em_T = 3
methods = ["em", "ols"]
[cluster]
n_workers = 1
threads_per_worker = 1
processes = false
"""


def _preset(tmp_path: object, K: str = "[2, 3]", steps: int = 20) -> str:
    path = os.path.join(str(tmp_path), "tiny.toml")
    with open(path, "w") as fh:
        fh.write(TINY.format(K=K, steps=steps))
    return path


@pytest.mark.parametrize("figure", FIGURES)
@pytest.mark.parametrize("scale", SCALES)
def test_shipped_presets_resolve(figure: str, scale: str) -> None:
    preset = load_preset(figure, scale)
    cells = cells_of(preset)  # builds and validates every cell's configs
    assert cells and len({c.cell_id for c in cells}) == len(cells)
    assert preset.scale == scale


def test_grid_expansion_and_positions(tmp_path: object) -> None:
    cells = cells_of(load_preset("fig1", _preset(tmp_path, K="[2, 3, 5]")))
    assert [c.spec["data"]["K"] for c in cells] == [2, 3, 5]
    assert cells[0].spec["eval"]["positions"] == [1, 2, 6]  # log:3 over n = 6, n included


def test_sweep_schema_and_resume(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "out")
    preset = load_preset("fig1", _preset(tmp_path))
    res = run_sweep(preset, out, progress=False)
    assert res.status == "finished" and (res.cells_run, res.cells_skipped) == (2, 0)
    rdir = res.results_dirs["fig1"]
    for name in os.listdir(rdir):
        assert pq.read_schema(os.path.join(rdir, name)).remove_metadata() == RESULT_SCHEMA
    df = read_results(rdir)
    assert set(df.method) == {"transformer", "em", "ols"}
    assert len(df) == 2 * 3 * 3  # cells x methods x positions
    assert df.git_commit.str.len().min() > 0 and df.versions_json.str.contains("torch").all()
    again = run_sweep(preset, out, progress=False)
    assert (again.cells_run, again.cells_skipped) == (0, 2)


def test_kill_9_loses_and_duplicates_nothing(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "out")
    path = _preset(tmp_path, K="[2, 3, 4, 5]", steps=60)
    rdir = os.path.join(out, "fig1", "results")
    cmd = [sys.executable, "-m", "iclkit.cli", "reproduce", "fig1", "--preset", path]
    proc = subprocess.Popen(
        [*cmd, "--out", out, "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (os.path.isdir(rdir) and finished_cells(rdir)):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no cell finished within 90 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.wait()
    first = finished_cells(rdir)
    assert 1 <= len(first) < 4
    before = {c: Path(rdir, f"cell-{c}.parquet").read_bytes() for c in first}
    res = run_sweep(load_preset("fig1", path), out, progress=False)
    assert res.status == "finished" and res.cells_skipped == len(first)
    assert res.cells_run == 4 - len(first)
    df = read_results(rdir)
    assert df.groupby("cell_id").size().eq(3 * 3).all() and df.cell_id.nunique() == 4
    for c, blob in before.items():  # finished cells were not recomputed or rewritten
        assert Path(rdir, f"cell-{c}.parquet").read_bytes() == blob
    assert not [f for f in os.listdir(rdir) if f.startswith(".tmp-")]


def test_bad_presets(tmp_path: object) -> None:
    with pytest.raises(ParameterError, match="figure"):
        load_preset("fig9", "quick")
    with pytest.raises(ParameterError, match="preset"):
        load_preset("fig1", "huge")
    bad = os.path.join(str(tmp_path), "bad.toml")
    with open(bad, "w") as fh:
        fh.write("[grid]\nwidth = [1]\n")
    with pytest.raises(ParameterError, match="grid"):
        load_preset("fig1", bad)
    with open(bad, "w") as fh:
        fh.write("[grid]\nK = [2]\n[data]\nd = 0\n")
    with pytest.raises(ParameterError, match="d must be"):
        cells_of(load_preset("fig1", bad))
    with pytest.raises(ParameterError, match="no result files"):
        read_results(str(tmp_path))


def test_cli_bad_input(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reproduce", "fig1", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "--preset" in err and "Traceback" not in err
    assert cli.main(["plot", "fig1", "--results", os.path.join(str(tmp_path), "none")]) == 2
    assert "--results" in capsys.readouterr().err
    assert cli.main(["plot", "fig2", "--results", str(tmp_path)]) == 2
    assert "no result files" in capsys.readouterr().err


def _worker_environ() -> dict[str, str | None]:
    keys = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    return {k: os.environ.get(k) for k in keys}


def test_local_cluster_loopback_and_glibc_dynamic_mmap_threshold() -> None:
    """dask's nanny exports MALLOC_TRIM_THRESHOLD_ to its workers by default, which switches off
    glibc's dynamic mmap threshold (a page-fault storm per training step); the sweep's cluster
    must start its workers without it, and keep the single-threaded BLAS setting."""
    from dask.distributed import Client

    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") is None  # the test's own premise
    cluster = start_local_cluster({"n_workers": 1, "threads_per_worker": 1, "processes": True})
    try:
        with Client(cluster) as client:
            (env,) = client.run(_worker_environ).values()
        # the unauthenticated dashboard and the scheduler listen on the loopback interface only
        assert "//127.0.0.1:" in str(cluster.dashboard_link), cluster.dashboard_link
        assert "127.0.0.1" in str(cluster.scheduler_address), cluster.scheduler_address
    finally:
        cluster.close()
    assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") is None  # the client's process untouched


def test_checkpoint_is_named_by_the_training_part_of_the_spec(tmp_path: Path) -> None:
    """Cells that differ only in their evaluation share a checkpoint; any training change does
    not; a checkpoint left under the old per-cell name is adopted, not retrained."""
    import copy

    from iclkit.experiments.cells import cell_id, checkpoint_path, training_id

    spec = cells_of(load_preset("fig1", "smoke"))[0].spec
    other_eval = copy.deepcopy(spec)
    other_eval["eval"]["methods"] = ["ols"]
    other_train = copy.deepcopy(spec)
    other_train["train"]["lr"] = spec["train"]["lr"] * 2
    assert cell_id(other_eval) != cell_id(spec)
    assert training_id(other_eval) == training_id(spec)
    assert training_id(other_train) != training_id(spec)
    legacy = tmp_path / f"cell-{cell_id(spec)}.pt"
    legacy.write_bytes(b"weights")
    path = checkpoint_path(str(tmp_path), spec)
    assert Path(path).read_bytes() == b"weights" and not legacy.exists()
    assert Path(path).name == f"train-{training_id(spec)}.pt"
