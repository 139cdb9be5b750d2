"""A set of MoR prompts with a local initialisation of the EM-type algorithms.

The prompts follow the MoR data model of Jin, Balasubramanian, Lai (arXiv 2410.14183)
(:func:`iclkit.theory.mor.sample_mor`); the initialisation is the local one of the theory's
convergence results, ``init_k = beta_k + rho ||beta_k|| u_k`` with ``u_k`` uniform on the unit
sphere (:func:`iclkit.constructions.predictors.initial_estimate`). :func:`sample_prompts` draws
both from one :class:`PromptsConfig`; ``iclkit sample`` writes :meth:`Prompts.arrays` to disk and
``iclkit construct`` runs the Theorem 3.1 transformer on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import check_int, check_real, check_seed

from .predictors import LOCAL_INIT_RHO, initial_estimate

__all__ = ["SMALL_MOR", "Prompts", "PromptsConfig", "sample_prompts"]

#: The default prompt distribution: d = 5, K = 2, n = 200, snr = 10, a small problem that
#: samples in well under a second.
SMALL_MOR = MoRConfig(d=5, n=200)


@dataclass(frozen=True)
class PromptsConfig:
    """B prompts of one MoR distribution and the local initialisation drawn for them.

    Parameters
    ----------
    mor : MoRConfig
        The prompt distribution (default :data:`SMALL_MOR`).
    batch : int
        Number of prompts B (>= 1).
    seed : int
        Seed of the prompts; the initialisation uses the derived stream ``(seed, "init")``.
    rho : float
        Relative size of the initial perturbation (>= 0; default the library's local-init
        :data:`~iclkit.constructions.predictors.LOCAL_INIT_RHO`).
    """

    mor: MoRConfig = SMALL_MOR
    batch: int = 64
    seed: int = 0
    rho: float = LOCAL_INIT_RHO

    def __post_init__(self) -> None:
        check_int(self.batch, "batch", minimum=1)
        check_seed(self.seed, "seed")
        check_real(self.rho, "rho", minimum=0.0)


@dataclass(frozen=True)
class Prompts:
    """Sampled prompts (``batch``) and the initial estimates ``init`` (B, K, d)."""

    batch: MoRBatch
    init: torch.Tensor

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``.npz`` format of ``iclkit sample``: X (B, n, d), y (B, n), x_query (B, d),
        y_query (B,), betas (B, K, d), pi (B, K), sigma (B,), init (B, K, d)."""
        b = self.batch
        tensors = {
            "X": b.X_train,
            "y": b.y_train,
            "x_query": b.x_query,
            "y_query": b.y_query,
            "betas": b.betas,
            "pi": b.pi,
            "sigma": b.sigma,
            "init": self.init,
        }
        return {name: t.numpy() for name, t in tensors.items()}


def sample_prompts(config: PromptsConfig) -> Prompts:
    """Draw ``config.batch`` prompts and their local initialisation."""
    batch = sample_mor(config.mor, config.batch, seed=config.seed)
    init = initial_estimate(
        batch.betas,
        method="local",
        rho=config.rho,
        generator=make_generator(derive_seed(config.seed, "init")),
    )
    return Prompts(batch, init)
