"""CLI test of ``iclkit reproduce mechanism --preset smoke``: it writes the heatmap (PNG and PDF)
and parquet tables with one row per (model, layer, iterate), and a rerun resumes."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from iclkit.cli import main
from iclkit.experiments.mechanism_run import MECHANISM_MODELS, MECHANISM_SCALES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_reproduce_mechanism_smoke_writes_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "res")
    args = ["reproduce", "mechanism", "--preset", "smoke", "--out", out, "--no-progress"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["models_run"] == list(MECHANISM_MODELS) and first["models_skipped"] == []
    for kind in ("alignment", "probes"):
        png, pdf = first["figures"][kind]["png"], first["figures"][kind]["pdf"]
        assert open(png, "rb").read(4) == b"\x89PNG" and open(pdf, "rb").read(4) == b"%PDF"
    files = glob.glob(os.path.join(out, "mechanism", "results", "alignment-*.parquet"))
    a = pd.concat([pd.read_parquet(f) for f in files])
    iterates = MECHANISM_SCALES["smoke"].construction.T_outer + 1
    layers = MECHANISM_SCALES["smoke"].layers + 1
    # rows per model: gradient EM and the construction have one row per iterate, the trained
    # transformers one per layer (read-in + blocks); each row is crossed with every iterate
    assert len(a) == iterates * (2 * iterates + 2 * layers)
    assert not a.duplicated(["model", "layer", "iterate"]).any()
    # gradient EM measured against itself: cosine 1 on the diagonal
    assert first["alignment_diagonal_cosine"]["gradient_em"] == pytest.approx([1.0] * iterates)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["models_run"] == [] and second["models_skipped"] == list(MECHANISM_MODELS)
    assert second["alignment_diagonal_cosine"] == first["alignment_diagonal_cosine"]


def test_reproduce_mechanism_bad_preset(tmp_path: Path) -> None:
    args = ["reproduce", "mechanism", "--preset", "huge", "--out", str(tmp_path)]
    assert main(args) == 2
