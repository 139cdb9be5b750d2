"""Gradient descent on the softmax-attention loss of Huang, Cheng, Liang (arXiv 2310.05249).

GD ``Q(t+1) = Q(t) - eta grad L(Q(t))`` ([READ]: discrete GD with step eta; ``Q(0) = 0`` [RECON])
with one of the simulators of :mod:`.methods`. The one public entry is :func:`simulate_softmax`:
one loop shared by the simulators, recording on a grid that is dense at small t and has relative
spacing ``1/record_resolution`` later, stopping when every query type reaches ``stop_loss`` or
the loss blows up. Times are reported in units of ``eta * t``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from iclkit.theory.features import feature_basis
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import ParameterError

from ..status import SolverStats, Status
from .config import SoftmaxConfig
from .methods import SIMULATORS, GDMethod, Setup
from .recorder import Recorder, is_record_step, query_types
from .result import SoftmaxResult

__all__ = ["DIVERGENCE_FACTOR", "simulate_softmax"]

#: DIVERGED when a recorded loss exceeds this multiple of its initial value (at least 1): a
#: converging GD run never climbs that far above its start, while a step size past the
#: stability limit makes the loss grow geometrically.
DIVERGENCE_FACTOR = 10.0

#: GD steps per update of the progress bar.
_BAR_EVERY = 1000


def _setup(config: SoftmaxConfig) -> Setup:
    fc = config.features
    p = fc.probabilities
    d = int(fc.d or fc.K)
    _, type_features, dominant = query_types(p)
    V = feature_basis(fc, seed=derive_seed(config.seed, "basis"))
    if config.init == "zero":
        Q0 = torch.zeros(d, d, dtype=torch.float64)
    else:
        g = make_generator(derive_seed(config.seed, "init"))
        Q0 = config.init_scale * torch.randn(d, d, generator=g, dtype=torch.float64)
    return Setup(p, V, Q0, (V.T @ Q0 @ V).numpy(), type_features, dominant)


def _descend(
    config: SoftmaxConfig, method: GDMethod, recorder: Recorder, bar: tqdm
) -> tuple[Status, int]:
    """The GD loop: evaluate, record (and test for divergence and stop_loss), step."""
    steps = int(config.steps or 0)
    loss0: float | None = None
    t = 0
    for t in range(steps + 1):
        method.evaluate(t)
        if is_record_step(t, config.record_resolution) or t == steps:
            obs = method.observe()
            if not obs.finite:
                return Status.DIVERGED, t
            loss0 = obs.loss if loss0 is None else loss0
            if obs.loss > DIVERGENCE_FACTOR * max(loss0, 1.0):
                return Status.DIVERGED, t
            recorder.add_observation(t, obs)
            if config.stop_loss is not None and np.all(
                recorder.last_type_losses() <= config.stop_loss
            ):
                return Status.CONVERGED, t
        if t == steps:
            break
        method.descend(float(config.eta))
        if t % _BAR_EVERY == _BAR_EVERY - 1:
            bar.update(_BAR_EVERY)
    return Status.MAX_TIME, t


def _message(config: SoftmaxConfig, status: Status, t: int) -> str:
    eta_t = f"eta t = {config.eta * t:.6g}"
    if status is Status.DIVERGED:
        return f"loss became non-finite or exploded at step {t}: reduce eta (eta={config.eta})"
    if status is Status.CONVERGED:
        return (
            f"every query type reached loss <= stop_loss={config.stop_loss} at step {t} ({eta_t})"
        )
    if config.stop_loss is None:
        return f"ran the whole horizon of {t} steps ({eta_t}); no stop_loss was given"
    return (
        f"stop_loss={config.stop_loss} not reached by every query type within "
        f"{t} steps ({eta_t}); raise steps/max_time, "
        "or check the finite-N error floor (include_query_in_softmax raises it)"
    )


def simulate_softmax(config: SoftmaxConfig, *, progress: bool = False) -> SoftmaxResult:
    """Run GD on the softmax-attention loss with the configured simulator.

    Parameters
    ----------
    config : SoftmaxConfig
    progress : bool
        Show a tqdm progress bar (only on a TTY).

    Returns
    -------
    SoftmaxResult
        With ``status`` CONVERGED (every query type reached ``stop_loss``), MAX_TIME (the
        horizon ran out first: the finite-N error floor may lie above ``stop_loss``, or the
        horizon is too short; also when no ``stop_loss`` was given) or DIVERGED (reduce eta).
    """
    if not isinstance(config, SoftmaxConfig):
        raise ParameterError(f"config must be a SoftmaxConfig, got {config!r}")
    setup = _setup(config)
    names, type_features, dominant = query_types(setup.p)
    recorder = Recorder(setup.p, type_features, dominant, setup.Z0, config.store_Z)
    method: GDMethod = SIMULATORS[config.method](config, setup)
    bar = tqdm(
        total=int(config.steps or 0),
        disable=not (progress and sys.stderr.isatty()),
        desc=f"softmax GD ({config.method})",
        unit="step",
    )
    start = time.perf_counter()
    with method.session():
        status, t_done = _descend(config, method, recorder, bar)
    bar.close()
    arr = recorder.arrays()
    stats = SolverStats(
        steps=t_done,
        function_evaluations=t_done + 1,
        wall_time_s=time.perf_counter() - start,
        method=config.method,
        extra={"records": int(arr["steps"].shape[0]), **method.extra_stats()},
    )
    return SoftmaxResult(
        config=config,
        query_types=names,
        type_features=type_features,
        steps=arr["steps"],
        time=config.eta * arr["steps"].astype(np.float64),
        loss=arr["loss"],
        loss_per_type=arr["loss_per_type"],
        loss_se_per_type=arr["loss_se"],
        attention_target=arr["attention_target"],
        attention_dominant=arr["attention_dominant"],
        target_weight=arr["target_weight"],
        offtarget_dominant=arr["offtarget_dominant"],
        offtarget_other=arr["offtarget_other"],
        column_sum_drift=arr["column_sum_drift"],
        Z_final=method.Z(),
        Z_history=arr["Z"],
        status=status,
        message=_message(config, status, t_done),
        stats=stats,
    )
