"""The check registry: one small function per theorem claim, registered by name.

A check is a function ``check(ctx: CheckContext) -> Outcome`` decorated with :func:`register`,
which records its name (``"<group>.<claim>"``), the theorem it covers and the provenance mark of
that statement ([2nd] / [READ] / [RECON] / [MEASURED]); the function's docstring says what is
measured and against which independent computation. Adding a theorem means adding one function
to one of the group modules that :mod:`iclkit.checks` imports.

:func:`run_check` runs one check and turns it into a :class:`CheckResult` with a status:

- ``PASS`` / ``FAIL`` from the check's own acceptance band (stated in ``Outcome.tolerance``);
- ``INFO`` for a reported property (``Outcome.info``): a fact worth showing (a layer count, a
  structural bound of the construction) that no plausible fault of the claim under test would
  change; it is never counted as a ``PASS``, and it is a ``FAIL`` when the property is violated;
- ``SKIPPED`` when the check raises :class:`CheckSkipped` with its reason: never ``PASS``;
- an exception inside a check is a ``FAIL`` with the error in ``details["error"]``.

Fault injection: ``CheckContext.params`` overrides a check's settings through the API (for
example a wrong step size ``{"alpha": 10.0}``), which is how the fault tests
(``pytest -m fault``) show that every check can fail through its own criterion; each check's
docstring lists the ``params`` it reads.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from iclkit.io import to_jsonable
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import ParameterError, check_seed

__all__ = [
    "GROUP_ORDER",
    "NO_RESOLUTION",
    "STATUSES",
    "STREAM_SEED_MODULUS",
    "Check",
    "CheckContext",
    "CheckResult",
    "CheckSkipped",
    "Outcome",
    "all_checks",
    "register",
    "run_check",
    "select_checks",
]

#: Order of the groups in a run and in the report: the reference algorithms first, then the
#: transformer that runs them, the two training dynamics, and generalization (other groups, such
#: as the tests' throw-away checks, come last).
GROUP_ORDER = ("em", "construction", "lsa", "softmax", "generalization")

#: Modulus of :attr:`CheckContext.stream_seed`: the checks have always handed their 31-bit
#: reduction of the check seed to the rate-fit bootstrap, the LSA initialisation and the Monte
#: Carlo loss; changing it would change every reported confidence interval and those checks'
#: numbers, so the reduction is kept (in this one place) for reproducible reports.
STREAM_SEED_MODULUS = 2**31


#: ``details["resolution"]["note"]`` of a check that states no resolution.
NO_RESOLUTION = "not stated"


class CheckSkipped(Exception):
    """Raised inside a check that cannot run for a stated reason (the message); never a pass."""


@dataclass(frozen=True)
class Outcome:
    """What a check function returns.

    Attributes
    ----------
    passed : bool
    measured, expected : float, str or None
        The measured quantity and the theorem's (or independent computation's) value.
    tolerance : str
        The acceptance band, then ``": "`` and its reason, e.g.
        ``"slope in [-0.6, -0.4]: log factors ..."`` (the table shows the part before ``": "``).
    details : mapping
        Everything else worth keeping (fits, grids, conditions); JSON-serialisable.
    plots : tuple of str
        File names (relative to the output folder) of figures the check wrote.
    info : bool
        A reported property, not a test of the claim: the result is ``INFO`` when ``passed``
        (never counted as a ``PASS``) and ``FAIL`` otherwise.
    resolution : float or None
        The smallest relative error in the tested quantity that would make the check FAIL, from
        its band (and, where it matters, its measured noise); None where no relative error
        applies (an exact count, an INFO).
    resolution_note : str
        How ``resolution`` follows from the band, and the measured noise next to it.
    """

    passed: bool
    measured: float | str | None
    expected: float | str | None
    tolerance: str
    details: Mapping[str, Any] = field(default_factory=dict)
    plots: tuple[str, ...] = ()
    info: bool = False
    resolution: float | None = None
    resolution_note: str = ""


Mode = Literal["quick", "full"]


@dataclass(frozen=True)
class CheckContext:
    """Run settings handed to every check.

    Attributes
    ----------
    mode : {"quick", "full"}
        ``quick``: small grids (the whole suite in minutes on 2 cores); ``full``: paper scale.
    seed : int
        The check's own seed (derived from the run seed and the check's name).
    out_dir : Path or None
        Where plots go (None: no plots).
    params : mapping
        Overrides of the check's settings (fault injection through the API).
    """

    mode: Mode = "quick"
    seed: int = 0
    out_dir: Path | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    @property
    def stream_seed(self) -> int:
        """``seed`` reduced modulo :data:`STREAM_SEED_MODULUS` (see there why)."""
        return self.seed % STREAM_SEED_MODULUS

    def param(self, name: str, default: Any) -> Any:
        """The override ``params[name]`` if given, else ``default``."""
        return self.params.get(name, default)

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in quick mode, ``full`` in full mode."""
        return quick if self.quick else full


CheckFunction = Callable[[CheckContext], Outcome]


@dataclass(frozen=True)
class Check:
    """A registered check.

    Attributes
    ----------
    name : str ``"<group>.<claim>"``
    theorem : str
        The statement covered, e.g. ``"MoR Thm 3.1 / two-mixture high SNR: error ~ sqrt(d/n)"``.
    mark : str
        Provenance of the statement ([2nd], [READ ...], [RECON], [MEASURED]).
    description : str
        What is measured and against which independent computation (the function's docstring).
    func : CheckFunction
    """

    name: str
    theorem: str
    mark: str
    description: str
    func: CheckFunction

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def as_dict(self) -> dict[str, str]:
        """``{name, theorem, mark, group, description}`` (one line of ``--list --json``)."""
        return {
            "name": self.name,
            "theorem": self.theorem,
            "mark": self.mark,
            "group": self.group,
            "description": self.description,
        }


Status = Literal["PASS", "FAIL", "SKIPPED", "INFO"]
#: Every status, in the order of the report's summary.
STATUSES: tuple[Status, ...] = ("PASS", "FAIL", "INFO", "SKIPPED")


@dataclass(frozen=True)
class CheckResult:
    """One row of the report (``report.json`` holds :meth:`as_dict` of each)."""

    name: str
    theorem: str
    mark: str
    status: Status
    measured: float | str | None
    expected: float | str | None
    tolerance: str
    seconds: float
    details: Mapping[str, Any]
    plots: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The report.json object: name, theorem, mark, status, measured, expected, tolerance,
        seconds, details (the plot files are inside ``details``)."""
        details = dict(self.details)
        if self.plots:
            details.setdefault("plots", list(self.plots))
        return {
            "name": self.name,
            "theorem": self.theorem,
            "mark": self.mark,
            "status": self.status,
            "measured": to_jsonable(self.measured),
            "expected": to_jsonable(self.expected),
            "tolerance": self.tolerance,
            "seconds": round(self.seconds, 3),
            "details": to_jsonable(details),
        }


# --------------------------------------------------------------------------- registration
_REGISTRY: dict[str, Check] = {}


def register(name: str, *, theorem: str, mark: str) -> Callable[[CheckFunction], CheckFunction]:
    """Decorator registering ``func`` as the check ``name`` (``"<group>.<claim>"``); its
    docstring is the check's description."""
    if "." not in name:
        raise ParameterError(f"name must look like '<group>.<claim>', got {name!r}")

    def deco(func: CheckFunction) -> CheckFunction:
        description = " ".join((func.__doc__ or "").split())
        _REGISTRY[name] = Check(name, theorem, mark, description, func)
        return func

    return deco


def _group_rank(check: Check) -> int:
    return GROUP_ORDER.index(check.group) if check.group in GROUP_ORDER else len(GROUP_ORDER)


def all_checks() -> tuple[Check, ...]:
    """Every registered check (importing :mod:`iclkit.checks` registers the theorem groups),
    group by group in :data:`GROUP_ORDER`, in registration order within a group."""
    return tuple(sorted(_REGISTRY.values(), key=_group_rank))


def select_checks(only: Iterable[str] | None = None) -> list[Check]:
    """Checks whose name equals, or whose group is, one of ``only`` (all when None/empty).

    ``only`` entries may be comma-separated. An entry that matches nothing raises
    :class:`ParameterError` listing the known names.
    """
    checks = all_checks()
    wanted = [w.strip() for item in (only or ()) for w in item.split(",") if w.strip()]
    if not wanted:
        return list(checks)
    chosen: list[Check] = []
    for w in wanted:
        hits = [c for c in checks if c.name == w or c.group == w.rstrip(".")]
        if not hits:
            known = ", ".join(c.name for c in checks)
            raise ParameterError(f"--only: no check or group named {w!r} (known: {known})")
        chosen.extend(c for c in hits if c not in chosen)
    return chosen


# --------------------------------------------------------------------------- running
def _stopped(check: Check, status: Status, seconds: float, key: str, text: str) -> CheckResult:
    """The result of a check that produced no outcome (skipped, or crashed)."""
    return CheckResult(
        check.name, check.theorem, check.mark, status, None, None, "-", seconds, {key: text}
    )


def run_check(
    check: Check | str,
    *,
    mode: Mode = "quick",
    seed: int = 0,
    out_dir: Path | str | None = None,
    params: Mapping[str, Any] | None = None,
) -> CheckResult:
    """Run one check and return its :class:`CheckResult` (never raises for a failing check).

    Parameters
    ----------
    check : Check or its name
    mode : {"quick", "full"}
    seed : int
        Run seed; the check receives ``derive_seed(seed, check.name)``.
    out_dir : folder for plots (created), or None for no plots
    params : overrides of the check's settings (fault injection)
    """
    if isinstance(check, str):
        if check not in _REGISTRY:
            raise ParameterError(f"check: no check named {check!r}")
        check = _REGISTRY[check]
    if mode not in ("quick", "full"):
        raise ParameterError(f"mode must be 'quick' or 'full', got {mode!r}")
    seed = check_seed(seed, "seed")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    ctx = CheckContext(mode, derive_seed(seed, check.name), out, dict(params or {}))
    t0 = time.perf_counter()
    try:
        outcome = check.func(ctx)
    except CheckSkipped as exc:
        return _stopped(check, "SKIPPED", time.perf_counter() - t0, "reason", str(exc))
    except Exception as exc:  # a crashing check is a failing check, with the reason kept
        error = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _stopped(check, "FAIL", time.perf_counter() - t0, "error", error)
    details = dict(outcome.details)
    details["resolution"] = {
        "relative": outcome.resolution,
        "note": outcome.resolution_note or NO_RESOLUTION,
    }
    return CheckResult(
        check.name,
        check.theorem,
        check.mark,
        ("INFO" if outcome.info else "PASS") if outcome.passed else "FAIL",
        outcome.measured,
        outcome.expected,
        outcome.tolerance,
        time.perf_counter() - t0,
        details,
        tuple(outcome.plots),
    )
