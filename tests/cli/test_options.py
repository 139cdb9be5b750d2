"""File handling of the CLI: every OS or format error on --in/--out is one line and exit 2."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from iclkit.cli import main
from iclkit.cli.options import MAX_ARRAY_BYTES, load_npz
from iclkit.theory.validation import ParameterError

SMALL = ["--d", "2", "--n", "5", "--batch", "2"]


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    h = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.npz"
    assert main(["sample", *SMALL, "--out", str(path)]) == 0
    return path


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob(".tmp-*")]


def test_out_errors(tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "/proc/x.npz": "--out: cannot write /proc/x.npz",
        "": "--out: empty path",
        str(tmp_path): "is a directory, not a file",
        str(good / "x.npz"): "is not a directory",
        str(tmp_path / ("a" * 300 + ".npz")): "name too long",
    }
    for out, match in cases.items():
        _one_line_exit_2(["sample", *SMALL, "--out", out], capsys, match)
    _no_temporaries(tmp_path)


def test_out_folder_that_is_a_file(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_exit_2(["check", "--quick", "--out", str(good)], capsys, "is a file, not a directory")
    argv = ["dynamics", "softmax", "--K", "2", "--n", "3", "--plot", str(good)]
    _one_line_exit_2(argv, capsys, "--plot")


def test_permission_error_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def denied(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", denied)
    _one_line_exit_2(
        ["sample", *SMALL, "--out", str(tmp_path / "x.npz")], capsys, "permission denied"
    )
    _no_temporaries(tmp_path)


def test_in_errors(tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[:300])
    strings, huge, short = tmp_path / "s.npz", tmp_path / "h.npz", tmp_path / "t.npz"
    z1 = np.zeros(1)
    np.savez(strings, X=np.array(["a"]), y=z1, sigma=z1 + 1, init=z1, x_query=z1)
    ok = _npy(np.zeros((2, 5)))
    for path, first in ((huge, _npy_header((2**40,))), (short, _npy_header((2, 5, 2)) + b"\0")):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("X.npy", first)
            z.writestr("y.npy", ok)
            z.writestr("sigma.npy", _npy(np.ones(2)))
    cases = {
        trunc: "cannot read",
        strings: "holds <U1 values; numbers are needed",
        huge: f"the limit is {MAX_ARRAY_BYTES / 2**30:g} GiB per array",
        short: "is truncated",
        tmp_path / "missing.npz": "file not found",
        tmp_path: "cannot read",
    }
    for path, match in cases.items():
        argv = ["run-algo", "--algo", "ols", "--in", str(path), "--out", str(tmp_path / "o.npz")]
        _one_line_exit_2(argv, capsys, match)
    _one_line_exit_2(["construct", "--in", str(strings)], capsys, "numbers are needed")


def test_only_the_used_keys_are_read(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "extra.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
        z.writestr("unused.npy", _npy_header((2**40,)))  # would be refused if it were read
    data = load_npz(str(path), ["X", "y"], ["sigma"])
    assert sorted(data) == ["X", "sigma", "y"]
    with pytest.raises(ParameterError, match="per array"):
        load_npz(str(path), ["unused"])


def test_huge_sizes_are_memory_errors_not_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_exit_2(["sample", "--batch", "999999999999", "--out", "x.npz"], capsys, "GiB")
    _one_line_exit_2(["dynamics", "softmax", "--K", "999999999999", "--n", "5"], capsys, "GiB")


def test_construct_given_init_needs_an_init_array(
    tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a file without 'init': the default is the in-context start; asking for the given init
    # (or for a form that has no in-context layers) names the missing array
    path = tmp_path / "no_init.npz"
    with np.load(good) as data:
        np.savez(path, **{k: data[k] for k in data.files if k != "init"})
    argv = ["construct", "--in", str(path), "--T-outer", "1", "--relu-terms", "8"]
    _one_line_exit_2([*argv, "--init", "given"], capsys, "has no 'init' array")
    _one_line_exit_2([*argv, "--architecture", "attention-mlp"], capsys, "has no 'init' array")
    assert main([*argv, "--json"]) == 0
    assert '"init": "in-context"' in capsys.readouterr().out
