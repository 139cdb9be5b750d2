"""Options and file handling shared by the ``iclkit`` subcommands, each defined once.

- :func:`add_subcommand`: a subcommand's parser, bound to its ``run`` function;
- :func:`add_field_option` / :func:`config_from_args`: an option whose type and default are a
  library config's field, and the config back from the parsed arguments;
- :func:`add_prompt_options` / :func:`prompts_config_from`: the MoR prompt distribution
  (``--d --K --n --snr --sigma --pi --symmetric --batch --seed --rho``), with the defaults of a
  library :class:`~iclkit.constructions.prompts.PromptsConfig`;
- :func:`add_out_option`, :func:`add_json_option`, :func:`add_progress_option`: ``--out``,
  ``--json`` (one JSON object instead of a table) and ``--progress/--no-progress``;
- :func:`float_list` (comma-separated numbers), :func:`print_json`, and reading / atomically
  writing ``.npz`` files (:func:`load_npz`, :func:`save_npz`), output paths checked before any
  work (:func:`check_out_file`, :func:`check_out_dir`).

The same flag means the same thing in every subcommand: ``--n`` is the number of in-context
examples per prompt, ``--batch`` the number of prompts, ``--snr`` the signal-to-noise ratio
``||beta|| / sigma`` (symmetric) or ``min_jk ||beta_j - beta_k|| / sigma`` that sets sigma per
prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.lib.format as npformat
import torch

from iclkit.constructions.prompts import PromptsConfig
from iclkit.io import to_jsonable, write_atomically
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError

SubParsers = Any  # argparse._SubParsersAction (private type)
Run = Callable[[argparse.Namespace], int]
C = TypeVar("C")


def add_subcommand(sub: SubParsers, name: str, run: Run, *, doc: str) -> argparse.ArgumentParser:
    """Add subcommand ``name``, bound to ``run``, described by its module's docstring ``doc``.

    ``doc`` reads ``"``iclkit NAME``: SUMMARY.\n\nDESCRIPTION"``: SUMMARY is the line in the
    command list, DESCRIPTION the text of ``iclkit NAME --help``.
    """
    head, _, body = doc.partition("\n\n")
    summary = " ".join(head.split(": ", 1)[-1].split()).rstrip(".")
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=" ".join(body.split())
    )
    p.set_defaults(func=run)
    return p


def print_json(obj: object) -> None:
    """Print ``obj`` as one JSON document (numpy/torch values converted, NaN/inf as null)."""
    print(json.dumps(to_jsonable(obj), sort_keys=False))


def float_list(text: str) -> list[float]:
    """Parse '0.5,0.3,0.2' into floats (argparse type)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def add_out_option(
    p: argparse.ArgumentParser, what: str, *, required: bool = False, default: str | None = None
) -> None:
    """``--out``: where the subcommand writes ``what``."""
    suffix = f" (default {default})" if default is not None else ""
    p.add_argument("--out", required=required, default=default, help=f"{what}{suffix}")


def add_json_option(p: argparse.ArgumentParser) -> None:
    """``--json``: print one JSON object instead of a table."""
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def add_progress_option(p: argparse.ArgumentParser, *, default: bool = True) -> None:
    """``--progress/--no-progress``: show or hide a progress bar (shown by ``default``)."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"show a progress bar (default: {'shown' if default else 'hidden'})",
    )


def add_plot_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--plot DIR``: write the figures ``what`` into folder DIR (no figures without it)."""
    p.add_argument("--plot", default=None, metavar="DIR", help=f"write {what} into DIR")


def add_n_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--n`` (required): in-context examples per prompt; ``--N`` is a hidden older spelling."""
    n = p.add_mutually_exclusive_group(required=True)
    n.add_argument("--n", type=int, help=help)
    n.add_argument("--N", type=int, dest="n", help=argparse.SUPPRESS)


def add_field_option(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    config: object,
    field: str,
    help: str,
    *,
    flag: str | None = None,
    **kwargs: Any,
) -> None:
    """``--field`` (``_`` as ``-``, or ``flag``) with the default of ``config.field``.

    ``config`` is a config instance or a dataclass (whose class attributes are the field
    defaults). The option's type is the default's unless ``kwargs`` (``type``, ``choices``,
    ``metavar``) says otherwise; its value lands in ``args.field`` for :func:`config_from_args`.
    A default of None is not printed: ``help`` then says what None means.
    """
    default = getattr(config, field)
    kwargs.setdefault("type", type(default))
    suffix = f" (default {default})" if default is not None else ""
    if flag is None:
        flag = "--" + field.replace("_", "-")
    elif "choices" not in kwargs:
        kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
    p.add_argument(flag, dest=field, default=default, help=f"{help}{suffix}", **kwargs)


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: object) -> C:
    """``cls(...)`` from the arguments named like its fields (and ``overrides``)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {n: getattr(args, n) for n in names if n not in overrides and hasattr(args, n)}
    return cls(**values, **overrides)


def add_prompt_options(p: argparse.ArgumentParser, defaults: PromptsConfig) -> None:
    """The MoR prompt distribution and its local initialisation, defaults from ``defaults``."""
    mor = defaults.mor
    g = p.add_argument_group("MoR prompt distribution")
    add_field_option(g, mor, "d", "dimension of x")
    add_field_option(g, mor, "K", "number of components")
    add_field_option(g, mor, "n", "in-context examples per prompt")
    g.add_argument(
        "--snr",
        type=float,
        default=None,
        help="signal-to-noise ratio eta: ||beta||/sigma (symmetric) or "
        f"min_jk ||beta_j - beta_k||/sigma; sets sigma per prompt (default {mor.snr})",
    )
    g.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level sigma, the same for every prompt (instead of --snr)",
    )
    g.add_argument(
        "--pi",
        type=float_list,
        default=None,
        help="mixing weights, comma-separated, summing to 1 (default uniform)",
    )
    g.add_argument(
        "--symmetric",
        action="store_true",
        help="symmetric two-component model: K=2, beta_2=-beta_1, pi=(1/2,1/2)",
    )
    add_field_option(g, defaults, "batch", "number of prompts B")
    add_field_option(g, defaults, "seed", "random seed")
    add_field_option(
        g, defaults, "rho", "relative size of the init perturbation, beta_k + rho ||beta_k|| u_k"
    )
    p.set_defaults(_prompt_defaults=defaults)


def mor_config_from(args: argparse.Namespace) -> MoRConfig:
    """The :class:`MoRConfig` of the prompt options (neither --snr nor --sigma: the default's)."""
    default: MoRConfig = args._prompt_defaults.mor
    snr, sigma = args.snr, args.sigma
    if snr is None and sigma is None:
        snr, sigma = default.snr, default.sigma
    return default.replace(
        d=args.d,
        K=args.K,
        n=args.n,
        snr=snr,
        sigma=sigma,
        pi=tuple(args.pi) if args.pi is not None else None,
        symmetric=args.symmetric,
    )


def prompts_config_from(args: argparse.Namespace) -> PromptsConfig:
    """The :class:`PromptsConfig` of the prompt options."""
    return config_from_args(PromptsConfig, args, mor=mor_config_from(args))


#: Largest array an ``--in`` file may hold, in bytes after decompression (read from the .npy
#: header before any data): 1 GiB holds 10,000 prompts of n = 1,000 examples in d = 12 in
#: float64; beyond it a small compressed file could claim any size.
MAX_ARRAY_BYTES = 2**30

#: The errors of reading a damaged archive or .npy member (zipfile, zlib, numpy's header parser).
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error)


def _problem(exc: BaseException) -> str:
    """The short reason of an OS or format error (``strerror`` without the path)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def load_npz(
    path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Load the arrays ``required`` and ``optional`` from ``path`` as float64 tensors.

    Lazily: only the named keys are read, each after its .npy header has been checked (numbers
    only - no strings or objects -, at most :data:`MAX_ARRAY_BYTES`). Every problem (missing or
    unreadable file, not an .npz, truncated or corrupt archive, missing key, NaN/inf entries) is
    a ParameterError naming ``--in`` and the path.
    """
    if not path:
        raise ParameterError("--in: empty path")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ParameterError(f"--in: file not found: {path}") from None
    except _READ_ERRORS as exc:
        raise ParameterError(f"--in: cannot read {path} as .npz ({_problem(exc)})") from None
    with zf:
        members = {n[: -len(".npy")]: n for n in zf.namelist() if n.endswith(".npy")}
        missing = [k for k in required if k not in members]
        if missing:
            raise ParameterError(
                f"--in: {path} is missing key(s) {', '.join(missing)} "
                f"(required: {', '.join(required)})"
            )
        out: dict[str, torch.Tensor] = {}
        for k in (*required, *optional):
            if k in members:
                try:
                    a = _read_member(zf, members[k], path, k)
                except ParameterError:
                    raise
                except _READ_ERRORS as exc:
                    raise ParameterError(
                        f"--in: cannot read array {k} of {path} ({_problem(exc)})"
                    ) from None
                if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                    raise ParameterError(f"{k}: array in {path} contains NaN or infinite entries")
                out[k] = torch.from_numpy(a).to(torch.float64)
    return out


def _read_member(zf: zipfile.ZipFile, member: str, path: str, key: str) -> np.ndarray:
    """One .npy member: header first (dtype, shape, size limit), then exactly its data."""
    with zf.open(member) as fh:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
        if dtype.kind not in "biuf" or dtype.hasobject:
            raise ParameterError(
                f"--in: array {key} of {path} holds {dtype} values; numbers are needed"
            )
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise ParameterError(
                f"--in: array {key} of {path} claims shape {tuple(shape)} ({nbytes / 2**30:.3g} "
                f"GiB); the limit is {MAX_ARRAY_BYTES / 2**30:g} GiB per array"
            )
        data = fh.read(nbytes)
    if len(data) != nbytes:
        raise ParameterError(
            f"--in: array {key} of {path} is truncated ({len(data)} of {nbytes} bytes)"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.copy()


def check_out_file(path: str, flag: str = "--out") -> str:
    """An output file path: not empty, not an existing folder, not inside a file."""
    if not path:
        raise ParameterError(f"{flag}: empty path")
    if os.path.isdir(path):
        raise ParameterError(f"{flag}: {path} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):  # the nearest existing ancestor
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    if parent and not os.path.isdir(parent):
        raise ParameterError(f"{flag}: cannot write {path} ({parent} is not a directory)")
    return path


def check_out_dir(path: str, flag: str = "--out") -> str:
    """An output folder, created now (before any work) so that a bad path fails at once."""
    if not path:
        raise ParameterError(f"{flag}: empty path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ParameterError(f"{flag}: {path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"{flag}: cannot create directory {path} ({_problem(exc)})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ParameterError(f"{flag}: directory {path} is not writable (permission denied)")
    return path


def save_npz(path: str, arrays: dict[str, Any], flag: str = "--out") -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same folder, then rename).

    OS errors (permission, not a directory, name too long, disk full) are ParameterErrors
    naming ``flag`` and the path; the temporary file is removed.
    """
    check_out_file(path, flag)
    payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    try:
        write_atomically(path, lambda fh: np.savez(fh, **payload))
    except OSError as exc:
        raise ParameterError(f"{flag}: cannot write {path} ({_problem(exc)})") from None
