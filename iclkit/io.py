"""File output for every part of iclkit: atomic writes, figures, JSON.

One copy each of what every layer above ``theory`` needs to put results on disk:

- :func:`write_atomically` / :func:`write_text_atomically`: atomic writes (npz files,
  reports, checkpoints, parquet cells);
- :func:`new_figure` / :func:`save_figure`: paper-ready figures (TrueType fonts in PDF, a
  colour-blind palette) built on :class:`matplotlib.figure.Figure`, never on pyplot, so that
  importing or calling iclkit never switches a notebook's matplotlib backend;
- :func:`to_jsonable`: numpy/torch values to JSON types (non-finite floats become ``None``).

A file is written to a temporary name in its destination folder, flushed to disk, given the
usual permissions, and renamed over the final name with :func:`os.replace` (atomic on POSIX).
A reader therefore sees either the old file or the complete new one, never a partial file; a
process killed mid-write leaves only a hidden ``.tmp-*`` file, which readers ignore.

A leaf module: it imports nothing of iclkit, so every layer may use it. matplotlib is imported
only inside the figure functions.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

__all__ = [
    "COLORS",
    "FIGURE_RC",
    "new_figure",
    "save_figure",
    "to_jsonable",
    "write_atomically",
    "write_text_atomically",
]

#: Okabe-Ito colour-blind safe palette, used by every figure of the package.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: rcParams applied while a figure is saved: TrueType (Type 42) fonts in PDF/PS, which journals
#: require, instead of matplotlib's Type 3 default.
FIGURE_RC: Mapping[RcKeyType, Any] = {"pdf.fonttype": 42, "ps.fonttype": 42}


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


def new_figure(**figure_kwargs: Any) -> Figure:
    """A new :class:`matplotlib.figure.Figure` (``figsize=``, ``layout=``, ...).

    It is not registered with pyplot: no backend is selected or switched, nothing needs closing,
    and it is freed when it goes out of scope. Draw with ``fig.subplots(...)``.
    """
    from matplotlib.figure import Figure

    return Figure(**figure_kwargs)


def save_figure(
    fig: Any,
    stem: str | os.PathLike[str],
    *,
    formats: tuple[str, ...] = ("pdf", "png"),
    dpi: int = 150,
    bbox_inches: str | None = "tight",
) -> list[str]:
    """Save ``fig`` as ``stem.<format>`` for each format, each file atomically.

    Fonts are embedded as TrueType (:data:`FIGURE_RC`). Returns the absolute paths written, in
    the order of ``formats``. A pyplot figure is accepted too; it is not closed here.
    """
    import matplotlib

    base = os.fspath(stem)
    with matplotlib.rc_context(dict(FIGURE_RC)):
        return [
            write_atomically(
                f"{base}.{fmt}",
                lambda fh, fmt=fmt: fig.savefig(  # type: ignore[misc]
                    fh, format=fmt, dpi=dpi, bbox_inches=bbox_inches
                ),
            )
            for fmt in formats
        ]


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to JSON types: numpy/torch scalars and arrays become numbers and lists,
    mappings become dicts with string keys, tuples become lists, and NaN/inf become ``None``
    (JSON has no non-finite numbers). Anything else becomes its ``str``."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    detach = getattr(obj, "detach", None)
    if callable(detach):  # torch.Tensor
        obj = detach().cpu()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return to_jsonable(tolist())
    item = getattr(obj, "item", None)
    if callable(item):
        return to_jsonable(item())
    return str(obj)
