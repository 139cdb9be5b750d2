"""Finite-sample training of the LSA layer on sampled prompts (empirical counterpart of ZFB eq. (3.9)).

Plain (stochastic) gradient descent with step ``lr`` on fresh minibatches of B prompts
approximates the population gradient flow at time ``t = lr * step`` as B grows and lr shrinks;
Adam is offered for comparison (it does not follow the flow's time scale). All weights of the
(d+1) x (d+1) matrices are trainable; prompts come from the foundation samplers, batch k from
``derive_seed(seed, "lsa-train", k)``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from iclkit.theory.linear import LinearConfig, sample_linear
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import ParameterError, check_int, check_positive

from .init import LSAInit
from .model import LSALayer, embed

__all__ = ["TrainingResult", "train_lsa"]


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """Trajectory of finite-sample training.

    Attributes
    ----------
    times : (R,)  ``lr * step`` at the recorded steps (the flow's time for plain GD)
    G : (R, d, d)  effective ``uU + p q^T`` at the recorded steps
    batch_loss : (steps,)  minibatch loss before each update
    W_KQ, W_PV : (d+1, d+1) final weights
    stats : dict  steps, batch_size, lr, optimizer, wall_time_s
    """

    times: np.ndarray
    G: np.ndarray
    batch_loss: np.ndarray
    W_KQ: np.ndarray
    W_PV: np.ndarray
    stats: dict[str, object]


def _G(layer: LSALayer) -> np.ndarray:
    Wk, Wp = layer.W_KQ.detach().numpy(), layer.W_PV.detach().numpy()
    d = Wk.shape[0] - 1
    return Wp[d, d] * Wk[:d, :d] + np.outer(Wp[d, :d], Wk[d, :d])


def train_lsa(
    data: MoRConfig | LinearConfig,
    init: LSAInit,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    optimizer: str = "gd",
    seed: int = 0,
    record_every: int = 1,
    progress: bool = False,
) -> TrainingResult:
    """Train the LSA layer from ``init`` on fresh minibatches (float64).

    Parameters
    ----------
    data : MoRConfig or LinearConfig
    init : LSAInit
    steps : int  (>= 1)
    lr : float  (> 0) step size; ``lr * steps`` is the flow time reached by plain GD
    batch_size : int  (>= 1) prompts per step
    optimizer : {"gd", "adam"}
    seed : int
    record_every : int  record G every this many steps
    """
    steps = check_int(steps, "steps", minimum=1)
    lr = check_positive(lr, "lr")
    B = check_int(batch_size, "batch_size", minimum=1)
    record_every = check_int(record_every, "record_every", minimum=1)
    if optimizer not in ("gd", "adam"):
        raise ParameterError(f"optimizer must be 'gd' or 'adam', got {optimizer!r}")
    if not isinstance(data, (MoRConfig, LinearConfig)):
        raise ParameterError(f"data must be a MoRConfig or LinearConfig, got {type(data).__name__}")
    if init.d != data.d:
        raise ParameterError(f"init: d = {init.d} does not match the data's d = {data.d}")
    layer = LSALayer(torch.as_tensor(init.W_KQ), torch.as_tensor(init.W_PV))
    params = list(layer.parameters())
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(params, lr=lr) if optimizer == "gd" else torch.optim.Adam(params, lr=lr)
    )
    times, Gs, losses = [0.0], [_G(layer)], []
    start = time.perf_counter()
    for k in tqdm(range(steps), disable=not (progress and sys.stderr.isatty())):
        s = derive_seed(seed, "lsa-train", k)
        batch = (
            sample_mor(data, B, seed=s)
            if isinstance(data, MoRConfig)
            else sample_linear(data, B, seed=s)
        )
        E = embed(batch.X_train, batch.y_train, batch.x_query)
        loss = 0.5 * ((layer(E) - batch.y_query) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (k + 1) % record_every == 0 or k + 1 == steps:
            times.append(lr * (k + 1))
            Gs.append(_G(layer))
    stats: dict[str, object] = {
        "steps": steps,
        "batch_size": B,
        "lr": lr,
        "optimizer": optimizer,
        "wall_time_s": time.perf_counter() - start,
    }
    return TrainingResult(
        np.array(times),
        np.array(Gs),
        np.array(losses),
        layer.W_KQ.detach().numpy().copy(),
        layer.W_PV.detach().numpy().copy(),
        stats,
    )
