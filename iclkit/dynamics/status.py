"""How a training-dynamics simulation ended: one vocabulary for both systems.

Both simulators (the LSA gradient flow, :mod:`iclkit.dynamics.lsa`, and GD of softmax
attention, :mod:`iclkit.dynamics.softmax`) return a result carrying a :class:`Status`, a
``message`` saying what happened and what to do about it, and solver statistics
(:class:`SolverStats`), in the manner of diffrax's ``RESULTS``.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

__all__ = ["SolverStats", "Status"]


class Status(enum.Enum):
    """How a simulation ended.

    - ``CONVERGED``: the stopping criterion (gradient or loss tolerance) was met.
    - ``STOPPED``: an event or a caller's request ended the run early (resume or extend it).
    - ``MAX_TIME``: the time horizon (or step budget) ran out before convergence.
    - ``DIVERGED``: the state grew past the divergence threshold or became non-finite.
    - ``FAILED``: the solver itself gave up (step size underflow, a linear solve failed).
    """

    CONVERGED = "converged"
    STOPPED = "stopped"
    MAX_TIME = "max_time"
    DIVERGED = "diverged"
    FAILED = "failed"

    @property
    def ok(self) -> bool:
        """True when the run ended normally (converged, stopped on request or out of time)."""
        return self in (Status.CONVERGED, Status.STOPPED, Status.MAX_TIME)


@dataclass(frozen=True)
class SolverStats:
    """Work done by a simulation.

    Attributes
    ----------
    steps : int
        Accepted steps (ODE steps or GD iterations).
    function_evaluations : int
        Evaluations of the vector field / gradient (NFE).
    wall_time_s : float
        Wall-clock seconds.
    method : str
        Solver or simulator method.
    extra : dict
        Method-specific counters (Jacobian evaluations, LU decompositions, tolerances, ...).
    """

    steps: int
    function_evaluations: int
    wall_time_s: float
    method: str
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The fields, with the ``extra`` counters merged in at the top level."""
        stats = asdict(self)
        extra = stats.pop("extra")
        return {**stats, **extra}
