"""Atomic file output for every part of iclkit (npz files, reports, checkpoints, parquet
cells, figures).

A file is written to a temporary name in its destination folder, flushed to disk, given the
usual permissions, and renamed over the final name with :func:`os.replace` (atomic on POSIX).
A reader therefore sees either the old file or the complete new one, never a partial file; a
process killed mid-write leaves only a hidden ``.tmp-*`` file, which readers ignore.

A leaf module: it imports nothing of iclkit, so every layer may use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

__all__ = ["save_figure_atomically", "write_atomically", "write_text_atomically"]


def write_atomically(path: str, write: Callable[[IO[bytes]], object]) -> str:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, then rename it to ``path``.

    Returns the absolute path written.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomically(path: str | os.PathLike[str], text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the absolute path written."""
    return write_atomically(os.fspath(path), lambda fh: fh.write(text.encode("utf-8")))


def save_figure_atomically(
    fig: Any,
    stem: str | os.PathLike[str],
    *,
    formats: tuple[str, ...] = ("pdf", "png"),
    **savefig_kwargs: Any,
) -> list[str]:
    """Save ``fig`` as ``stem.<format>`` for each format, each file atomically.

    Keyword arguments go to ``fig.savefig`` (dpi, bbox_inches, ...); TrueType fonts in PDF
    (``pdf.fonttype = 42``) are the caller's rcParams. Returns the absolute paths written.
    """
    base = os.fspath(stem)
    return [
        write_atomically(
            f"{base}.{fmt}",
            lambda fh, fmt=fmt: fig.savefig(fh, format=fmt, **savefig_kwargs),  # type: ignore[misc]
        )
        for fmt in formats
    ]
