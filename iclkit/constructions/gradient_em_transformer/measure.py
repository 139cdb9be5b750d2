"""Measurements of the Theorem 3.1 construction (arXiv 2410.14183) quoted in
``docs/construction.md``: depth and accuracy against the number M of ReLU terms for both
architectures, and the growth of the float32 forward pass's round-off with depth.

- :func:`depth_vs_relu_terms`: for each M, the layers ``L`` of the attention-only and the
  attention-mlp construction running the same ``T_outer`` gradient-EM iterations, and the gap
  of each transformer's estimate to exact gradient EM (``algorithms.gradient_em``) and to its
  surrogate (the same ReLU sums computed as sums over the examples);
- :func:`float32_error_growth`: for each ``(T_outer, M, architecture)``, the relative difference
  between the float32 and the float64 forward pass on the same prompts, after every outer
  iteration (``block_iterates``).

Both run the symmetric construction on sampled symmetric MoR prompts with a local initialisation
at relative distance ``rho`` (seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import math

import torch

from iclkit.constructions.algorithms import gradient_em
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import make_generator

from .build import build_gradient_em_transformer
from .config import Architecture
from .model import GradientEMTransformer
from .run import surrogate_iterates

__all__ = [
    "ARCHITECTURES",
    "DepthRow",
    "Float32Row",
    "MeasureSetting",
    "depth_vs_relu_terms",
    "float32_error_bound",
    "float32_error_growth",
    "symmetric_prompts",
]

ARCHITECTURES: tuple[Architecture, ...] = ("attention-only", "attention-mlp")


@dataclass(frozen=True)
class MeasureSetting:
    """The prompts of the measurements: symmetric MoR, ``B`` prompts, init at distance rho."""

    d: int = 5
    n: int = 300
    sigma: float = 0.1
    B: int = 8
    rho: float = 0.3
    alpha: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class DepthRow:
    """One M of :func:`depth_vs_relu_terms` (gaps: max over prompts of ``||.|| / ||beta_GEM||``)."""

    M: int
    architecture: str
    L: int
    max_heads_per_layer: int
    mlp_width: int
    gap_vs_gradient_em: float
    gap_vs_surrogate: float


@dataclass(frozen=True)
class Float32Row:
    """One ``(T_outer, M, architecture)`` of :func:`float32_error_growth`.

    ``rel_error[t]``: max over prompts of ``||beta_32 - beta_64|| / ||beta_64||`` after outer
    iteration t + 1 (the estimates of the query token at the block ends).
    """

    T_outer: int
    M: int
    architecture: str
    L: int
    rel_error: tuple[float, ...]


def symmetric_prompts(
    s: MeasureSetting,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``X (B, n, d), y (B, n), init (B, 2, d), x_query (B, d)`` of the setting."""
    cfg = MoRConfig(d=s.d, K=2, n=s.n, sigma=s.sigma, symmetric=True, prior="sphere")
    b = sample_mor(cfg, s.B, seed=s.seed)
    g = make_generator(s.seed + 1)
    u = torch.randn(b.betas[:, 0].shape, generator=g, dtype=torch.float64)
    beta0 = b.betas[:, 0] + s.rho * torch.nn.functional.normalize(u, dim=-1)
    return b.X_train, b.y_train, torch.stack([beta0, -beta0], 1), b.x_query


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over prompts of ``||a - b|| / ||b||``, a, b : (B, ...)."""
    num = (a - b).flatten(1).norm(dim=1)
    return float((num / b.flatten(1).norm(dim=1).clamp_min(1e-300)).max())


def depth_vs_relu_terms(
    Ms: Sequence[int], T_outer: int, setting: MeasureSetting = MeasureSetting()
) -> list[DepthRow]:
    """Layers and gaps of both architectures for each M (``T_inner = 1``)."""
    s = setting
    X, y, init, xq = symmetric_prompts(s)
    ref = gradient_em(
        X, y, init, s.sigma, T_outer=T_outer, T_inner=1, alpha=s.alpha, symmetric=True
    ).betas[:, 0]
    rows = []
    for M in Ms:
        for arch in ARCHITECTURES:
            tf = build_gradient_em_transformer(
                s.d, 2, s.n, s.sigma, T_outer, 1, s.alpha, M, symmetric=True, architecture=arch
            )
            beta = tf(X, y, init, xq)[0][:, 0]
            sur = surrogate_iterates(tf, X, y, init)[-1][-1][:, 0]
            rows.append(
                DepthRow(
                    M=M,
                    architecture=arch,
                    L=tf.report.L,
                    max_heads_per_layer=tf.report.max_heads_per_layer,
                    mlp_width=max(tf.report.mlp_widths, default=0),
                    gap_vs_gradient_em=_rel(beta, ref),
                    gap_vs_surrogate=_rel(beta, sur),
                )
            )
    return rows


def float32_error_growth(
    T_outers: Sequence[int],
    Ms: Sequence[int],
    setting: MeasureSetting = MeasureSetting(),
    architectures: Sequence[Architecture] = ARCHITECTURES,
) -> list[Float32Row]:
    """The float32 forward pass against the float64 one, after every outer iteration."""
    s = setting
    X, y, init, xq = symmetric_prompts(s)
    rows = []
    for T in T_outers:
        for M in Ms:
            for arch in architectures:
                tf = build_gradient_em_transformer(
                    s.d, 2, s.n, s.sigma, T, 1, s.alpha, M, symmetric=True, architecture=arch
                )
                it64 = tf.block_iterates(X, y, init, xq)
                it32 = tf.astype(torch.float32).block_iterates(X, y, init, xq)
                errs = tuple(
                    _rel(a[-1].to(torch.float64), b[-1]) for a, b in zip(it32, it64, strict=True)
                )
                rows.append(Float32Row(T, M, arch, tf.report.L, errs))
    return rows


#: Unit round-off of float32 (round to nearest): 2^-24.
FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def float32_error_bound(
    tf: GradientEMTransformer, X: torch.Tensor, y: torch.Tensor, iterates: list[torch.Tensor]
) -> torch.Tensor:
    """First-order bound on ``||beta_32 - beta_64||`` after each outer iteration of the symmetric
    construction ``tf`` (``T_inner = 1``), from a forward round-off model (``docs``).

    The float32 pass is the float64 one with a perturbation ``delta_t`` injected per outer
    iteration, propagated by the iteration's Lipschitz factor ``rho_t``:
    ``E_{t+1} = rho_t E_t + delta_t`` (``E_0 = 0``: the embedding rounds ``beta_0`` too, that
    is counted in ``delta_0``), with ``u = 2^-24``, ``S = X^T X / n``, ``lambda = lambda_max(S)``,
    ``u_j = y_j <x_j, beta_t> / sigma^2`` and

    - ``rho_t = ||I - alpha S|| + alpha sqrt(lambda) sqrt(mean_j sech^4(u_j) y_j^4 ||x_j||^2)
      / sigma^2`` (the linearised feedback of ``surrogate_em.symmetric_gap_bound``);
    - ``delta_t = u alpha sqrt(lambda) rms_j(|y_j| eps_j) + u k_M (||beta_t|| + alpha sqrt(lambda)
      (rms(y) + sqrt(lambda) ||beta_t||))``, with ``eps_j = (d + 2) |y_j| ||x_j|| ||beta_t||
      / sigma^2 + (M + 4) sum_m |c_m| relu(a_m u_j + b_m)``: the rounding of the E-step argument
      (a dot product of length d, scaled, written: ``d + 2`` roundings; ``|f'| <= 1``) and of
      the ReLU sum (M terms and the clearing of the slot), and ``k_M = ceil(log2 n) + d + 8``
      roundings of the M-step (the mean over n train tokens summed pairwise, the score of
      length d, the four heads' sum and the residual addition).

    Parameters
    ----------
    iterates : [beta_0, ..., beta_{T-1}], each (B, d), float64 iterates of the forward pass.

    Returns
    -------
    (B, T) bounds after outer iterations 1..T.
    """
    assert tf.tanh_sum is not None and tf.T_inner == 1, "symmetric, T_inner = 1"
    f, alpha, sigma = tf.tanh_sum, tf.alpha, tf.sigma
    B, n, d = X.shape
    u_r = FLOAT32_UNIT_ROUNDOFF
    S = X.transpose(1, 2) @ X / n
    lam = torch.linalg.eigvalsh(S)
    P = (1 - alpha * lam).abs().amax(-1)
    root = lam.amax(-1).clamp_min(0).sqrt()
    xnorm = torch.linalg.vector_norm(X, dim=-1)
    rms_y = (y * y).mean(-1).sqrt()
    k_M = math.ceil(math.log2(n)) + d + 8
    E = torch.zeros(B, dtype=X.dtype)
    out = []
    for beta in iterates:
        bn = torch.linalg.vector_norm(beta, dim=-1)
        u = y * torch.einsum("bnd,bd->bn", X, beta) / sigma**2
        lip = ((torch.cosh(u).pow(-2) * y * y * xnorm) ** 2).mean(-1).sqrt() / sigma**2
        rho = P + alpha * root * lip
        terms = f.c.abs() * torch.relu(f.a[:, 0] * u[..., None] + f.a[:, 1])  # (B, n, M)
        eps_j = (d + 2) * y.abs() * xnorm * bn[:, None] / sigma**2 + (f.M + 4) * terms.sum(-1)
        e_step = alpha * root * ((y * eps_j) ** 2).mean(-1).sqrt()
        m_step = k_M * (bn + alpha * root * (rms_y + root * bn))
        E = rho * E + u_r * (e_step + m_step)
        out.append(E)
    return torch.stack(out, 1)
