"""Storage of a sweep: the temporary files a killed sweep leaves are all removed on start."""

from __future__ import annotations

from pathlib import Path

from iclkit.experiments.storage import clean_temporaries


def test_clean_temporaries_in_every_folder_a_sweep_owns(tmp_path: Path) -> None:
    base = tmp_path / "fig1"
    kept = [base / "fig1.pdf", base / "results" / "cell-a.parquet", base / "checkpoints" / "c.pt"]
    stale = [
        base / ".tmp-x.pdf",
        base / "results" / ".tmp-y.parquet",
        base / "checkpoints" / ".tmp-z.pt",
    ]
    for path in kept + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(clean_temporaries(str(tmp_path), "fig1")) == sorted(str(p) for p in stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
