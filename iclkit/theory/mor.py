"""Mixture of linear regressions (MoR): the data model of Jin, Balasubramanian, Lai (arXiv 2410.14183).

The model (``docs/provenance.md`` §2 [2nd]): per prompt, components
``beta_1..beta_K`` in R^d are drawn from a prior and mixing weights ``pi`` are fixed or drawn
from a Dirichlet; per *sample* inside the prompt

    z_i ~ pi,   x_i ~ N(0, Lambda),   y_i = <x_i, beta_{z_i}> + v_i,   v_i ~ N(0, sigma^2),

for i = 1..n, and the query (x_{n+1}, y_{n+1}) is drawn the same way. The signal-to-noise
ratio eta is ``||beta|| / sigma`` in the symmetric two-component case (beta_2 = -beta_1,
pi = (1/2, 1/2)) and ``R_min / sigma`` with ``R_min = min_{j != k} ||beta_j - beta_k||``
(Kwon-Caramanis convention, [RECON]) for general K; for K = 1 it is ``||beta_1|| / sigma``.
Given eta, sigma is set per prompt from that prompt's components (this project's default, docs/provenance.md §2).

The oracle predictor is ``w_orc = sum_k pi_k beta_k`` ([2nd]: the best linear predictor when
E[x x^T] = Lambda, since z_{n+1} is independent of x_{n+1}).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch

from .rng import derive_seed, make_generator, resolve_generator
from .validation import (
    ParameterError,
    check_bool,
    check_choice,
    check_covariance,
    check_finite_tensor,
    check_int,
    check_int_fields,
    check_memory,
    check_positive,
    check_probability_vector,
    check_shape,
)

__all__ = [
    "MoRBatch",
    "MoRConfig",
    "PromptPool",
    "component_separation",
    "fresh_batch",
    "sample_bytes",
    "sample_mor",
    "validate_prompts",
]

Prior = Literal["gaussian", "sphere"]
PiMode = Literal["fixed", "dirichlet"]

#: eta when neither ``snr`` nor ``sigma`` is given: the high-SNR regime of Theorem 3.1.
DEFAULT_SNR = 10.0

#: Tolerance of ``pi = (1/2, 1/2)`` in the symmetric model (round-off of a user's 0.5 only).
_SYMMETRIC_PI_ATOL = 1e-12

#: Floor of norms and Dirichlet draws before dividing by them: above float64's smallest normal
#: number (2.2e-308), far below any value that carries information.
_TINY = 1e-300

#: The Dirichlet draw uses numpy, seeded by one integer from the torch stream below this bound
#: (inside torch.randint's int64 range).
_NUMPY_SEED_BOUND = 2**62


@dataclass(frozen=True)
class MoRConfig:
    """Validated configuration of the MoR prompt distribution.

    Parameters
    ----------
    d : int
        Dimension of x (d >= 1).
    K : int
        Number of components (K >= 1).
    n : int
        Number of in-context examples per prompt (n >= 1); the prompt has n + 1 tokens.
    snr : float or None
        Signal-to-noise ratio eta > 0 (:data:`DEFAULT_SNR` when neither ``snr`` nor ``sigma``
        is given).
        At most one of ``snr`` and ``sigma`` is given.
    sigma : float or None
        Noise standard deviation sigma > 0, used for every prompt.
    pi : tuple of float or None
        Mixing weights (length K, summing to 1). ``None`` means uniform. With
        ``pi_mode="dirichlet"`` it is the Dirichlet mean (concentration ``dirichlet_alpha * K * pi``).
    pi_mode : {"fixed", "dirichlet"}
        Fixed pi for every prompt, or pi ~ Dirichlet per prompt.
    dirichlet_alpha : float
        Per-component concentration of the Dirichlet when ``pi`` is uniform.
    prior : {"gaussian", "sphere"}
        Component prior: i.i.d. N(0, prior_scale^2 I_d), or uniform on the sphere of radius
        ``prior_scale``.
    prior_scale : float
        tau (Gaussian) or the radius r (sphere).
    symmetric : bool
        Symmetric two-component model: K = 2, beta_2 = -beta_1, pi = (1/2, 1/2).
    Lambda : tuple of tuples or None
        Covariance of x (d x d, symmetric positive definite). ``None`` means I_d.
    """

    d: int
    K: int = 2
    n: int = 100
    snr: float | None = None
    sigma: float | None = None
    pi: tuple[float, ...] | None = None
    pi_mode: PiMode = "fixed"
    dirichlet_alpha: float = 1.0
    prior: Prior = "gaussian"
    prior_scale: float = 1.0
    symmetric: bool = False
    Lambda: tuple[tuple[float, ...], ...] | None = None
    _chol: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int_fields(self, {"d": 1, "K": 1, "n": 1})
        for name in ("d", "K", "n"):  # numpy integers stored as Python ints (exact arithmetic)
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.snr is None and self.sigma is None:
            object.__setattr__(self, "snr", DEFAULT_SNR)
        if self.snr is not None and self.sigma is not None:
            raise ParameterError(
                "snr and sigma: give at most one of them (snr=eta > 0 or sigma > 0)"
            )
        if self.snr is not None:
            check_positive(self.snr, "snr")
        if self.sigma is not None:
            check_positive(self.sigma, "sigma")
        check_bool(self.symmetric, "symmetric")
        check_choice(self.pi_mode, "pi_mode", get_args(PiMode))
        check_choice(self.prior, "prior", get_args(Prior))
        check_positive(self.prior_scale, "prior_scale")
        check_positive(self.dirichlet_alpha, "dirichlet_alpha")
        if self.pi is not None:
            object.__setattr__(self, "pi", check_probability_vector(self.pi, "pi", length=self.K))
        if self.symmetric:
            if self.K != 2:
                raise ParameterError(f"K must be 2 when symmetric=True, got K={self.K}")
            if self.pi is not None and any(abs(p - 0.5) > _SYMMETRIC_PI_ATOL for p in self.pi):
                raise ParameterError(f"pi must be (0.5, 0.5) when symmetric=True, got {self.pi}")
            if self.pi_mode != "fixed":
                raise ParameterError("pi_mode must be 'fixed' when symmetric=True")
        if self.Lambda is not None:
            lam, chol = check_covariance(self.Lambda, "Lambda", self.d)
            object.__setattr__(self, "Lambda", lam)
            object.__setattr__(self, "_chol", chol)

    # ------------------------------------------------------------------ derived
    @property
    def pi_vector(self) -> tuple[float, ...]:
        """The mixing weights (the Dirichlet mean when ``pi_mode="dirichlet"``)."""
        if self.pi is not None:
            return self.pi
        return tuple(1.0 / self.K for _ in range(self.K))

    def Lambda_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Lambda as a (d, d) tensor."""
        if self.Lambda is None:
            return torch.eye(self.d, dtype=dtype)
        return torch.tensor(self.Lambda, dtype=dtype)

    def replace(self, **changes: object) -> MoRConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        fields: dict[str, object] = {
            "d": self.d,
            "K": self.K,
            "n": self.n,
            "snr": self.snr,
            "sigma": self.sigma,
            "pi": self.pi,
            "pi_mode": self.pi_mode,
            "dirichlet_alpha": self.dirichlet_alpha,
            "prior": self.prior,
            "prior_scale": self.prior_scale,
            "symmetric": self.symmetric,
            "Lambda": self.Lambda,
        }
        if "snr" in changes and changes["snr"] is not None and "sigma" not in changes:
            fields["sigma"] = None
        if "sigma" in changes and changes["sigma"] is not None and "snr" not in changes:
            fields["snr"] = None
        fields.update(changes)
        return MoRConfig(**fields)  # type: ignore[arg-type]


def component_separation(betas: torch.Tensor, *, symmetric: bool = False) -> torch.Tensor:
    """The signal scale that defines the SNR, per prompt.

    Parameters
    ----------
    betas : (B, K, d)
    symmetric : bool
        Symmetric two-component model: ``||beta_1||``.

    Returns
    -------
    (B,) tensor: ``||beta_1||`` if symmetric or K = 1, else ``R_min = min_{j != k} ||beta_j - beta_k||``.
    """
    if symmetric or betas.shape[1] == 1:
        return torch.linalg.vector_norm(betas[:, 0], dim=-1)
    diff = betas[:, :, None, :] - betas[:, None, :, :]
    dist = torch.linalg.vector_norm(diff, dim=-1)
    K = betas.shape[1]
    eye = torch.eye(K, dtype=torch.bool)
    dist = dist.masked_fill(eye, float("inf"))
    return dist.flatten(1).min(dim=1).values


@dataclass(frozen=True)
class MoRBatch:
    """A batch of B MoR prompts, each with n examples and one query (the last token).

    Attributes
    ----------
    X : (B, n+1, d)
    y : (B, n+1)
    z : (B, n+1) int64, the latent component of every token.
    betas : (B, K, d)
    pi : (B, K)
    sigma : (B,)
    """

    X: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    betas: torch.Tensor
    pi: torch.Tensor
    sigma: torch.Tensor

    def __post_init__(self) -> None:
        check_shape(self.X, "X", (None, None, None))
        B, N, d = self.X.shape
        check_shape(self.y, "y", (B, N))
        check_shape(self.z, "z", (B, N))
        check_shape(self.betas, "betas", (B, None, d))
        K = self.betas.shape[1]
        check_shape(self.pi, "pi", (B, K))
        check_shape(self.sigma, "sigma", (B,))
        for name in ("X", "y", "betas", "pi", "sigma"):
            check_finite_tensor(getattr(self, name), name)

    @property
    def B(self) -> int:
        return int(self.X.shape[0])

    @property
    def n(self) -> int:
        """Number of in-context examples (tokens minus the query)."""
        return int(self.X.shape[1]) - 1

    @property
    def d(self) -> int:
        return int(self.X.shape[2])

    @property
    def K(self) -> int:
        return int(self.betas.shape[1])

    @property
    def X_train(self) -> torch.Tensor:
        """(B, n, d) in-context examples."""
        return self.X[:, :-1]

    @property
    def y_train(self) -> torch.Tensor:
        """(B, n)"""
        return self.y[:, :-1]

    @property
    def x_query(self) -> torch.Tensor:
        """(B, d)"""
        return self.X[:, -1]

    @property
    def y_query(self) -> torch.Tensor:
        """(B,)"""
        return self.y[:, -1]

    @property
    def w_oracle(self) -> torch.Tensor:
        """(B, d) oracle weights ``sum_k pi_k beta_k``."""
        return torch.einsum("bk,bkd->bd", self.pi, self.betas)

    @property
    def y_oracle(self) -> torch.Tensor:
        """(B,) oracle prediction of the query label."""
        return torch.einsum("bd,bd->b", self.x_query, self.w_oracle)

    def to(self, dtype: torch.dtype) -> MoRBatch:
        """Cast the floating tensors to ``dtype`` (z stays int64)."""
        return MoRBatch(
            self.X.to(dtype),
            self.y.to(dtype),
            self.z,
            self.betas.to(dtype),
            self.pi.to(dtype),
            self.sigma.to(dtype),
        )

    def select(self, index: torch.Tensor | Sequence[int] | slice) -> MoRBatch:
        """Sub-batch of the prompts at ``index``."""
        return MoRBatch(
            self.X[index],
            self.y[index],
            self.z[index],
            self.betas[index],
            self.pi[index],
            self.sigma[index],
        )

    def truncate(self, m: int) -> MoRBatch:
        """The prompts with their first ``m`` examples and the same query (1 <= m <= n)."""
        m = check_int(m, "m", minimum=1, maximum=self.n)
        keep = [*range(m), self.n]
        return MoRBatch(
            self.X[:, keep], self.y[:, keep], self.z[:, keep], self.betas, self.pi, self.sigma
        )


def sample_mor(
    config: MoRConfig,
    batch_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> MoRBatch:
    """Draw ``batch_size`` prompts from the MoR model of ``config``.

    Exactly one of ``seed`` and ``generator`` is given. Draws are always made in float64
    and cast afterwards, so a float32 batch is the float64 batch rounded, and the same seed
    gives byte-identical batches.

    Returns
    -------
    MoRBatch with X (B, n+1, d), y (B, n+1), z (B, n+1), betas (B, K, d), pi (B, K), sigma (B,).
    """
    B = check_int(batch_size, "batch_size", minimum=1)
    if dtype not in (torch.float64, torch.float32):
        raise ParameterError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    if not isinstance(config, MoRConfig):
        raise ParameterError(f"config must be a MoRConfig, got {type(config).__name__}")
    g = resolve_generator(seed, generator)
    c = config
    f64 = torch.float64
    N = c.n + 1
    check_memory(
        sample_bytes(c, B, dtype),
        "batch_size" if B >= N else "n",
        f"sampling {B} prompts of n + 1 = {N} tokens in d = {c.d}",
    )

    # 1. components (B, K, d)
    raw = torch.randn(B, c.K, c.d, generator=g, dtype=f64)
    if c.prior == "sphere":
        norms = torch.linalg.vector_norm(raw, dim=-1, keepdim=True).clamp_min(_TINY)
        betas = c.prior_scale * raw / norms
    else:
        betas = c.prior_scale * raw
    if c.symmetric:
        betas = torch.stack([betas[:, 0], -betas[:, 0]], dim=1)

    # 2. mixing weights (B, K)
    mean_pi = torch.tensor(c.pi_vector, dtype=f64)
    if c.pi_mode == "dirichlet":
        # torch's gamma sampler takes no generator: seed numpy's from this stream instead.
        np_seed = int(torch.randint(0, _NUMPY_SEED_BOUND, (1,), generator=g).item())
        conc = c.dirichlet_alpha * c.K * mean_pi.numpy()
        pi = torch.from_numpy(np.random.default_rng(np_seed).dirichlet(conc, size=B)).to(f64)
        pi = pi.clamp_min(_TINY)
        pi = pi / pi.sum(dim=1, keepdim=True)
    else:
        pi = mean_pi.expand(B, c.K).clone()

    # 3. latent labels (B, N)
    z = torch.multinomial(pi, N, replacement=True, generator=g)

    # 4. covariates (B, N, d)
    X = torch.randn(B, N, c.d, generator=g, dtype=f64)
    if c.Lambda is not None:
        assert c._chol is not None
        X = X @ torch.from_numpy(c._chol).T

    # 5. noise level (B,) and labels (B, N)
    if c.sigma is not None:
        sigma = torch.full((B,), float(c.sigma), dtype=f64)
    else:
        assert c.snr is not None
        sigma = component_separation(betas, symmetric=c.symmetric) / float(c.snr)
        if bool((sigma <= 0).any()):
            raise ParameterError(
                "snr: a prompt has zero component separation, so sigma = 0; "
                "use a continuous prior or give sigma directly"
            )
    noise = torch.randn(B, N, generator=g, dtype=f64) * sigma[:, None]
    chosen = torch.gather(betas, 1, z[:, :, None].expand(B, N, c.d))
    y = (X * chosen).sum(-1) + noise

    batch = MoRBatch(X, y, z, betas, pi, sigma)
    return batch if dtype == f64 else batch.to(dtype)


def sample_bytes(config: MoRConfig, batch_size: int, dtype: torch.dtype = torch.float64) -> int:
    """Bytes that :func:`sample_mor` allocates at its peak (an upper estimate): X, its
    Gaussian draw, the chosen components and their product (4 (B, N, d) float64 arrays), y, z,
    noise and the labels' temporaries (5 (B, N)), components and pi; a float32 batch adds its
    rounded copy."""
    B, N, d, K = int(batch_size), int(config.n) + 1, int(config.d), int(config.K)
    f64 = 8 * (4 * B * N * d + 5 * B * N + 2 * B * K * d + 3 * B * K)
    return f64 + (f64 // 2 if dtype == torch.float32 else 0)


def fresh_batch(
    config: MoRConfig, batch_size: int, *, seed: int, step: int, dtype: torch.dtype = torch.float64
) -> MoRBatch:
    """Fresh-sampling mode: the batch of training step ``step`` of the run seeded ``seed``.

    The generator is derived from ``(seed, "fresh", step)``, so batch ``step`` can be
    regenerated after an interruption without stored generator state.
    """
    step = check_int(step, "step", minimum=0)
    return sample_mor(config, batch_size, seed=derive_seed(seed, "fresh", step), dtype=dtype)


@dataclass(frozen=True)
class PromptPool:
    """Fixed-B mode: a pool of B prompts drawn once, from which training minibatches are taken.

    Used for the excess-risk-vs-B experiment (MoR Figure 2): the learner only ever sees
    these B prompts.
    """

    prompts: MoRBatch

    @classmethod
    def draw(
        cls, config: MoRConfig, B: int, *, seed: int, dtype: torch.dtype = torch.float64
    ) -> PromptPool:
        """Draw a pool of ``B`` prompts from stream ``(seed, "pool")``."""
        return cls(sample_mor(config, B, seed=derive_seed(seed, "pool"), dtype=dtype))

    @property
    def B(self) -> int:
        return self.prompts.B

    def minibatch(self, batch_size: int, *, seed: int, step: int) -> MoRBatch:
        """Minibatch of training step ``step``: indices drawn uniformly with replacement
        from stream ``(seed, "pool-index", step)``."""
        size = check_int(batch_size, "batch_size", minimum=1)
        p = self.prompts
        per_prompt = p.X[0].numel() + 2 * p.y[0].numel() + p.betas[0].numel() + p.K + 2
        check_memory(8 * size * per_prompt, "batch_size", f"a minibatch of {size} prompts")
        g = make_generator(derive_seed(seed, "pool-index", check_int(step, "step", minimum=0)))
        idx = torch.randint(0, self.B, (size,), generator=g)
        return self.prompts.select(idx)


def validate_prompts(X: torch.Tensor, y: torch.Tensor) -> tuple[int, int, int]:
    """Check a pair of prompt arrays ``X (B, n, d)``, ``y (B, n)``; return (B, n, d)."""
    check_shape(X, "X", (None, None, None))
    B, n, d = X.shape
    if B < 1 or n < 1 or d < 1:
        raise ParameterError(f"X must have B >= 1, n >= 1, d >= 1, got shape {tuple(X.shape)}")
    check_shape(y, "y", (B, n))
    check_finite_tensor(X, "X")
    check_finite_tensor(y, "y")
    return int(B), int(n), int(d)
