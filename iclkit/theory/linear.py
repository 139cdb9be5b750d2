"""Linear-regression prompts: the data model of Zhang, Frei, Bartlett (arXiv 2306.09927, Sec. 3.1).

Per prompt a task ``w ~ N(0, I_d)`` is drawn; covariates ``x_i, x_query ~ N(0, Lambda)`` i.i.d.;
labels ``y_i = <w, x_i> + v_i`` with ``v_i ~ N(0, sigma^2)`` (ZFB train noiseless, ``sigma = 0``;
``docs/provenance.md`` §10 [READ-2nd]). The batch is returned as an :class:`~iclkit.theory.mor.MoRBatch`
with one component (K = 1, ``betas[:, 0] = w``, ``z = 0``, ``pi = 1``), so code written for MoR
prompts (e.g. Monte Carlo loss estimators) works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .mor import MoRBatch
from .rng import resolve_generator
from .validation import check_covariance, check_int, check_int_fields, check_real

__all__ = ["LinearConfig", "sample_linear"]


@dataclass(frozen=True)
class LinearConfig:
    """Validated configuration of linear-regression prompts.

    Parameters
    ----------
    d, n : int
        Dimension of x and in-context examples per prompt (both >= 1; n + 1 tokens a prompt).
    sigma : float
        Label-noise standard deviation (>= 0; 0 is ZFB's noiseless setting).
    Lambda : tuple of tuples or None
        Covariance of x (d x d, symmetric positive definite); ``None`` means I_d.
    """

    d: int
    n: int
    sigma: float = 0.0
    Lambda: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        check_int_fields(self, {"d": 1, "n": 1})
        check_real(self.sigma, "sigma", minimum=0.0)
        if self.Lambda is not None:
            object.__setattr__(self, "Lambda", check_covariance(self.Lambda, "Lambda", self.d)[0])

    def Lambda_matrix(self) -> np.ndarray:
        """Lambda as a (d, d) float64 array."""
        if self.Lambda is None:
            return np.eye(self.d)
        return np.asarray(self.Lambda, dtype=np.float64)


def sample_linear(
    config: LinearConfig,
    batch_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> MoRBatch:
    """Draw ``batch_size`` linear-regression prompts (exactly one of ``seed``/``generator``).

    Returns
    -------
    MoRBatch with X (B, n+1, d), y (B, n+1), z = 0 (B, n+1), betas = w (B, 1, d),
    pi = 1 (B, 1), sigma (B,).
    """
    B = check_int(batch_size, "batch_size", minimum=1)
    g = resolve_generator(seed, generator)
    c = config
    f64 = torch.float64
    w = torch.randn(B, c.d, generator=g, dtype=f64)
    X = torch.randn(B, c.n + 1, c.d, generator=g, dtype=f64)
    if c.Lambda is not None:
        chol = torch.from_numpy(np.linalg.cholesky(c.Lambda_matrix()))
        X = X @ chol.T
    noise = torch.randn(B, c.n + 1, generator=g, dtype=f64) * float(c.sigma)
    y = torch.einsum("bnd,bd->bn", X, w) + noise
    batch = MoRBatch(
        X,
        y,
        torch.zeros(B, c.n + 1, dtype=torch.int64),
        w[:, None, :],
        torch.ones(B, 1, dtype=f64),
        torch.full((B,), float(c.sigma), dtype=f64),
    )
    return batch if dtype == f64 else batch.to(dtype)
