"""Feature-token data model of Huang, Cheng, Liang (arXiv 2310.05249), ``docs/provenance.md`` §11.

Tokens are drawn from K orthonormal features ``v_1..v_K`` in R^d (K <= d; Definition 3.1 of the
paper as quoted by a reviewer [READ-review]): ``Pr(x = v_k) = p_k``. Balanced data has
``p_k = 1/K``; imbalanced data has one dominant feature ``p_1 = p_dominant = Theta(1)`` and
``p_k = (1 - p_1)/(K - 1)`` for the others ([READ-review]; the exact split of the remaining mass
is [RECON]). A prompt is N tokens ``x_1..x_N`` plus a query ``x_{N+1}``, all i.i.d.; the labels
are ``y_i = <w, x_i>`` with one task vector w per prompt, ``E[w] = 0``, ``E[w w^T] = I_d``
([RECON]; only the second moment enters the population loss).

The embedding (``docs/provenance.md`` §11 [RECON]) stacks tokens and labels, with label 0 in the
query column::

    E = [[x_1 ... x_N x_query],
         [y_1 ... y_N 0      ]]   in R^{(d+1) x (N+1)}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from .rng import resolve_generator
from .validation import (
    ParameterError,
    check_choice,
    check_int,
    check_memory,
    check_probability_vector,
    check_real,
)

__all__ = [
    "FeatureConfig",
    "FeaturePromptBatch",
    "feature_basis",
    "feature_probabilities",
    "sample_feature_prompts",
]

ProbabilityMode = Literal["balanced", "imbalanced", "custom"]
Basis = Literal["random", "standard"]
TaskPrior = Literal["gaussian", "rademacher"]

#: Two probabilities closer than this are a tie for the dominant feature (round-off of 1/K).
_TIE_ATOL = 1e-15


def feature_probabilities(
    K: int,
    mode: ProbabilityMode = "balanced",
    *,
    p_dominant: float | None = None,
    p: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """The token probabilities ``(p_1, .., p_K)``.

    Parameters
    ----------
    K : int
        Number of features (K >= 2).
    mode : {"balanced", "imbalanced", "custom"}
        ``p_k = 1/K``; ``p_1 = p_dominant`` and ``p_k = (1 - p_dominant)/(K - 1)`` (k >= 2);
        or the given vector ``p``.
    p_dominant : float
        Probability of feature 1 in the imbalanced mode, in (1/K, 1).
    p : sequence of float
        Probability vector of length K with positive entries (custom mode).
    """
    K = check_int(K, "K", minimum=2)
    check_choice(mode, "p_mode", get_args(ProbabilityMode))
    if mode == "balanced":
        return tuple([1.0 / K] * K)
    if mode == "imbalanced":
        if p_dominant is None:
            raise ParameterError("p_dominant must be given when p_mode='imbalanced'")
        pd = check_real(
            p_dominant,
            "p_dominant",
            minimum=1.0 / K,
            maximum=1.0,
            strict_minimum=True,
            strict_maximum=True,
        )
        rest = (1.0 - pd) / (K - 1)
        return (pd, *tuple([rest] * (K - 1)))
    if p is None:  # custom
        raise ParameterError("p must be given when p_mode='custom'")
    vec = check_probability_vector(p, "p", length=K)
    if min(vec) <= 0.0:
        raise ParameterError(f"p must have positive entries, got {list(vec)}")
    total = sum(vec)
    return tuple(v / total for v in vec)


@dataclass(frozen=True)
class FeatureConfig:
    """Validated configuration of the feature-token prompt distribution.

    Parameters
    ----------
    K, N : int
        Number of features (K >= 2) and prompt length (tokens before the query, N >= 1).
    d : int or None
        Token dimension, d >= K (default d = K).
    p_mode : {"balanced", "imbalanced", "custom"}
        How the feature probabilities are set (see :func:`feature_probabilities`).
    p_dominant : float or None
        Probability of the dominant feature (index 0) when ``p_mode="imbalanced"``.
    p : tuple of float or None
        Probability vector when ``p_mode="custom"``.
    basis : {"random", "standard"}
        Features are the first K standard basis vectors, or a Haar-random orthonormal K-frame.
    task_prior : {"gaussian", "rademacher"}
        ``w ~ N(0, I_d)`` or i.i.d. +-1 entries; both have ``E[w w^T] = I_d``.
    """

    K: int
    N: int
    d: int | None = None
    p_mode: ProbabilityMode = "balanced"
    p_dominant: float | None = None
    p: tuple[float, ...] | None = None
    basis: Basis = "standard"
    task_prior: TaskPrior = "gaussian"

    def __post_init__(self) -> None:
        K = check_int(self.K, "K", minimum=2)
        object.__setattr__(self, "K", K)  # stored as int: 3.0 and np.int64(3) become 3
        object.__setattr__(self, "N", check_int(self.N, "N", minimum=1))
        if self.d is None:
            object.__setattr__(self, "d", K)
        d = check_int(self.d, "d", minimum=1)
        object.__setattr__(self, "d", d)
        if d < K:
            raise ParameterError(f"d must be >= K={K} (orthonormal features), got {d}")
        check_choice(self.basis, "basis", get_args(Basis))
        check_choice(self.task_prior, "task_prior", get_args(TaskPrior))
        # the probabilities, the (d, K) feature frame and the Gaussian matrix it comes from
        check_memory(8 * K * (2 * d + 8), "K", f"{K} features in dimension d = {d}")
        probs = feature_probabilities(K, self.p_mode, p_dominant=self.p_dominant, p=self.p)
        object.__setattr__(self, "p", probs)

    @property
    def probabilities(self) -> np.ndarray:
        """``p`` as a float64 array of shape (K,)."""
        assert self.p is not None  # set in __post_init__
        return np.asarray(self.p, dtype=np.float64)

    @property
    def dominant(self) -> int | None:
        """Index of the unique most likely feature, or None when the maximum is shared."""
        probs = self.probabilities
        top = np.flatnonzero(probs >= probs.max() - _TIE_ATOL)
        return int(top[0]) if top.size == 1 else None


def feature_basis(
    config: FeatureConfig,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The feature matrix ``V = [v_1..v_K]`` of shape (d, K) with ``V^T V = I_K``.

    ``basis="standard"`` needs no randomness; ``basis="random"`` draws a Haar-random frame
    (QR of a Gaussian matrix with the sign fix of Mezzadri) from ``seed`` or ``generator``.
    """
    d, K = int(config.d or config.K), config.K
    if config.basis == "standard":
        return torch.eye(d, K, dtype=dtype)
    gen = resolve_generator(seed, generator)
    G = torch.randn(d, K, generator=gen, dtype=torch.float64)
    Qm, R = torch.linalg.qr(G)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1.0
    return (Qm * signs).to(dtype)


@dataclass(frozen=True)
class FeaturePromptBatch:
    """A batch of B feature-token prompts.

    Attributes
    ----------
    X : (B, N+1, d)
        Tokens; ``X[:, :N]`` are the prompt, ``X[:, N]`` the query.
    y : (B, N+1)
        Labels ``<w, x_i>``; ``y[:, N]`` is the query's target (the embedding puts 0 there).
    features : (B, N+1) int64
        Feature index of each token.
    w : (B, d)
        Task vectors.
    V : (d, K)
        The features.
    """

    X: torch.Tensor
    y: torch.Tensor
    features: torch.Tensor
    w: torch.Tensor
    V: torch.Tensor

    @property
    def N(self) -> int:
        return int(self.X.shape[1]) - 1

    @property
    def query_feature(self) -> torch.Tensor:
        """(B,) feature index of the query."""
        return self.features[:, -1]

    @property
    def counts(self) -> torch.Tensor:
        """(B, K) counts ``c_n`` of each feature among the N prompt tokens."""
        K = int(self.V.shape[1])
        out = torch.zeros(self.X.shape[0], K, dtype=torch.int64)
        out.scatter_add_(1, self.features[:, :-1], torch.ones_like(self.features[:, :-1]))
        return out

    @property
    def embedding(self) -> torch.Tensor:
        """(B, d+1, N+1) the embedding E of §A.2 (query label slot set to 0)."""
        y = self.y.clone()
        y[:, -1] = 0.0
        return torch.cat([self.X.transpose(1, 2), y.unsqueeze(1)], dim=1)


def sample_feature_prompts(
    config: FeatureConfig,
    B: int,
    *,
    V: torch.Tensor | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> FeaturePromptBatch:
    """Draw B prompts of N tokens plus a query (i.i.d. features, one task w per prompt).

    Parameters
    ----------
    config : FeatureConfig
    B : int
        Number of prompts (B >= 1).
    V : (d, K) tensor, optional
        The features; default :func:`feature_basis` from the same generator.
    seed, generator
        Exactly one source of randomness; the same seed gives identical output.
    """
    B = check_int(B, "B", minimum=1)
    gen = resolve_generator(seed, generator)
    d, K, N = int(config.d or config.K), config.K, config.N
    if V is None:
        V = feature_basis(config, generator=gen, dtype=dtype)
    elif not isinstance(V, torch.Tensor) or tuple(V.shape) != (d, K):
        raise ParameterError(f"V must be a tensor of shape ({d}, {K})")
    V = V.to(dtype)
    probs = torch.as_tensor(config.probabilities, dtype=torch.float64)
    feats = torch.multinomial(probs.expand(B, K), N + 1, replacement=True, generator=gen)
    if config.task_prior == "gaussian":
        w = torch.randn(B, d, generator=gen, dtype=torch.float64).to(dtype)
    else:
        w = (2.0 * torch.randint(0, 2, (B, d), generator=gen) - 1.0).to(dtype)
    X = V.T[feats]  # (B, N+1, d)
    y = torch.einsum("bnd,bd->bn", X, w)
    return FeaturePromptBatch(X=X, y=y, features=feats, w=w, V=V)
