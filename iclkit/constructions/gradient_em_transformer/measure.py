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

They run on sampled MoR prompts (symmetric, or general K) with a local initialisation at
relative distance ``rho`` (seeded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iclkit.constructions.algorithms import gradient_em
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError

from .build import build_gradient_em_transformer
from .config import Architecture
from .heads import layer_count
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
    "mixture_prompts",
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
    iteration t + 1 (the estimates of the query token at the block ends); ``rel_bound[t]``: max
    over prompts of :func:`float32_error_bound` ``/ ||beta_64||``; ``layers[t]``: the layers
    of the construction with t + 1 iterations (its first ``layers[t] - 1`` layers are these).
    """

    T_outer: int
    M: int
    architecture: str
    L: int
    rel_error: tuple[float, ...]
    rel_bound: tuple[float, ...]
    layers: tuple[int, ...]


def symmetric_prompts(
    s: MeasureSetting,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``X (B, n, d), y (B, n), init (B, 2, d), x_query (B, d)`` of the setting."""
    X, y, init, xq, _ = mixture_prompts(s, 2, (0.5, 0.5), symmetric=True)
    return X, y, init, xq


def mixture_prompts(
    s: MeasureSetting, K: int, pi: tuple[float, ...], *, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``X, y, init (B, K, d), x_query, pi (B, K)``: MoR prompts (``symmetric``: tied, init
    ``(beta0, -beta0)``), each estimate at relative distance ``rho`` from its component."""
    cfg = MoRConfig(d=s.d, K=K, n=s.n, sigma=s.sigma, pi=pi, symmetric=symmetric, prior="sphere")
    b = sample_mor(cfg, s.B, seed=s.seed)
    g = make_generator(s.seed + 1)
    u = torch.randn(b.betas.shape, generator=g, dtype=torch.float64)
    init = b.betas + s.rho * torch.nn.functional.normalize(u, dim=-1) * b.betas.norm(
        dim=-1, keepdim=True
    )
    if symmetric:
        init = torch.stack([init[:, 0], -init[:, 0]], 1)
    pis = torch.tensor([pi] * s.B, dtype=torch.float64)
    return b.X_train, b.y_train, init, b.x_query, pis


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over prompts of ``||a - b|| / ||b||``, a, b : (B, ...)."""
    num = (a - b).flatten(1).norm(dim=1)
    return float((num / b.flatten(1).norm(dim=1).clamp_min(1e-300)).max())


def depth_vs_relu_terms(
    Ms: Sequence[int],
    T_outer: int,
    setting: MeasureSetting = MeasureSetting(),
    pi: tuple[float, ...] = (0.5, 0.5),
) -> list[DepthRow]:
    """Layers and gaps of both architectures for each M (``T_inner = 1``); the symmetric
    construction for ``pi = (1/2, 1/2)``, else the general-K one with ``K = len(pi)``."""
    s, K = setting, len(pi)
    sym = pi == (0.5, 0.5)
    X, y, init, xq, pis = mixture_prompts(s, K, pi, symmetric=sym)
    ref = gradient_em(
        X, y, init, s.sigma, None if sym else pis, T_outer=T_outer, T_inner=1, alpha=s.alpha,
        symmetric=sym,
    ).betas  # fmt: skip
    rows = []
    for M in Ms:
        for arch in ARCHITECTURES:
            tf = build_gradient_em_transformer(
                s.d, K, s.n, s.sigma, T_outer, 1, s.alpha, M, symmetric=sym, pi=pi,
                architecture=arch,
            )  # fmt: skip
            beta = tf(X, y, init, xq)[0]
            sur = surrogate_iterates(tf, X, y, init)[-1][-1]
            P = sur.shape[1]
            rows.append(
                DepthRow(
                    M=M,
                    architecture=arch,
                    L=tf.report.L,
                    max_heads_per_layer=tf.report.max_heads_per_layer,
                    mlp_width=max(tf.report.mlp_widths, default=0),
                    gap_vs_gradient_em=_rel(beta[:, :P], ref[:, :P]),
                    gap_vs_surrogate=_rel(beta[:, :P], sur),
                )
            )
    return rows


def float32_error_growth(
    T_outers: Sequence[int],
    Ms: Sequence[int],
    setting: MeasureSetting = MeasureSetting(),
    architectures: Sequence[Architecture] = ARCHITECTURES,
) -> list[Float32Row]:
    """The float32 forward pass against the float64 one, after every outer iteration, with the
    round-off bound of :func:`float32_error_bound` (symmetric construction, ``T_inner = 1``)."""
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
                prev = [init[:, 0]] + [row[-1][:, 0] for row in it64[:-1]]
                bound = float32_error_bound(tf, X, y, prev)  # (B, T)
                norms = torch.stack([row[-1][:, 0].norm(dim=-1) for row in it64], 1)
                rel_bound = tuple(float(v) for v in (bound / norms).amax(0))
                layers = tuple(
                    layer_count(2, t + 1, 1, M, symmetric=True, architecture=arch) for t in range(T)
                )
                rows.append(Float32Row(T, M, arch, tf.report.L, errs, rel_bound, layers))
    return rows


#: Unit round-off of float32 (round to nearest): 2^-24.
FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def float32_error_bound(
    tf: GradientEMTransformer, X: torch.Tensor, y: torch.Tensor, iterates: list[torch.Tensor]
) -> torch.Tensor:
    """Bound on ``||beta_32 - beta_64||`` after each outer iteration of the symmetric
    construction ``tf`` (``T_inner = 1``), from a worst-case forward round-off model (``docs``).

    The float32 pass is the float64 one (the surrogate map ``G``) with a perturbation
    ``delta_t`` injected per outer iteration: ``E_{t+1} = rho_t E_t + delta_t``, ``E_0 = 0``.
    With ``u = 2^-24``, ``S = X^T X / n``, ``lambda = lambda_max(S)``,
    ``u_j = y_j <x_j, beta_t> / sigma^2`` and ``s_j`` a bound on the slope of the tanh sum
    ``f`` within ``r_j = |y_j| ||x_j|| E_t / sigma^2`` of ``u_j`` (``f`` interpolates tanh, so
    its slope is a secant slope of tanh over a knot interval: ``s_j = sech^2(max(0, |u_j| - r_j
    - h))``, ``h`` the largest knot spacing):

    - ``rho_t = max(|lambda_min(I - alpha S)|, |lambda_max(I - alpha S + alpha W)|)`` with
      ``W = (1/n) sum_j s_j y_j^2 x_j x_j^T / sigma^2``: every Jacobian of ``G`` on the segment
      between the two passes is ``I - alpha S + alpha W'`` with ``0 <= W' <= W`` (Loewner
      order), so this is a Lipschitz constant of ``G`` there;
    - ``delta_t = u alpha sqrt(lambda) rms_j(|y_j| eps_j) + u k_M (||beta_t|| + alpha
      sqrt(lambda) (rms(y) + sqrt(lambda) ||beta_t||))`` with ``eps_j = s_j (d + 2) |y_j|
      ||x_j|| ||beta_t|| / sigma^2 + (M + 4) sum_m |c_m| relu(a_m u_j + b_m)``: the rounding
      of the E-step argument (a dot product of length d, scaled, written: ``d + 2``
      roundings), of the ReLU sum (its M terms and the clearing of the slot, each partial sum
      bounded by the sum of the terms' magnitudes), and ``k_M = ceil(log2 n) + d + 8``
      roundings of the M-step (the mean over the n train tokens summed pairwise, the score of
      length d, the four heads' sum, the residual addition).

    Worst case: independent roundings cancel, so the measured error is typically
    ``~ sqrt(M n)`` times smaller (``docs/construction.md``).

    Parameters
    ----------
    iterates : [beta_0, ..., beta_{T-1}], each (B, d), float64 iterates of the forward pass.

    Returns
    -------
    (B, T) bounds after outer iterations 1..T.
    """
    if tf.tanh_sum is None or tf.T_inner != 1:
        raise ParameterError("tf must be a symmetric construction with T_inner = 1")
    f, alpha, sigma = tf.tanh_sum, tf.alpha, tf.sigma
    B, n, d = X.shape
    u_r = FLOAT32_UNIT_ROUNDOFF
    S = X.transpose(1, 2) @ X / n
    eye = torch.eye(d, dtype=X.dtype)
    low = torch.linalg.eigvalsh(eye - alpha * S)[:, 0].abs()
    root = torch.linalg.eigvalsh(S)[:, -1].clamp_min(0).sqrt()
    xnorm = torch.linalg.vector_norm(X, dim=-1)
    rms_y = (y * y).mean(-1).sqrt()
    nz = f.a[:, 0] != 0
    knots = torch.sort(-f.a[nz, 1] / f.a[nz, 0]).values
    h = float((knots[1:] - knots[:-1]).max()) if knots.numel() > 1 else float("inf")
    k_M = math.ceil(math.log2(n)) + d + 8
    E = torch.zeros(B, dtype=X.dtype)
    out = []
    for beta in iterates:
        bn = torch.linalg.vector_norm(beta, dim=-1)
        u = y * torch.einsum("bnd,bd->bn", X, beta) / sigma**2
        r = y.abs() * xnorm * E[:, None] / sigma**2
        slope = torch.cosh((u.abs() - r - h).clamp_min(0)).pow(-2)
        W = torch.einsum("bn,bnd,bne->bde", slope * y * y, X, X) / (n * sigma**2)
        high = torch.linalg.eigvalsh(eye - alpha * S + alpha * W)[:, -1].abs()
        rho = torch.maximum(low, high)
        terms = f.c.abs() * torch.relu(f.a[:, 0] * u[..., None] + f.a[:, 1])  # (B, n, M)
        eps_j = slope * (d + 2) * y.abs() * xnorm * bn[:, None] / sigma**2
        eps_j = eps_j + (f.M + 4) * terms.sum(-1)
        e_step = alpha * root * ((y * eps_j) ** 2).mean(-1).sqrt()
        m_step = k_M * (bn + alpha * root * (rms_y + root * bn))
        E = rho * E + u_r * (e_step + m_step)
        out.append(E)
    return torch.stack(out, 1)
