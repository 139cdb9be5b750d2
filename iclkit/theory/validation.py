"""Input validation at the package boundary.

Every public entry point of iclkit checks its arguments here and raises
:class:`ParameterError` naming the offending parameter and the allowed range, so that
bad input never surfaces as a traceback from deep inside numpy or torch, nor as a silent
NaN. The CLI turns :class:`ParameterError` into a one-line message and exit code 2.

This module sits at the bottom of the package (``iclkit.theory`` imports nothing else of
iclkit), so every layer can use it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    "ParameterError",
    "as_float_array",
    "check_bool",
    "check_choice",
    "check_covariance",
    "check_finite_result",
    "check_finite_tensor",
    "check_int",
    "check_int_fields",
    "check_memory",
    "check_positive",
    "check_probability_vector",
    "check_real",
    "check_seed",
    "check_shape",
    "check_spd",
    "no_overflow",
    "overflow_error",
]

#: Largest seed: torch generators take a seed in [0, 2**63 - 1] (an int64).
MAX_SEED = 2**63 - 1

#: Relative tolerance of the symmetry test of a matrix (times its largest entry, at least 1):
#: round-off of a matrix built as ``A A^T`` or ``Q diag Q^T`` stays far below it.
SYMMETRY_RTOL = 1e-12


class ParameterError(ValueError):
    """A user-supplied parameter is out of its allowed range or malformed.

    The message always starts with the parameter's name.
    """


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an int, or raise :class:`ParameterError`.

    Booleans and non-integral floats are rejected.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParameterError(f"{name} must be an integer, got {value!r}")
    ivalue = int(value)
    if minimum is not None and ivalue < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {ivalue}")
    if maximum is not None and ivalue > maximum:
        raise ParameterError(f"{name} must be <= {maximum}, got {ivalue}")
    return ivalue


def check_seed(value: object, name: str = "seed") -> int:
    """Return ``value`` as a seed, an int in [0, 2**63 - 1], or raise :class:`ParameterError`.

    Python ints and numpy integers (``np.int64(3)``) are accepted. Refused, with the parameter's
    name, the value and the range: ``bool`` (``True`` is not a seed, it is a mistake), every
    float, integral or not (``1.5`` would be truncated silently, and ``2.0`` usually comes out of
    arithmetic that has already rounded: above 2**53 two different seeds map to one float),
    NaN, inf, ``None`` and strings.
    """
    allowed = "an integer in [0, 2**63 - 1] (Python int or numpy integer)"
    if isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be {allowed}, got the bool {value!r}")
    if isinstance(value, (float, np.floating)):
        raise ParameterError(
            f"{name} must be {allowed}, got the float {value!r} (floats are refused, even "
            "integral ones such as 2.0: a float seed is truncated or rounded silently)"
        )
    if not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    ivalue = int(value)
    if not 0 <= ivalue <= MAX_SEED:
        raise ParameterError(f"{name} must be {allowed}, got {ivalue}")
    return ivalue


def check_real(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
) -> float:
    """Return ``value`` as a finite float, or raise :class:`ParameterError`.

    ``strict_minimum`` / ``strict_maximum`` make the bounds exclusive (``value > minimum``,
    ``value < maximum``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a real number, got {value!r}")
    try:
        fvalue = float(value)
    except OverflowError:
        raise ParameterError(
            f"{name} must be a finite float64, got an integer of {len(str(value))} digits"
        ) from None
    if not math.isfinite(fvalue):
        raise ParameterError(f"{name} must be finite, got {fvalue}")
    if minimum is not None:
        if strict_minimum and not fvalue > minimum:
            raise ParameterError(f"{name} must be > {minimum}, got {fvalue}")
        if not strict_minimum and fvalue < minimum:
            raise ParameterError(f"{name} must be >= {minimum}, got {fvalue}")
    if maximum is not None:
        if strict_maximum and not fvalue < maximum:
            raise ParameterError(f"{name} must be < {maximum:g}, got {fvalue}")
        if not strict_maximum and fvalue > maximum:
            raise ParameterError(f"{name} must be <= {maximum}, got {fvalue}")
    return fvalue


def check_int_fields(config: object, minimums: Mapping[str, int], *, prefix: str = "") -> None:
    """:func:`check_int` on each named field of a config against its minimum, storing the
    checked value back as a Python int (``3.0`` and ``np.int64(3)`` become ``3``; the config
    may be a frozen dataclass: this is meant for ``__post_init__``).

    The message names the field as ``prefix + field`` (``prefix="curriculum."`` for a nested
    config).
    """
    for field_name, minimum in minimums.items():
        value = check_int(getattr(config, field_name), prefix + field_name, minimum=minimum)
        object.__setattr__(config, field_name, value)


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is a bool (or numpy bool), else raise :class:`ParameterError`
    (a string such as ``"no"`` would be silently true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_float_array(value: object, name: str) -> np.ndarray:
    """``value`` as a float64 numpy array, or a :class:`ParameterError` naming ``name`` when it
    holds something other than numbers (strings, objects, ragged nesting)."""
    if isinstance(value, (str, bytes)):
        raise ParameterError(f"{name} must be numbers, got the string {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ParameterError(f"{name} must be numbers, got {value!r} ({exc})") from None
    return arr


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ParameterError`."""
    if value not in choices:
        quoted = [repr(c) for c in choices]
        allowed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        raise ParameterError(f"{name} must be {allowed}, got {value!r}")
    return str(value)


def check_positive(value: object, name: str) -> float:
    """Return ``value`` as a finite float > 0, or raise :class:`ParameterError`."""
    return check_real(value, name, minimum=0.0, strict_minimum=True)


def check_probability_vector(
    values: Sequence[float] | np.ndarray,
    name: str,
    *,
    length: int | None = None,
    atol: float = 1e-8,
) -> tuple[float, ...]:
    """Validate a probability vector: finite, non-negative, summing to 1 within ``atol``."""
    arr = as_float_array(values, name).reshape(-1)
    if length is not None and arr.shape[0] != length:
        raise ParameterError(f"{name} must have {length} entries, got {arr.shape[0]}")
    if arr.size == 0:
        raise ParameterError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite, got {arr.tolist()}")
    if np.any(arr < 0):
        raise ParameterError(f"{name} must be non-negative, got {arr.tolist()}")
    total = float(arr.sum())
    if abs(total - 1.0) > atol:
        raise ParameterError(f"{name} must sum to 1 (within {atol}), got sum {total:.12g}")
    return tuple(float(v) for v in arr)


def check_finite_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise :class:`ParameterError` if ``x`` holds NaN or infinite entries."""
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ParameterError(f"{name} contains {bad} NaN or infinite entries")
    return x


def check_shape(x: torch.Tensor, name: str, shape: Sequence[int | None]) -> torch.Tensor:
    """Check ``x.shape`` against ``shape`` (``None`` matches any size).

    The message names the parameter, the expected and the actual shape.
    """
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if x.dim() != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, x.shape, strict=True)
    ):
        raise ParameterError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    return x


def check_spd(value: object, name: str, d: int | None = None) -> np.ndarray:
    """Validate a symmetric positive definite matrix, of shape (d, d) when ``d`` is given.

    Returns
    -------
    (d, d) float64 array
    """
    mat = as_float_array(value, name)
    if d is not None and mat.shape != (d, d):
        raise ParameterError(f"{name} must have shape ({d}, {d}), got {mat.shape}")
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1] or mat.shape[0] < 1:
        raise ParameterError(f"{name} must be a square (d, d) matrix, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ParameterError(f"{name} must be finite")
    tol = SYMMETRY_RTOL * max(1.0, float(np.abs(mat).max()))
    if not np.allclose(mat, mat.T, rtol=0, atol=tol):
        raise ParameterError(f"{name} must be symmetric")
    if float(np.linalg.eigvalsh(mat).min()) <= 0:
        raise ParameterError(f"{name} must be positive definite (all eigenvalues > 0)")
    return mat


def check_covariance(
    value: object, name: str, d: int
) -> tuple[tuple[tuple[float, ...], ...], np.ndarray]:
    """Validate a (d, d) covariance matrix: finite, symmetric, positive definite.

    Returns
    -------
    (the matrix as a tuple of tuples (hashable, for frozen configs), its Cholesky factor (d, d))
    """
    lam = check_spd(value, name, d)
    try:
        chol = np.linalg.cholesky(lam)
    except np.linalg.LinAlgError:
        raise ParameterError(f"{name} must be positive definite (all eigenvalues > 0)") from None
    return tuple(tuple(float(v) for v in row) for row in lam), chol


# --------------------------------------------------------------------------- overflow
# One convention for every bound and closed form of iclkit.theory: a value that overflows
# float64 (an OverflowError from math, or an inf/NaN result) is a ParameterError naming the
# arguments (largest first: the likeliest cause) and saying that the value overflows float64.
# A bound never returns inf or NaN.


def _magnitude(value: object) -> float:
    try:
        arr = np.abs(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError, OverflowError):
        return math.inf
    return float(arr.max()) if arr.size else 0.0


def overflow_error(what: str, arguments: Mapping[str, object]) -> ParameterError:
    """The :class:`ParameterError` of ``what`` overflowing float64 with ``arguments``."""
    names = sorted(arguments, key=lambda k: -_magnitude(arguments[k]))
    shown = ", ".join(f"{k}={_short(arguments[k])}" for k in names)
    head = names[0] if names else what
    return ParameterError(
        f"{head}: {what} overflows float64 with {shown} (the largest float64 is "
        f"{np.finfo(np.float64).max:.3g}); use smaller values"
    )


def _short(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array(max |entry| {_magnitude(value):.3g})"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@contextmanager
def no_overflow(what: str, arguments: Mapping[str, object]) -> Iterator[None]:
    """Turn an ``OverflowError`` (or numpy's overflow warning) raised inside into
    :func:`overflow_error`."""
    try:
        with np.errstate(over="raise"):
            yield
    except (OverflowError, FloatingPointError):
        raise overflow_error(what, arguments) from None


def check_finite_result(value: object, what: str, arguments: Mapping[str, object]) -> None:
    """Raise :func:`overflow_error` unless every number in ``value`` is finite (a float, an
    array, or a tuple/list of them)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if item is None or isinstance(item, (str, bool)):
            continue
        arr = np.asarray(item, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise overflow_error(what, arguments)


# --------------------------------------------------------------------------- memory
def available_memory() -> int | None:
    """Bytes of memory available now: psutil's ``available`` if psutil is installed, else the
    free physical pages from ``os.sysconf``; None where neither says."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


#: Share of the available memory one allocation may take: the rest is headroom for the
#: temporaries an estimate misses and for the other processes of the machine.
MEMORY_FRACTION = 0.8

#: Below this estimate :func:`check_memory` does not ask the system (64 MiB fit anywhere).
_MEMORY_QUERY_BYTES = 2**26


def _gib(nbytes: float) -> str:
    return f"{float(min(nbytes, 2**1000)) / 2**30:.3g} GiB"  # capped: a float, not an OverflowError


def check_memory(nbytes: float, name: str, what: str) -> None:
    """Refuse, before allocating, a computation that needs more memory than is available.

    ``nbytes`` is the caller's estimate of what ``what`` allocates; ``name`` the parameter that
    sets its size (named first in the message). Where the available memory is unknown only the
    estimates beyond 2**62 bytes (no machine has them) are refused.
    """
    if nbytes < _MEMORY_QUERY_BYTES:  # small: not worth a look at the system
        return
    available = available_memory()
    limit = float(2**62) if available is None else MEMORY_FRACTION * available
    if nbytes > limit:
        have = "unknown" if available is None else _gib(available)
        raise ParameterError(
            f"{name}: {what} needs about {_gib(nbytes)} of memory, {have} available; "
            "use smaller sizes"
        )
