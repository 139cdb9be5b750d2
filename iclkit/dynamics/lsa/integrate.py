"""Numerical integration of a gradient flow: the single entry :func:`simulate`.

Stepping is done by scipy's adaptive solvers (``scipy.integrate`` RK45, DOP853, Radau, BDF,
LSODA) driven step by step, so that the run can stop at a steady state (gradient norm below
``gradient_tol``), at a user condition (``stop_when``), or on divergence, with step counts,
function evaluations and wall time reported (:class:`~iclkit.dynamics.status.SolverStats`).
float64 throughout. Used for ZFB's Theorem 4.1 check and its MoR analogue;
:func:`iclkit.dynamics.lsa.simulate_lsa` drives it from one :class:`~.config.LSAConfig`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import integrate as sci
from tqdm import tqdm

from iclkit.theory.validation import ParameterError, check_int, check_positive, check_real

from ..status import SolverStats, Status
from .flow import LSAFlow
from .init import LSAInit

__all__ = ["METHODS", "Simulation", "simulate"]

METHODS: dict[str, type[sci.OdeSolver]] = {
    "RK45": sci.RK45,
    "DOP853": sci.DOP853,
    "Radau": sci.Radau,
    "BDF": sci.BDF,
    "LSODA": sci.LSODA,
}


@dataclass(frozen=True, eq=False)
class Simulation:
    """Result of :func:`simulate`.

    Attributes
    ----------
    times : (T,)
    states : (T, dim)  (only first and last state when ``record="ends"``)
    loss : (T,)  population loss at ``times``
    loss_gap : (T,)  L - L*, computed without cancellation where the flow allows
    conserved : (T,)  the conserved quantity of the flow
    gradient_norm : (T,)
    final_state : (dim,)
    G_final : (d, d)  effective matrix uU + p q^T at the end
    status : Status
    message : str  what happened and what to do about it
    stats : SolverStats  steps, function evaluations, wall time, method; ``extra`` holds
        rtol, atol, njev, nlu, the flow's name and the state dimension
    flow : the (bound) flow that was integrated
    """

    times: np.ndarray
    states: np.ndarray
    loss: np.ndarray
    loss_gap: np.ndarray
    conserved: np.ndarray
    gradient_norm: np.ndarray
    final_state: np.ndarray
    G_final: np.ndarray
    status: Status
    message: str
    stats: SolverStats
    flow: LSAFlow

    @property
    def t_final(self) -> float:
        return float(self.times[-1])

    @property
    def converged(self) -> bool:
        return self.status in (Status.CONVERGED, Status.STOPPED)


def simulate(
    flow: LSAFlow,
    init: LSAInit,
    t_span: tuple[float, float],
    *,
    method: str = "LSODA",
    rtol: float = 1e-11,
    atol: float = 1e-13,
    gradient_tol: float | None = 1e-12,
    stop_when: Callable[[float, np.ndarray], bool] | None = None,
    record: str = "steps",
    max_steps: int = 1_000_000,
    divergence_norm: float = 1e8,
    progress: bool = False,
) -> Simulation:
    """Integrate ``d theta/dt = -grad L(theta)`` from ``init`` over ``t_span``.

    Parameters
    ----------
    flow : LSAFlow
        :class:`.lsa_flow.FullLSAFlow`, :class:`.lsa_flow.ReducedLSAFlow` or
        :class:`.lsa_flow.EigenLSAFlow` (bound to ``init`` here).
    init : LSAInit
    t_span : (t0, t1)
        t1 > t0 >= 0.
    method : {"LSODA", "Radau", "BDF", "RK45", "DOP853"}
        scipy solver; the implicit ones use ``flow.jac`` when the flow has one.
    rtol, atol : float
        Solver tolerances (> 0).
    gradient_tol : float or None
        Steady-state event: stop (CONVERGED) at the first step with ``||grad L|| <= gradient_tol``.
    stop_when : callable (t, y) -> bool, optional
        Extra stop condition checked after every step (STOPPED), e.g. a target error.
    record : {"steps", "ends"}
        Keep every accepted step, or only the first and last state (large systems).
    max_steps : int
    divergence_norm : float
        DIVERGED when ``||y||_inf`` exceeds this.
    progress : bool
        tqdm bar over time (only on a TTY).
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol")
    if gradient_tol is not None:
        gradient_tol = check_positive(gradient_tol, "gradient_tol")
    if record not in ("steps", "ends"):
        raise ParameterError(f"record must be 'steps' or 'ends', got {record!r}")
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    divergence_norm = check_positive(divergence_norm, "divergence_norm")
    if not isinstance(t_span, (tuple, list)) or len(t_span) != 2:
        raise ParameterError(f"t_span must be (t0, t1), got {t_span!r}")
    t0 = check_real(t_span[0], "t_span[0]", minimum=0.0)
    t1 = check_real(t_span[1], "t_span[1]", minimum=t0, strict_minimum=True)
    flow = flow.bound(init)
    y0 = flow.initial_state(init)
    kwargs: dict[str, object] = {"rtol": rtol, "atol": atol}
    if method in ("Radau", "BDF", "LSODA"):
        jac0 = flow.jac(t0, y0)
        if jac0 is not None:
            kwargs["jac"] = flow.jac
    start = time.perf_counter()
    solver = METHODS[method](flow.rhs, t0, y0, t1, **kwargs)
    ts, ys = [t0], [y0.copy()]
    status, message = Status.MAX_TIME, ""
    steps = 0
    bar = tqdm(total=t1 - t0, disable=not (progress and sys.stderr.isatty()), unit="t")
    try:
        while True:
            if gradient_tol is not None and flow.gradient_norm(solver.y) <= gradient_tol:
                status = Status.CONVERGED
                message = f"converged: ||grad L|| <= {gradient_tol:g} at t = {solver.t:.6g}"
                break
            if stop_when is not None and steps > 0 and stop_when(solver.t, solver.y):
                status, message = Status.STOPPED, f"stop condition met at t = {solver.t:.6g}"
                break
            if solver.status != "running":
                if solver.status == "finished":
                    gn = flow.gradient_norm(solver.y)
                    status = Status.MAX_TIME
                    message = (
                        f"reached t1 = {t1:g} with ||grad L|| = {gn:.3g}"
                        + (f" > {gradient_tol:g}" if gradient_tol else "")
                        + ": increase t_span[1] (small eigen-directions of Lambda are "
                        "learned last) or loosen gradient_tol"
                    )
                else:
                    status = Status.FAILED
                    message = (
                        f"solver {method} failed at t = {solver.t:.6g}: "
                        "try method='Radau' or 'LSODA', or looser rtol/atol"
                    )
                break
            if steps >= max_steps:
                status = Status.MAX_TIME
                message = (
                    f"max_steps = {max_steps} reached at t = {solver.t:.6g}: raise "
                    "max_steps or use an implicit method (Radau, LSODA) for stiff flows"
                )
                break
            t_prev = solver.t
            msg = solver.step()
            steps += 1
            if solver.status == "failed":
                status = Status.FAILED
                message = f"solver {method} failed at t = {solver.t:.6g} ({msg}): try Radau/LSODA"
                break
            if not np.all(np.isfinite(solver.y)) or np.abs(solver.y).max() > divergence_norm:
                status = Status.DIVERGED
                message = (
                    f"diverged at t = {solver.t:.6g} (|theta| > {divergence_norm:g}): the "
                    "initial scale is probably too large; check the init's scale condition"
                )
                ts.append(solver.t)
                ys.append(solver.y.copy())
                break
            bar.update(solver.t - t_prev)
            if record == "steps":
                ts.append(solver.t)
                ys.append(solver.y.copy())
    finally:
        bar.close()
    wall = time.perf_counter() - start
    if ts[-1] != solver.t:
        ts.append(solver.t)
        ys.append(solver.y.copy())
    states = np.array(ys)
    times = np.array(ts)
    stats = SolverStats(
        steps=steps,
        function_evaluations=int(solver.nfev),
        wall_time_s=wall,
        method=method,
        extra={
            "rtol": rtol,
            "atol": atol,
            "njev": int(getattr(solver, "njev", 0)),
            "nlu": int(getattr(solver, "nlu", 0)),
            "flow": flow.name,
            "dim": int(y0.shape[0]),
        },
    )
    finite = np.all(np.isfinite(states), axis=1)
    nan = float("nan")

    def along(quantity: Callable[[np.ndarray], float]) -> np.ndarray:
        """``quantity`` at every recorded state (nan where the state is not finite)."""
        return np.array([quantity(y) if ok else nan for y, ok in zip(states, finite, strict=True)])

    return Simulation(
        times=times,
        states=states,
        loss=along(flow.loss),
        loss_gap=along(flow.loss_gap),
        conserved=along(flow.conserved),
        gradient_norm=along(flow.gradient_norm),
        final_state=states[-1],
        G_final=flow.G(states[-1]) if finite[-1] else np.full((flow.moments.d,) * 2, nan),
        status=status,
        message=message,
        stats=stats,
        flow=flow,
    )
