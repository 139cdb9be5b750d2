"""Mutants: realistic small bugs injected by monkeypatching into the theory, construction and
dynamics code, each with the check groups of ``iclkit check`` that should see it.

A mutant is applied inside :func:`applied`, which replaces a function or property everywhere it
is bound (the defining module and every ``iclkit`` module that imported it by name) and restores
the originals on exit. :mod:`tests.mutation.run` runs ``iclkit check --quick`` (through
:func:`iclkit.checks.run_checks`) on the mutant's groups and reports which checks it killed.
This is run on demand, not in CI (the files are not named ``test_*.py``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iclkit.constructions import algorithms, em_core
from iclkit.constructions import gradient_em_transformer as gem_tf
from iclkit.constructions.gradient_em_transformer import build as gem_build
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.dynamics.softmax import simulate as softmax_simulate
from iclkit.theory import rates
from iclkit.theory.bounds import mor as bounds_mor

__all__ = ["MUTANTS", "Mutant", "applied"]

#: Temperature of the tempered E-step mutants.
TEMPERATURE = 1.5


@dataclass(frozen=True)
class Mutant:
    """One injected bug.

    Attributes
    ----------
    name : short id
    what : the bug in words
    groups : the ``iclkit check`` groups (or check names) run against it
    patches : (owner, attribute, replacement factory taking the original) triples
    """

    name: str
    what: str
    groups: tuple[str, ...]
    patches: tuple[tuple[Any, str, Callable[[Any], Any]], ...]


def _rebind_everywhere(original: Any, replacement: Any) -> list[tuple[Any, str, Any]]:
    """Replace every module-level binding of ``original`` in the loaded iclkit modules."""
    undo = []
    for name, mod in list(sys.modules.items()):
        if not (name == "iclkit" or name.startswith("iclkit.")) or mod is None:
            continue
        for attr, value in list(vars(mod).items()):
            if value is original:
                undo.append((mod, attr, value))
                setattr(mod, attr, replacement)
    return undo


@contextmanager
def applied(mutant: Mutant) -> Iterator[None]:
    """Apply ``mutant``'s patches (functions rebound everywhere; class attributes on the class)
    and restore them on exit."""
    undo: list[tuple[Any, str, Any]] = []
    try:
        for owner, attr, factory in mutant.patches:
            original = vars(owner)[attr] if isinstance(owner, type) else getattr(owner, attr)
            replacement = factory(original)
            if isinstance(owner, type):
                undo.append((owner, attr, original))
                setattr(owner, attr, replacement)
            else:
                undo += _rebind_everywhere(original, replacement)
        yield
    finally:
        for owner, attr, value in reversed(undo):
            setattr(owner, attr, value)


# --------------------------------------------------------------------------- the bugs
def _half_step_general(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(X, y, gamma, betas, pi, T_inner, alpha, estimate_pi):  # type: ignore[no-untyped-def]
        return orig(X, y, gamma, betas, pi, T_inner, 0.5 * alpha, estimate_pi)

    return mutant


def _half_step_symmetric(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(X, y, beta, sigma, T_inner, alpha, nonlinearity, S=None):  # type: ignore[no-untyped-def]
        return orig(X, y, beta, sigma, T_inner, 0.5 * alpha, nonlinearity, S)

    return mutant


def _tempered_posterior(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(log_joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tempered = log_joint / TEMPERATURE
        _, ll = orig(log_joint)  # the likelihood is left exact: only the E-step is tempered
        gamma, _ = orig(tempered)
        return gamma, ll

    return mutant


def _tempered_tanh(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(X, y, beta, sigma, T_inner, alpha, nonlinearity, S=None):  # type: ignore[no-untyped-def]
        if nonlinearity is torch.tanh:  # the exact E-step; the construction's ReLU sum is kept

            def nonlinearity(u: torch.Tensor) -> torch.Tensor:
                return torch.tanh(u / TEMPERATURE)

        return orig(X, y, beta, sigma, T_inner, alpha, nonlinearity, S)

    return mutant


def _scaled_M1(orig: Any) -> property:
    def fget(self: LSAMoments) -> np.ndarray:
        return 1.05 * orig.fget(self)

    return property(fget)


def _biased_fit(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(*args: Any, **kwargs: Any) -> rates.RateFit:
        fit = orig(*args, **kwargs)
        return dataclasses.replace(
            fit, slope=1.1 * fit.slope, ci_low=1.1 * fit.ci_low, ci_high=1.1 * fit.ci_high
        )

    return mutant


def _low_snr_third(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(*args: Any, **kwargs: Any) -> bounds_mor.TwoMixtureRates:
        r = orig(*args, **kwargs)
        if r.regime != "low":
            return r
        err = dataclasses.replace(r.error, exponent={"n": -1 / 3, "d": 1 / 3})
        return dataclasses.replace(r, error=err)

    return mutant


class _FastClock:
    """A GD method whose steps are 1.5x the step the recorder's time ``eta t`` assumes."""

    def __init__(self, method: Any) -> None:
        self._method = method

    def descend(self, eta: float) -> None:
        self._method.descend(1.5 * eta)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._method, name)


def _time_rescaled(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(config, method, recorder, bar):  # type: ignore[no-untyped-def]
        return orig(config, _FastClock(method), recorder, bar)

    return mutant


def _alpha_off(orig: Callable[..., Any]) -> Callable[..., Any]:
    def mutant(d, K, n, sigma, T_outer, T_inner=1, alpha=1.0, *args, **kwargs):  # type: ignore[no-untyped-def]
        return orig(d, K, n, sigma, T_outer, T_inner, 1.02 * alpha, *args, **kwargs)

    return mutant


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "gem_step_general",
        "general-K gradient M-step uses alpha / 2 (algorithms._gradient_m_step)",
        ("em", "construction"),
        ((algorithms, "_gradient_m_step", _half_step_general),),
    ),
    Mutant(
        "gem_step_symmetric",
        "symmetric gradient M-step uses alpha / 2 (algorithms._symmetric_step)",
        ("em", "construction"),
        ((algorithms, "_symmetric_step", _half_step_symmetric),),
    ),
    Mutant(
        "tempered_estep_general",
        f"responsibilities softmax(log-joint / {TEMPERATURE}) (em_core.posterior)",
        ("em", "construction"),
        ((em_core, "posterior", _tempered_posterior),),
    ),
    Mutant(
        "tempered_estep_symmetric",
        f"symmetric exact E-step tanh(u / {TEMPERATURE}) (algorithms._symmetric_step)",
        ("em", "construction"),
        ((algorithms, "_symmetric_step", _tempered_tanh),),
    ),
    Mutant(
        "construction_alpha",
        "the transformer's M-step heads built with 1.02 alpha (build_gradient_em_transformer)",
        ("construction",),
        ((gem_build, "build_gradient_em_transformer", _alpha_off),),
    ),
    Mutant(
        "lsa_moment_M1",
        "LSAMoments.M1 (E[beta beta^T] weighted by pi) scaled by 1.05",
        ("lsa",),
        ((LSAMoments, "M1", _scaled_M1),),
    ),
    Mutant(
        "fit_rate_bias",
        "fit_rate returns a slope (and CI) 10% too steep",
        ("em", "construction", "softmax", "generalization"),
        ((rates, "fit_rate", _biased_fit),),
    ),
    Mutant(
        "low_snr_exponent",
        "two_mixture_rates: low-SNR error exponent (d/n)^(1/3) instead of (d/n)^(1/4)",
        ("em", "construction"),
        ((bounds_mor, "two_mixture_rates", _low_snr_third),),
    ),
    Mutant(
        "softmax_time",
        "softmax GD steps of 1.5 eta while time is recorded as eta t (simulate._descend)",
        ("softmax",),
        ((softmax_simulate, "_descend", _time_rescaled),),
    ),
)

assert gem_tf.build_gradient_em_transformer is gem_build.build_gradient_em_transformer
