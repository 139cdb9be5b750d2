"""Atomic file output for the experiments (checkpoints, result files, figures).

A file is written to a temporary name in its destination folder, flushed to disk, given the
usual permissions, and renamed over the final name with :func:`os.replace` (atomic on POSIX).
A reader therefore sees either the old file or the complete new one, never a partial file; a
process killed mid-write leaves only a hidden ``.tmp-*`` file, which readers ignore.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO

__all__ = ["write_atomically"]


def write_atomically(path: str, write: Callable[[IO[bytes]], None]) -> str:
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
