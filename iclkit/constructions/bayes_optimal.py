"""The Bayes-optimal in-context predictor of the MoR model: the posterior mean of the query's
label given the prompt alone, with the components integrated over their prior and the
assignments summed over.

What is conditioned on
----------------------
The prompt ``(x_1, y_1), ..., (x_m, y_m)``, the query covariate ``x_q``, the noise level
``sigma`` and the mixing weights ``pi`` (both known, as every other baseline is given them);
the components ``beta_1..beta_K`` (i.i.d. ``N(0, tau^2 I_d)``, the ``"gaussian"`` prior of
:class:`~iclkit.theory.mor.MoRConfig`) and the assignments ``z_1..z_m`` are unknown. The
covariance of x plays no part: x is independent of z and beta, so it cancels from the
posterior.

Formulas (derived here, standard conjugate algebra)
---------------------------------------------------
Write ``lam = sigma^2 / tau^2`` and, for an assignment ``z`` and component ``k``,
``A_k(z) = sum_{i: z_i = k} x_i x_i^T + lam I``, ``b_k(z) = sum_{i: z_i = k} y_i x_i``,
``n_k(z) = #{i: z_i = k}``. Given z the components are independent Bayesian linear
regressions, so

    beta_k | data, z ~ N(mu_k, sigma^2 A_k^{-1}),   mu_k = A_k^{-1} b_k,

and the marginal likelihood ``p(y | X, z) = prod_k N(y_(k); 0, sigma^2 I + tau^2 X_(k) X_(k)^T)``
is, up to a factor that does not depend on z (determinant lemma and Woodbury),

    log p(z | data) = const + sum_k [ n_k log pi_k - (1/2) log det A_k + b_k^T mu_k / (2 sigma^2) ].

The query's label is ``x_q^T beta_{z_q} + v`` with ``z_q ~ pi`` independent of the prompt, so
the prediction is linear in ``x_q``:

    E[y_q | data] = x_q^T w_post,   w_post = E[sum_k pi_k beta_k | data] = sum_z p(z | data) sum_k pi_k mu_k(z).

Two ways to compute the sum over the K^m assignments:

- :func:`enumerate_posterior_mean`: exact, every assignment (vectorised; small m);
- :func:`gibbs_posterior_mean`: collapsed Gibbs sampling of z with the components integrated
  out. Site i is resampled from
  ``p(z_i = k | z_-i, data) ~ pi_k N(y_i; x_i^T mu_k^{(-i)}, sigma^2 (1 + x_i^T A_k^{(-i)-1} x_i))``
  (the posterior predictive of component k without example i); ``A_k^{-1}`` is kept by
  Sherman-Morrison rank-one updates and recomputed from the sufficient statistics at every sweep
  (so round-off cannot accumulate); each sweep starts with a Metropolis move that permutes the
  labels (accepted with probability ``min(1, prod_k pi_{s(k)}^{n_k} / pi_k^{n_k})``), so that a
  chain crosses between label-swapped modes. The estimate is Rao-Blackwellised (the exact conditional
  mean ``sum_k pi_k mu_k(z)`` is averaged over the draws), and its Monte Carlo standard
  error comes from independent chains: ``se = std(chain means) / sqrt(chains)``.

Cases
-----
- ``K = 1``: one assignment; the result is Bayesian linear regression's posterior predictive
  mean (tested against its kernel form).
- Symmetric two-component model (``beta_2 = -beta_1``, ``pi = (1/2, 1/2)``): the posterior is
  invariant under ``beta -> -beta``, and the predictor ``x_q^T (beta_1 + beta_2) / 2`` is 0 for
  every draw, so the Bayes-optimal prediction is exactly 0 (as is the oracle's).
- Sphere prior: not conjugate; not supported (:meth:`BayesOptimalPredictor.for_data` raises
  :class:`~iclkit.theory.validation.ParameterError` naming ``prior``).
- Dirichlet pi: not supported (``pi_mode``); the predictor would condition on the drawn pi.

With ``snr`` the sampler sets ``sigma = R_min / eta`` from the drawn components, so sigma
carries information about their separation that this posterior ignores (it treats sigma as
independent of the components). The predictor is then the exact posterior mean of the model
with known sigma and a Gaussian prior, not the exact Bayes floor of the SNR model (that floor,
sigma coupled to the components and not given, is :mod:`iclkit.constructions.bayes_snr`); with
a fixed ``sigma`` (``MoRConfig(sigma=...)``) it is exactly Bayes-optimal.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from iclkit.theory.mor import MoRBatch, MoRConfig, validate_prompts
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import (
    ParameterError,
    check_choice,
    check_finite_tensor,
    check_int,
    check_positive,
    check_shape,
)

from .predictors import resolve_positions

__all__ = [
    "BayesOptimalPredictor",
    "PosteriorMean",
    "PosteriorPredictor",
    "enumerate_posterior_mean",
    "gibbs_posterior_mean",
]

Method = Literal["auto", "enumerate", "gibbs"]

#: Largest number of assignments K^m enumerated by ``method="auto"``; above it, Gibbs.
DEFAULT_MAX_ASSIGNMENTS = 4096

#: Elements of the largest (prompts, assignments, K, d, d) block formed at once (64 MiB).
_BLOCK_ELEMENTS = 2**23


@dataclass(frozen=True)
class PosteriorMean:
    """Posterior mean ``w_post = E[sum_k pi_k beta_k | data]`` per prompt.

    Attributes
    ----------
    w : (B, d) float64
    chain_w : (B, C, d) float64, the mean of each Gibbs chain, or None (exact).
    method : "enumerate", "gibbs" or "symmetric".
    """

    w: torch.Tensor
    chain_w: torch.Tensor | None
    method: str

    def predict(self, x_query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``E[y_q | data] = x_q^T w_post`` for ``x_query`` (B, d), and its Monte Carlo standard
        error ``std_c(x_q^T w_c) / sqrt(C)`` over the chains (0 when exact); both (B,)."""
        check_shape(x_query, "x_query", tuple(self.w.shape))
        xq = x_query.to(self.w.dtype)
        mean = (xq * self.w).sum(-1)
        if self.chain_w is None:
            return mean, torch.zeros_like(mean)
        per_chain = (xq[:, None, :] * self.chain_w).sum(-1)  # (B, C)
        return mean, per_chain.std(dim=1, unbiased=True) / math.sqrt(per_chain.shape[1])


def _inputs(
    X: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor, pi: torch.Tensor
) -> tuple[int, int, int, int]:
    B, m, d = validate_prompts(X, y)
    check_shape(sigma, "sigma", (B,))
    check_shape(pi, "pi", (B, None))
    for t, name in ((sigma, "sigma"), (pi, "pi")):
        check_finite_tensor(t, name)
    if bool((sigma <= 0).any()):
        raise ParameterError("sigma must be > 0 for every prompt")
    if bool((pi < 0).any()):
        raise ParameterError("pi must be non-negative")
    return B, m, d, int(pi.shape[1])


def _conditional(
    S: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, pi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per assignment: ``-(1/2) sum_k log det A_k``, ``sum_k b_k^T mu_k`` and
    ``sum_k pi_k mu_k``, shapes (...,), (...,), (..., d).

    S : (..., K, d, d), b : (..., K, d); lam (...,) and pi (..., K) broadcast against them.
    """
    d = S.shape[-1]
    A = S + lam[..., None, None, None] * torch.eye(d, dtype=S.dtype)
    L = torch.linalg.cholesky(A)
    mu = torch.cholesky_solve(b[..., None], L)[..., 0]  # (..., K, d)
    half_logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (..., K)
    fit = (b * mu).sum(-1)  # (..., K)
    w = (pi[..., None] * mu).sum(-2)
    return -half_logdet.sum(-1), fit.sum(-1), w


def enumerate_posterior_mean(
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    pi: torch.Tensor,
    *,
    tau: float = 1.0,
    max_assignments: int = 2**16,
) -> PosteriorMean:
    """Exact ``w_post = E[sum_k pi_k beta_k | data]`` by summing over all K^m assignments.

    Parameters
    ----------
    X : (B, m, d) examples, ``y`` (B, m) labels.
    sigma : (B,) known noise levels; ``pi`` (B, K) known mixing weights.
    tau : prior scale of the components, ``beta_k ~ N(0, tau^2 I_d)``.
    max_assignments : refuse (ParameterError) when K^m exceeds it.

    Returns
    -------
    PosteriorMean with w (B, d), exact (chain_w None).
    """
    B, m, d, K = _inputs(X, y, sigma, pi)
    tau = check_positive(tau, "tau")
    limit = check_int(max_assignments, "max_assignments", minimum=1)
    if K**m > limit:
        raise ParameterError(
            f"max_assignments: K^m = {K}^{m} assignments exceed {limit}; use method='gibbs'"
        )
    f64 = torch.float64
    X, y, sigma, pi = (t.to(f64) for t in (X, y, sigma, pi))
    Z = torch.tensor(list(itertools.product(range(K), repeat=m)), dtype=torch.long)  # (A, m)
    onehot = torch.nn.functional.one_hot(Z, K).to(f64)  # (A, m, K)
    counts = onehot.sum(1)  # (A, K)
    xx = X[:, :, :, None] * X[:, :, None, :]  # (B, m, d, d)
    xy = X * y[:, :, None]  # (B, m, d)
    lam = sigma**2 / tau**2
    chunk = max(1, _BLOCK_ELEMENTS // (Z.shape[0] * K * d * d))
    out = torch.empty(B, d, dtype=f64)
    for s in range(0, B, chunk):
        e = slice(s, s + chunk)
        S = torch.einsum("amk,bmij->bakij", onehot, xx[e])
        bv = torch.einsum("amk,bmi->baki", onehot, xy[e])
        logdet_term, fit, w = _conditional(S, bv, lam[e, None], pi[e, None, :])
        log_prior = (counts[None] * torch.log(pi[e, None, :])).sum(-1)  # (b, A)
        logw = log_prior + logdet_term + fit / (2 * sigma[e, None] ** 2)
        out[e] = (torch.softmax(logw, dim=1)[..., None] * w).sum(1)
    return PosteriorMean(out, None, "enumerate")


def gibbs_posterior_mean(
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    pi: torch.Tensor,
    *,
    tau: float = 1.0,
    sweeps: int = 200,
    burn_in: int = 50,
    chains: int = 8,
    generator: torch.Generator,
) -> PosteriorMean:
    """``w_post = E[sum_k pi_k beta_k | data]`` by collapsed Gibbs sampling over the assignments (components integrated
    out), Rao-Blackwellised; ``chains`` independent chains started from ``z_i ~ pi`` give the
    standard error.

    Parameters
    ----------
    X, y, sigma, pi, tau : as :func:`enumerate_posterior_mean`.
    sweeps : sweeps over the m sites per chain, ``burn_in`` of them discarded (0 <= burn_in <
        sweeps).
    chains : independent chains (>= 2, for the standard error).
    generator : the only source of randomness.

    Returns
    -------
    PosteriorMean with w (B, d) (the average of the chain means) and chain_w (B, C, d); its
    :meth:`PosteriorMean.predict` gives the standard error ``std(chain means) / sqrt(C)``.
    """
    B, m, d, K = _inputs(X, y, sigma, pi)
    tau = check_positive(tau, "tau")
    sweeps = check_int(sweeps, "sweeps", minimum=1)
    burn_in = check_int(burn_in, "burn_in", minimum=0, maximum=sweeps - 1)
    C = check_int(chains, "chains", minimum=2)
    f64 = torch.float64
    R = B * C  # rows: prompt-major, chain-minor
    Xr = X.to(f64).repeat_interleave(C, 0)  # (R, m, d)
    yr = y.to(f64).repeat_interleave(C, 0)
    sig2 = sigma.to(f64).repeat_interleave(C, 0) ** 2
    pir = pi.to(f64).repeat_interleave(C, 0)
    log_pi = torch.log(pir)
    lam = sig2 / tau**2
    eye = torch.eye(d, dtype=f64)
    xx = Xr[:, :, :, None] * Xr[:, :, None, :]
    xy = Xr * yr[:, :, None]

    z = torch.multinomial(pir, m, replacement=True, generator=generator)  # (R, m)
    onehot = torch.nn.functional.one_hot(z, K).to(f64)  # (R, m, K)
    S = torch.einsum("rmk,rmij->rkij", onehot, xx)
    bv = torch.einsum("rmk,rmi->rki", onehot, xy)
    total = torch.zeros(R, d, dtype=f64)
    for sweep in range(sweeps):
        z, S, bv = _relabel(z, S, bv, log_pi, generator)
        P = torch.cholesky_inverse(torch.linalg.cholesky(S + lam[:, None, None, None] * eye))
        for i in range(m):
            x, yi = Xr[:, i], yr[:, i]
            old = torch.nn.functional.one_hot(z[:, i], K).to(f64)  # (R, K)
            S = S - old[:, :, None, None] * xx[:, i, None]
            bv = bv - old[:, :, None] * xy[:, i, None]
            u = P @ x[:, None, :, None]  # (R, K, d, 1)
            q = (x[:, None, :] * u[..., 0]).sum(-1)  # (R, K)
            # Sherman-Morrison downdate of the component that held example i
            c = old / torch.where(old > 0, 1 - q, torch.ones_like(q))
            P = P + c[:, :, None, None] * (u @ u.transpose(-1, -2))
            mu = (P @ bv[..., None])[..., 0]  # (R, K, d)
            Px = u * (1 + c * q)[:, :, None, None]  # the downdated P times x
            qn = q * (1 + c * q)  # x^T P x after the downdate
            var = sig2[:, None] * (1 + qn)  # (R, K)
            resid = yi[:, None] - (mu * x[:, None, :]).sum(-1)
            logp = log_pi - 0.5 * torch.log(var) - resid**2 / (2 * var)
            k = torch.multinomial(torch.softmax(logp, dim=1), 1, generator=generator)[:, 0]
            z[:, i] = k
            new = torch.nn.functional.one_hot(k, K).to(f64)
            S = S + new[:, :, None, None] * xx[:, i, None]
            bv = bv + new[:, :, None] * xy[:, i, None]
            P = P - (new / (1 + qn))[:, :, None, None] * (Px @ Px.transpose(-1, -2))
        if sweep >= burn_in:
            total = total + _conditional(S, bv, lam, pir)[2]
    chain_w = (total / (sweeps - burn_in)).reshape(B, C, d)
    return PosteriorMean(chain_w.mean(1), chain_w, "gibbs")


def _relabel(
    z: torch.Tensor,
    S: torch.Tensor,
    bv: torch.Tensor,
    log_pi: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Metropolis move on the labels: propose a uniformly random permutation ``s`` of the K
    labels (component k's examples move to label s(k)); the marginal likelihood is unchanged, so
    the acceptance probability is ``min(1, exp(sum_k n_k (log pi_{s(k)} - log pi_k)))``. It lets a
    chain cross between label-swapped modes, which single-site updates rarely do.

    z : (R, m) long; S : (R, K, d, d); bv : (R, K, d); log_pi : (R, K).
    """
    R, K = log_pi.shape
    if K == 1:
        return z, S, bv
    perm = torch.argsort(torch.rand(R, K, generator=generator, dtype=torch.float64), dim=1)
    counts = torch.nn.functional.one_hot(z, K).sum(1).to(log_pi.dtype)  # (R, K)
    log_ratio = (counts * (torch.gather(log_pi, 1, perm) - log_pi)).sum(1)
    u = torch.rand(R, generator=generator, dtype=torch.float64)
    accept = torch.log(u) < log_ratio  # (R,)
    inverse = torch.argsort(perm, dim=1)  # label j now holds old component inverse[j]
    z_new = torch.where(accept[:, None], torch.gather(perm, 1, z), z)
    rows = torch.arange(R)[:, None]
    S_new = torch.where(accept[:, None, None, None], S[rows, inverse], S)
    b_new = torch.where(accept[:, None, None], bv[rows, inverse], bv)
    return z_new, S_new, b_new


class PosteriorPredictor:
    """A predictor that is a posterior mean at each position m: subclasses give
    :meth:`posterior` (the posterior of the components after the first m examples); the
    prediction at m is its mean read-out at ``x_m``, with the Monte Carlo standard error."""

    def posterior(self, batch: MoRBatch, m: int) -> PosteriorMean:
        raise NotImplementedError

    def with_error(
        self, batch: MoRBatch, positions: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and their Monte Carlo standard errors, both (B, P)."""
        pos = resolve_positions(batch, positions)
        res = [self.posterior(batch, m).predict(batch.X[:, m]) for m in pos]
        mean = torch.stack([r[0] for r in res], 1).to(batch.X.dtype)
        return mean, torch.stack([r[1] for r in res], 1).to(batch.X.dtype)

    def __call__(self, batch: MoRBatch, positions: Sequence[int] | None = None) -> torch.Tensor:
        return self.with_error(batch, positions)[0]


@dataclass(frozen=True)
class BayesOptimalPredictor(PosteriorPredictor):
    """The posterior mean ``E[y_m | first m examples, x_m]`` under the MoR prior (module
    docstring), at each position m, with sigma and pi read from the batch (known).

    Parameters
    ----------
    tau : float
        Prior scale of the components, ``beta_k ~ N(0, tau^2 I_d)`` (``MoRConfig.prior_scale``).
    symmetric : bool
        Symmetric two-component model: the prediction is exactly 0.
    method : {"auto", "enumerate", "gibbs"}
        "auto" enumerates when K^m <= ``max_assignments`` and samples otherwise; "enumerate"
        raises ParameterError above that limit.
    max_assignments : int
        Largest number of assignments K^m enumerated.
    sweeps, burn_in, chains : int
        Gibbs settings (:func:`gibbs_posterior_mean`).
    seed : int
        Gibbs at position m draws from stream ``(seed, "bayes-gibbs", m)``.
    """

    tau: float = 1.0
    symmetric: bool = False
    method: Method = "auto"
    max_assignments: int = DEFAULT_MAX_ASSIGNMENTS
    sweeps: int = 200
    burn_in: int = 50
    chains: int = 8
    seed: int = 0
    name: str = "bayes_optimal"

    def __post_init__(self) -> None:
        check_positive(self.tau, "tau")
        check_choice(self.method, "method", get_args(Method))
        check_int(self.max_assignments, "max_assignments", minimum=1)
        check_int(self.sweeps, "sweeps", minimum=1)
        check_int(self.burn_in, "burn_in", minimum=0, maximum=self.sweeps - 1)
        check_int(self.chains, "chains", minimum=2)
        check_int(self.seed, "seed", minimum=0)

    @classmethod
    def for_data(cls, data: MoRConfig, **settings: object) -> BayesOptimalPredictor:
        """The predictor for prompts drawn from ``data`` (its prior scale and symmetry);
        ``settings`` are the other fields. Raises ParameterError for a prior without a
        closed-form posterior (``prior="sphere"``) or a random pi (``pi_mode="dirichlet"``)."""
        if data.prior != "gaussian":
            raise ParameterError(
                f"prior: the Bayes-optimal predictor needs the conjugate 'gaussian' prior, "
                f"got {data.prior!r}"
            )
        if data.pi_mode != "fixed":
            raise ParameterError(
                f"pi_mode: the Bayes-optimal predictor assumes a fixed, known pi, "
                f"got {data.pi_mode!r}"
            )
        return cls(tau=data.prior_scale, symmetric=data.symmetric, **settings)  # type: ignore[arg-type]

    def posterior(self, batch: MoRBatch, m: int) -> PosteriorMean:
        """The posterior mean of ``sum_k pi_k beta_k`` given the first m examples
        (1 <= m <= n)."""
        m = check_int(m, "positions", minimum=1, maximum=batch.n)
        if self.symmetric:
            if batch.K != 2:
                raise ParameterError(f"K must be 2 for the symmetric model, got K={batch.K}")
            return PosteriorMean(
                torch.zeros(batch.B, batch.d, dtype=torch.float64), None, "symmetric"
            )
        args = (batch.X[:, :m], batch.y[:, :m], batch.sigma, batch.pi)
        if self.method == "enumerate" or (
            self.method == "auto" and batch.K**m <= self.max_assignments
        ):
            return enumerate_posterior_mean(
                *args, tau=self.tau, max_assignments=self.max_assignments
            )
        g = make_generator(derive_seed(self.seed, "bayes-gibbs", m))
        return gibbs_posterior_mean(
            *args,
            tau=self.tau,
            sweeps=self.sweeps,
            burn_in=self.burn_in,
            chains=self.chains,
            generator=g,
        )
