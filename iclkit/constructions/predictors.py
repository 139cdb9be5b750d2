"""One call signature for every in-context predictor, so that a trained transformer and every
baseline are evaluated on identical prompts, per prompt prefix length.

A predictor is called as ``predictor(batch, positions) -> (B, P)``: for each position ``m`` in
``positions`` (1 <= m <= n, where token n is the query) it predicts ``y_m`` from the examples
``(x_0, y_0), ..., (x_{m-1}, y_{m-1})`` and ``x_m`` — the causal (dtsip) convention, so a decoder
that predicts at every x token fits the same interface. ``positions=None`` means ``[n]``, the query.

Baselines (``docs/provenance.md`` §2, §4):

- :class:`OraclePredictor` - ``x^T sum_k pi_k beta_k`` (the paper's reference,
  ``docs/provenance.md`` §2 [2nd]).
- :class:`KnownComponentsPredictor` - posterior mean of ``y_m`` given the prompt prefix and the
  *true* component set (not a Bayes-optimal in-context learner: it is told the components).
  With fixed, known pi it *equals* the oracle: z_m is independent of the prompt and of x_m, so
  ``E[y_m | prompt, x_m, betas] = x_m^T sum_k pi_k beta_k``. With ``pi ~ Dirichlet`` per prompt
  (K = 2) the prefix is informative about pi and the posterior mean of pi is computed by
  quadrature on a Gauss-Legendre grid.
- :class:`iclkit.constructions.bayes_optimal.BayesOptimalPredictor` - the posterior mean given
  the prompt alone (components integrated over their prior, assignments summed over): the
  floor of any in-context learner.
- :class:`EMPredictor`, :class:`GradientEMPredictor` - plug-in ``x^T sum_k pi_hat_k beta_hat_k``.
- :class:`OLSPredictor`, :class:`RidgePredictor`, :class:`ZeroPredictor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from iclkit.theory.mor import MoRBatch
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import (
    ParameterError,
    check_int,
    check_positive,
    check_real,
    check_seed,
)

from .algorithms import EMResult, em, gradient_em, ols, ridge
from .em_core import log_joint

__all__ = [
    "LOCAL_INIT_RHO",
    "EMPredictor",
    "GradientEMPredictor",
    "KnownComponentsPredictor",
    "OLSPredictor",
    "OraclePredictor",
    "Predictor",
    "RidgePredictor",
    "ZeroPredictor",
    "initial_estimate",
    "resolve_positions",
]

InitMethod = Literal["local", "random", "spectral"]

#: Relative perturbation of the "local" initialisation: the truth moved by 10% of its norm, well
#: inside the local-convergence region the theory assumes and far enough to need the iterations.
LOCAL_INIT_RHO = 0.1

#: Floor of a norm before dividing by it (above float64's smallest normal number).
_TINY = 1e-300


class Predictor(Protocol):
    """``predictor(batch, positions) -> (B, len(positions))`` predictions of ``y_m``.

    ``name`` is read-only, so frozen dataclasses satisfy the protocol.
    """

    @property
    def name(self) -> str: ...

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor: ...


def resolve_positions(batch: MoRBatch, positions: Sequence[int] | None) -> list[int]:
    """Validate prediction positions (default: the query, position n)."""
    if positions is None:
        return [batch.n]
    out = [check_int(m, "positions", minimum=1, maximum=batch.n) for m in positions]
    if not out:
        raise ParameterError("positions must not be empty")
    return out


def initial_estimate(
    betas: torch.Tensor,
    *,
    method: InitMethod = "local",
    rho: float = LOCAL_INIT_RHO,
    generator: torch.Generator,
    X: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    symmetric: bool = False,
) -> torch.Tensor:
    """Initialisation of EM-type algorithms (docs/provenance.md §4: an explicit argument; default local).

    Parameters
    ----------
    betas : (B, K, d) true components (used by "local"; gives the shape otherwise).
    method :
        "local": ``beta_k + rho ||beta_k|| u_k`` with u_k uniform on the unit sphere, the
        local-convergence regime of the theory [ours];
        "random": N(0, I_d), ignoring the truth;
        "spectral": from the data ``X (B, n, d)``, ``y (B, n)``. For x ~ N(0, I_d),
        ``E[y^2 (x x^T - I)] = 2 sum_k pi_k beta_k beta_k^T`` [RECON, Gaussian fourth moments],
        so the top-K eigenpairs (lambda_k, v_k) of the empirical matrix give
        ``beta_k = sqrt(max(lambda_k, 0) K / 2) v_k`` (uniform pi): a heuristic starting point
        (the eigenvectors span the components but are orthogonalised). With ``symmetric=True``
        the matrix is ``2 beta beta^T`` and ``beta = sqrt(lambda_1 / 2) v_1``, consistent up to
        sign as n grows.
    rho : relative perturbation size for "local".

    Returns
    -------
    (B, K, d)
    """
    rho = check_real(rho, "rho", minimum=0.0)
    if method == "spectral":
        if X is None or y is None:
            raise ParameterError("X and y: the spectral init needs the prompt data")
        B, n, d = X.shape
        K = betas.shape[1]
        M = torch.einsum("bn,bni,bnj->bij", y * y, X, X) / n
        M = M - (y * y).mean(1)[:, None, None] * torch.eye(d, dtype=X.dtype)
        evals, evecs = torch.linalg.eigh(M)  # ascending
        k_eff = min(K, d)
        lam = evals[:, -k_eff:].flip(-1).clamp_min(0.0)
        vecs = evecs[:, :, -k_eff:].flip(-1).transpose(1, 2)  # (B, k_eff, d)
        out = torch.zeros(B, K, d, dtype=X.dtype)
        if symmetric:
            top = torch.sqrt(lam[:, 0] / 2)[:, None] * vecs[:, 0]
            out[:, 0], out[:, 1] = top, -top
        else:
            out[:, :k_eff] = torch.sqrt(lam * K / 2)[:, :, None] * vecs
        return out
    noise = torch.randn(betas.shape, generator=generator, dtype=torch.float64).to(betas.dtype)
    if method == "random":
        return noise
    if method != "local":
        raise ParameterError(f"init must be 'local', 'random' or 'spectral', got {method!r}")
    u = noise / torch.linalg.vector_norm(noise, dim=-1, keepdim=True).clamp_min(_TINY)
    return betas + rho * torch.linalg.vector_norm(betas, dim=-1, keepdim=True) * u


def _targets(batch: MoRBatch, positions: list[int]) -> torch.Tensor:
    return batch.X[:, positions]  # (B, P, d)


def _linear_predictions(batch: MoRBatch, positions: list[int], fit: object) -> torch.Tensor:
    """Apply ``fit(X_prefix, y_prefix, m) -> w (B, d)`` per position; returns (B, P)."""
    out = []
    for m in positions:
        w = fit(batch.X[:, :m], batch.y[:, :m], m)  # type: ignore[operator]
        out.append(torch.einsum("bd,bd->b", batch.X[:, m], w))
    return torch.stack(out, dim=1)


@dataclass(frozen=True)
class _InitStream:
    """Where a plug-in predictor starts on the prefix of length m: :func:`initial_estimate`
    drawn from stream ``(seed, stream, m)``."""

    seed: int
    stream: str
    method: InitMethod
    rho: float
    symmetric: bool

    def draw(self, batch: MoRBatch, X: torch.Tensor, y: torch.Tensor, m: int) -> torch.Tensor:
        g = make_generator(derive_seed(self.seed, self.stream, m))
        return initial_estimate(
            batch.betas,
            method=self.method,
            rho=self.rho,
            generator=g,
            X=X,
            y=y,
            symmetric=self.symmetric,
        )


def _plug_in_predictions(
    batch: MoRBatch,
    positions: Sequence[int] | None,
    start: _InitStream,
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], EMResult],
) -> torch.Tensor:
    """The plug-in oracle ``x_m^T sum_k pi_hat_k beta_hat_k`` with ``(pi_hat, beta_hat)`` from
    ``run(X_prefix, y_prefix, init)`` on each prefix; returns (B, P)."""

    def fit(X: torch.Tensor, y: torch.Tensor, m: int) -> torch.Tensor:
        res = run(X, y, start.draw(batch, X, y, m))
        return torch.einsum("bk,bkd->bd", res.pi, res.betas)

    return _linear_predictions(batch, resolve_positions(batch, positions), fit)


@dataclass(frozen=True)
class ZeroPredictor:
    """Predicts 0 (the trivial baseline)."""

    name: str = "zero"

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pos = resolve_positions(batch, positions)
        return torch.zeros(batch.B, len(pos), dtype=batch.X.dtype)


@dataclass(frozen=True)
class OraclePredictor:
    """``y_hat_m = x_m^T sum_k pi_k beta_k`` with the true components and weights."""

    name: str = "oracle"

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pos = resolve_positions(batch, positions)
        return torch.einsum("bpd,bd->bp", _targets(batch, pos), batch.w_oracle)


@dataclass(frozen=True)
class KnownComponentsPredictor:
    """Posterior mean of ``y_m`` given the prefix, ``x_m`` and the true component set.

    Parameters
    ----------
    dirichlet_alpha : float or None
        ``None``: pi is fixed and known (the default MoR model); the posterior mean is then
        exactly the oracle prediction (see the module docstring). A number: pi ~ Dirichlet with
        this per-component concentration (symmetric prior, K = 2 only); the posterior mean of
        pi_1 given the prefix is computed by Gauss-Legendre quadrature with ``nodes`` points.
    """

    dirichlet_alpha: float | None = None
    nodes: int = 400
    name: str = "known_components"

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pos = resolve_positions(batch, positions)
        if self.dirichlet_alpha is None:
            return OraclePredictor()(batch, pos)
        a = check_positive(self.dirichlet_alpha, "dirichlet_alpha")
        if batch.K != 2:
            raise ParameterError(
                f"K must be 2 for the known-components predictor with Dirichlet pi (quadrature), "
                f"got K={batch.K}"
            )
        t, w = np.polynomial.legendre.leggauss(check_int(self.nodes, "nodes", minimum=8))
        p = torch.from_numpy((t + 1) / 2)  # nodes in (0, 1) for pi_1
        log_w = torch.from_numpy(np.log(w / 2)) + (a - 1) * (torch.log(p) + torch.log1p(-p))
        out = []
        for m in pos:
            X, y = batch.X[:, :m].double(), batch.y[:, :m].double()
            half = torch.full((batch.B, 2), 0.5, dtype=torch.float64)
            # log phi_ik + log(1/2); remove the 1/2 to get log phi_ik
            lj = log_joint(X, y, batch.betas.double(), half, batch.sigma.double()) - np.log(0.5)
            # log-likelihood of the prefix at each node: sum_i log(p phi_i1 + (1-p) phi_i2)
            mix = torch.logaddexp(
                lj[:, :, None, 0] + torch.log(p)[None, None, :],
                lj[:, :, None, 1] + torch.log1p(-p)[None, None, :],
            ).sum(1)  # (B, G)
            post = torch.softmax(mix + log_w[None, :], dim=1)
            pi1 = (post * p[None, :]).sum(1)
            w_post = (
                pi1[:, None] * batch.betas[:, 0].double()
                + (1 - pi1)[:, None] * batch.betas[:, 1].double()
            )
            out.append(torch.einsum("bd,bd->b", batch.X[:, m].double(), w_post).to(batch.X.dtype))
        return torch.stack(out, 1)


@dataclass(frozen=True)
class EMPredictor:
    """EM on each prefix (T iterations from an explicit init), then the plug-in oracle
    ``x_m^T sum_k pi_hat_k beta_hat_k``.

    The init is drawn from stream ``(seed, "em-init", m)`` of :func:`initial_estimate`, so the
    predictor is deterministic.
    """

    T: int = 20
    init: InitMethod = "local"
    rho: float = LOCAL_INIT_RHO
    estimate_pi: bool = True
    seed: int = 0
    name: str = "em"

    def __post_init__(self) -> None:
        check_seed(self.seed, "seed")

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pi0 = None if self.estimate_pi else batch.pi

        def run(X: torch.Tensor, y: torch.Tensor, init: torch.Tensor) -> EMResult:
            return em(X, y, init, batch.sigma, pi0, T=self.T, estimate_pi=self.estimate_pi)

        start = _InitStream(self.seed, "em-init", self.init, self.rho, symmetric=False)
        return _plug_in_predictions(batch, positions, start, run)


@dataclass(frozen=True)
class GradientEMPredictor:
    """Gradient EM on each prefix (``T_outer`` x ``T_inner`` steps of size ``alpha``), then the
    plug-in oracle. ``symmetric=True`` uses the tied tanh form (its prediction is 0 because
    pi = (1/2, 1/2) and beta_2 = -beta_1; use the parameter error there)."""

    T_outer: int = 10
    T_inner: int = 1
    alpha: float = 1.0
    init: InitMethod = "local"
    rho: float = LOCAL_INIT_RHO
    estimate_pi: bool = False
    symmetric: bool = False
    seed: int = 0
    name: str = "gradient_em"

    def __post_init__(self) -> None:
        check_seed(self.seed, "seed")

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pi0 = None if (self.estimate_pi or self.symmetric) else batch.pi

        def run(X: torch.Tensor, y: torch.Tensor, init: torch.Tensor) -> EMResult:
            return gradient_em(
                X,
                y,
                init,
                batch.sigma,
                pi0,
                T_outer=self.T_outer,
                T_inner=self.T_inner,
                alpha=self.alpha,
                estimate_pi=self.estimate_pi,
                symmetric=self.symmetric,
            )

        start = _InitStream(self.seed, "gem-init", self.init, self.rho, symmetric=self.symmetric)
        return _plug_in_predictions(batch, positions, start, run)


@dataclass(frozen=True)
class OLSPredictor:
    """Least squares on the prefix (minimum-norm when m < d), ignoring the mixture."""

    name: str = "ols"

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pos = resolve_positions(batch, positions)
        return _linear_predictions(batch, pos, lambda X, y, m: ols(X, y))


@dataclass(frozen=True)
class RidgePredictor:
    """Ridge on the prefix; ``lam=None`` uses ``sigma^2 / tau^2`` per prompt (the posterior mean
    of a single N(0, tau^2 I) component)."""

    lam: float | None = None
    tau: float = 1.0
    name: str = "ridge"

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        pos = resolve_positions(batch, positions)
        tau = check_positive(self.tau, "tau")
        lam = batch.sigma**2 / tau**2 if self.lam is None else self.lam
        return _linear_predictions(batch, pos, lambda X, y, m: ridge(X, y, lam))
