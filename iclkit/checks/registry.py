"""The check registry: one small function per theorem claim, registered by name.

A check is a function ``check(ctx: CheckContext) -> Outcome`` decorated with :func:`register`,
which records its name (``"<group>.<claim>"``), the theorem it covers, the provenance mark of
that statement ([2nd] / [READ] / [RECON] / [MEASURED]) and the capability modules it needs.
Adding a theorem means adding one function to one of the group modules listed in
``CHECK_MODULES``.

:func:`run_checks` runs a selection and turns each into a :class:`CheckResult` with a status:

- ``PASS`` / ``FAIL`` from the check's own acceptance band (stated in ``Outcome.tolerance``);
- ``SKIPPED`` when a required capability is missing (its module is not in the tree yet, or the
  function it calls does not exist): never ``PASS``; the reason is recorded;
- an exception inside a check is a ``FAIL`` with the error in ``details["error"]``.

Fault injection: ``CheckContext.params`` overrides a check's settings through the API (for
example a wrong step size ``{"alpha": 10.0}``), which is how the tests show that checks fail.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import ParameterError, check_int

__all__ = [
    "CHECK_MODULES",
    "Check",
    "CheckContext",
    "CheckResult",
    "CheckSkipped",
    "Outcome",
    "all_checks",
    "register",
    "require",
    "run_check",
    "run_checks",
    "select_checks",
]

Status = Literal["PASS", "FAIL", "SKIPPED"]
Mode = Literal["quick", "full"]

#: Group modules, imported by :func:`all_checks` (each registers its checks on import; none
#: imports a capability module at import time, so a missing capability never breaks the registry).
CHECK_MODULES: tuple[str, ...] = (
    "iclkit.checks.em",
    "iclkit.checks.construction",
    "iclkit.checks.lsa",
    "iclkit.checks.softmax",
    "iclkit.checks.generalization",
)


class CheckSkipped(Exception):
    """Raised inside a check when a capability it needs is missing; the message is the reason."""


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
    """

    passed: bool
    measured: float | str | None
    expected: float | str | None
    tolerance: str
    details: Mapping[str, Any] = field(default_factory=dict)
    plots: tuple[str, ...] = ()


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
    requires : tuple of str
        Capability modules (importable dotted paths); missing -> SKIPPED.
    description : str
        What is measured and against which independent computation.
    func : CheckFunction
    """

    name: str
    theorem: str
    mark: str
    requires: tuple[str, ...]
    description: str
    func: CheckFunction

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]


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
        """The report.json object: name, theorem, status, measured, expected, tolerance,
        seconds, details (the mark and plot files are inside ``details``)."""
        details = dict(self.details)
        details.setdefault("mark", self.mark)
        if self.plots:
            details.setdefault("plots", list(self.plots))
        return {
            "name": self.name,
            "theorem": self.theorem,
            "status": self.status,
            "measured": _json_safe(self.measured),
            "expected": _json_safe(self.expected),
            "tolerance": self.tolerance,
            "seconds": round(self.seconds, 3),
            "details": _json_safe(details),
        }


def _json_safe(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays to JSON types; NaN/inf become None."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return _json_safe(tolist())
    item = getattr(obj, "item", None)
    if callable(item):
        return _json_safe(item())
    return str(obj)


# --------------------------------------------------------------------------- registration
_REGISTRY: dict[str, Check] = {}


def register(
    name: str,
    *,
    theorem: str,
    mark: str,
    requires: Sequence[str] = (),
    description: str = "",
) -> Callable[[CheckFunction], CheckFunction]:
    """Decorator registering ``func`` as the check ``name`` (``"<group>.<claim>"``)."""
    if "." not in name:
        raise ParameterError(f"name must look like '<group>.<claim>', got {name!r}")

    def deco(func: CheckFunction) -> CheckFunction:
        _REGISTRY[name] = Check(
            name, theorem, mark, tuple(requires), description or (func.__doc__ or "").strip(), func
        )
        return func

    return deco


def all_checks() -> tuple[Check, ...]:
    """Every registered check, in registration order (imports the group modules first)."""
    for module in CHECK_MODULES:
        importlib.import_module(module)
    return tuple(_REGISTRY.values())


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


# --------------------------------------------------------------------------- capabilities
def require(module: str, *attrs: str) -> ModuleType:
    """Import a capability module, or raise :class:`CheckSkipped` saying what is missing.

    A module that is absent (``ModuleNotFoundError`` for it or a parent package) or lacks one of
    ``attrs`` skips the check. A module that exists but fails to import for another reason is a
    real error and propagates (the check then FAILs).
    """
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise CheckSkipped(f"capability {module} is not in this tree yet") from None
        raise
    absent = [a for a in attrs if not hasattr(mod, a)]
    if absent:
        raise CheckSkipped(f"capability {module} has no {', '.join(absent)} yet")
    return mod


# --------------------------------------------------------------------------- running
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
        found = [c for c in all_checks() if c.name == check]
        if not found:
            raise ParameterError(f"check: no check named {check!r}")
        check = found[0]
    if mode not in ("quick", "full"):
        raise ParameterError(f"mode must be 'quick' or 'full', got {mode!r}")
    seed = check_int(seed, "seed", minimum=0)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    ctx = CheckContext(mode, derive_seed(seed, check.name), out, dict(params or {}))
    t0 = time.perf_counter()
    status: Status
    try:
        for module in check.requires:
            require(module)
        outcome = check.func(ctx)
    except CheckSkipped as exc:
        return CheckResult(
            check.name,
            check.theorem,
            check.mark,
            "SKIPPED",
            None,
            None,
            "-",
            time.perf_counter() - t0,
            {"reason": str(exc)},
        )
    except Exception as exc:  # a crashing check is a failing check, with the reason kept
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return CheckResult(
            check.name,
            check.theorem,
            check.mark,
            "FAIL",
            None,
            None,
            "-",
            time.perf_counter() - t0,
            {"error": tb},
        )
    status = "PASS" if outcome.passed else "FAIL"
    return CheckResult(
        check.name,
        check.theorem,
        check.mark,
        status,
        outcome.measured,
        outcome.expected,
        outcome.tolerance,
        time.perf_counter() - t0,
        dict(outcome.details),
        tuple(outcome.plots),
    )


def run_checks(
    checks: Sequence[Check],
    *,
    mode: Mode = "quick",
    seed: int = 0,
    out_dir: Path | str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> list[CheckResult]:
    """Run ``checks`` in order with a tqdm progress bar (off when not a TTY or ``progress=False``).

    ``params`` maps a check name to its overrides.
    """
    import sys

    from tqdm import tqdm

    results: list[CheckResult] = []
    disable = not progress or not sys.stderr.isatty()
    with tqdm(checks, desc="iclkit check", unit="check", disable=disable, leave=False) as bar:
        for check in bar:
            bar.set_postfix_str(check.name)
            results.append(
                run_check(
                    check,
                    mode=mode,
                    seed=seed,
                    out_dir=out_dir,
                    params=(params or {}).get(check.name),
                )
            )
    return results
