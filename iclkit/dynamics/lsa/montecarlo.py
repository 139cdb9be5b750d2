"""Monte Carlo estimate of the LSA population loss from sampled prompts (check of ZFB eq. (3.8)).

Prompts come from the foundation samplers (:func:`iclkit.theory.mor.sample_mor`,
:func:`iclkit.theory.linear.sample_linear`); the prediction is computed literally from the
embedding (:func:`.lsa_model.lsa_prediction`). The integrand ``(y_hat - y_q)^2`` is a degree-8
polynomial in Gaussians, so it is heavy-tailed (``docs/provenance.md`` §10): compare with
``|difference| <= 4 se`` and use >= 1e5 prompts, never a fixed relative tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from iclkit.theory.linear import LinearConfig, sample_linear
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import ParameterError, check_int

from .model import embed, lsa_prediction

__all__ = ["LossEstimate", "monte_carlo_loss"]

#: Default number of prompts: twice the 1e5 that the heavy-tailed integrand needs.
MC_PROMPTS = 200_000
#: Prompts sampled and embedded at once (bounds the memory of the (chunk, n+1, d+1) embeddings).
MC_CHUNK = 50_000


@dataclass(frozen=True)
class LossEstimate:
    """Mean of ``(1/2)(y_hat - y_q)^2`` over ``n_prompts`` prompts, with its standard error."""

    mean: float
    se: float
    n_prompts: int

    def z_score(self, reference: float) -> float:
        """(mean - reference) / se."""
        return (self.mean - reference) / self.se if self.se > 0 else math.inf


def monte_carlo_loss(
    data: MoRConfig | LinearConfig,
    W_KQ: np.ndarray | torch.Tensor,
    W_PV: np.ndarray | torch.Tensor,
    *,
    n_prompts: int = MC_PROMPTS,
    seed: int = 0,
    chunk: int = MC_CHUNK,
) -> LossEstimate:
    """Estimate ``L = (1/2) E(y_hat - y_q)^2`` by sampling prompts (float64).

    Parameters
    ----------
    data : MoRConfig or LinearConfig
        The prompt distribution (``data.n`` in-context examples).
    W_KQ, W_PV : (d+1, d+1)
    n_prompts : int
        Number of prompts (>= 2).
    seed : int
        Chunk c uses ``derive_seed(seed, "lsa-mc", c)``.
    chunk : int
        Prompts per chunk (>= 1).
    """
    if not isinstance(data, (MoRConfig, LinearConfig)):
        raise ParameterError(f"data must be a MoRConfig or LinearConfig, got {type(data).__name__}")
    n_prompts = check_int(n_prompts, "n_prompts", minimum=2)
    chunk = check_int(chunk, "chunk", minimum=1)
    Wk = torch.as_tensor(np.asarray(W_KQ, dtype=np.float64))
    Wp = torch.as_tensor(np.asarray(W_PV, dtype=np.float64))
    if Wk.shape != (data.d + 1, data.d + 1) or Wp.shape != Wk.shape:
        raise ParameterError(f"W_KQ, W_PV must be ({data.d + 1}, {data.d + 1})")
    total, total_sq, done, c = 0.0, 0.0, 0, 0
    while done < n_prompts:
        b = min(chunk, n_prompts - done)
        s = derive_seed(seed, "lsa-mc", c)
        if isinstance(data, MoRConfig):
            batch = sample_mor(data, b, seed=s)
        elif isinstance(data, LinearConfig):
            batch = sample_linear(data, b, seed=s)
        else:
            raise ParameterError(
                f"data must be a MoRConfig or LinearConfig, got {type(data).__name__}"
            )
        E = embed(batch.X_train, batch.y_train, batch.x_query)
        r = 0.5 * (lsa_prediction(E, Wk, Wp) - batch.y_query) ** 2
        total += float(r.sum())
        total_sq += float((r * r).sum())
        done += b
        c += 1
    mean = total / done
    var = max(total_sq / done - mean * mean, 0.0) * done / (done - 1)
    return LossEstimate(mean, math.sqrt(var / done), done)
