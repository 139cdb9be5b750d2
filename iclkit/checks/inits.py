"""Starting points of gradient EM shared by the EM and construction checks.

The starting points are the library's (:func:`iclkit.constructions.predictors.initial_estimate`):
the *local* initialisation ``beta_k + rho ||beta_k|| u_k`` (u_k uniform on the unit sphere) puts
gradient EM in the local-convergence regime that MoR Theorem 3.1 assumes; the *random* one is
N(0, I_d). Each draw has its own generator stream, derived from the check seed.
"""

from __future__ import annotations

import torch

from iclkit.constructions.predictors import initial_estimate
from iclkit.theory.rng import make_generator

__all__ = ["HIGH_SNR", "LOCAL_RHO", "local_init", "random_init"]

#: Relative distance ``rho`` of the local initialisation: well inside the region where gradient
#: EM contracts at high SNR (the theorem's local regime), so that after a few iterations the
#: statistical error, not the starting point, sets the measured error.
LOCAL_RHO = 0.1
#: The high signal-to-noise ratio ``eta = ||beta|| / sigma`` of the rate checks: far in the
#: regime where the two-mixture error is ``sqrt(d/n)`` (the components are well separated).
HIGH_SNR = 10.0


def local_init(betas: torch.Tensor, rho: float, seed: int) -> torch.Tensor:
    """Local initialisation ``beta_k + rho ||beta_k|| u_k`` of ``betas`` (B, K, d), from a fresh
    generator seeded with ``seed``; (B, K, d)."""
    return initial_estimate(betas, method="local", rho=rho, generator=make_generator(seed))


def random_init(betas: torch.Tensor, seed: int) -> torch.Tensor:
    """N(0, I_d) draws of the shape of ``betas`` (B, K, d), ignoring their values; (B, K, d)."""
    return initial_estimate(betas, method="random", generator=make_generator(seed))
