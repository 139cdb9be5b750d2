"""Result types of the theorem bounds: assumptions, rate-form bounds and depths.

A theorem's assumptions are a :class:`ConditionReport` of :class:`Condition` rows; a rate-form
bound is a :class:`RateBound` ``C * rate(params)`` and a depth a :class:`LayerCount`, both with
the constant ``C`` the papers leave inside ``O(.)`` marked as unknown (:data:`UNKNOWN_CONSTANT`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["UNKNOWN_CONSTANT", "Condition", "ConditionReport", "LayerCount", "RateBound"]

UNKNOWN_CONSTANT = "unknown: the paper states O(.); C is an argument (fit it, do not trust C=1)"


@dataclass(frozen=True)
class Condition:
    """One assumption ``lhs >= rhs`` (or ``lhs < rhs`` for strict upper bounds) of a theorem.

    Attributes
    ----------
    name : str
        Short identifier (``"n_vs_d"``).
    statement : str
        The inequality in the paper's symbols.
    lhs, rhs : float
        Both sides evaluated at the given parameters.
    holds : bool
    """

    name: str
    statement: str
    lhs: float
    rhs: float
    holds: bool


@dataclass(frozen=True)
class ConditionReport:
    """The assumptions of a theorem evaluated at given parameters.

    Attributes
    ----------
    theorem : str
    mark : str
        Provenance mark ([2nd], [RECON], ...).
    conditions : tuple of Condition
    constant : float
        The constant C used in the O(.)/Omega(.) conditions.
    """

    theorem: str
    mark: str
    conditions: tuple[Condition, ...]
    constant: float = 1.0

    @property
    def holds(self) -> bool:
        """True when every condition holds."""
        return all(c.holds for c in self.conditions)

    @property
    def status(self) -> str:
        return "satisfied" if self.holds else "violated"

    @property
    def message(self) -> str:
        """One line: all hold, or which fail and by how much (actionable)."""
        bad = [c for c in self.conditions if not c.holds]
        if not bad:
            return f"{self.theorem} {self.mark}: all {len(self.conditions)} conditions hold (C={self.constant:g})"
        parts = [f"{c.name}: {c.statement} fails ({c.lhs:.4g} vs {c.rhs:.4g})" for c in bad]
        return f"{self.theorem} {self.mark}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "theorem": self.theorem,
            "mark": self.mark,
            "constant": self.constant,
            "holds": self.holds,
            "conditions": [asdict(c) for c in self.conditions],
        }


@dataclass(frozen=True)
class RateBound:
    """A rate-form bound ``value = C * rate(params)``.

    Attributes
    ----------
    theorem, mark : str
    formula : str
        The rate in the paper's symbols.
    rate : float
        The rate with C = 1.
    constant : float
    constant_status : str
        ``UNKNOWN_CONSTANT`` unless the caller fitted it.
    probability : float or None
        The probability with which the bound holds (high-probability bounds), else None.
    exponent : dict
        Power-law exponents of the rate in its main variables (e.g. ``{"n": -0.5, "d": 0.5}``),
        ignoring log factors: what a rate check fits.
    """

    theorem: str
    mark: str
    formula: str
    rate: float
    constant: float
    constant_status: str
    probability: float | None = None
    exponent: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return self.constant * self.rate


@dataclass(frozen=True)
class LayerCount:
    """Depth of a construction in rate form ``L = C * layers(params)``."""

    theorem: str
    mark: str
    formula: str
    layers: float
    constant: float
    constant_status: str

    @property
    def value(self) -> float:
        return self.constant * self.layers
