"""The Bayes-optimal in-context predictor of the MoR model *with an SNR*: the noise level is a
function of the components, ``sigma(beta) = R(beta) / eta``, and is not given to the learner.

The data model (:func:`iclkit.theory.mor.sample_mor` with ``snr = eta``): ``beta_k ~ N(0, tau^2
I_d)`` i.i.d., ``R(beta) = min_{j != k} ||beta_j - beta_k||`` (``||beta_1||`` when K = 1),
``sigma = R(beta) / eta``, ``z_i ~ pi`` (fixed, known), ``y_i = x_i^T beta_{z_i} + sigma v_i``.
The posterior of the components and assignments given the prompt is

    p(beta, z | data) ~ prod_k N(beta_k; 0, tau^2 I) prod_i pi_{z_i} N(y_i; x_i^T beta_{z_i}, sigma(beta)^2),

and the Bayes-optimal prediction of the query's label is ``x_q^T E[sum_k pi_k beta_k | data]``
(the query's component is drawn from pi independently of the prompt, as in the oracle
``x_q^T sum_k pi_k beta_k`` of :class:`~iclkit.constructions.predictors.OraclePredictor`).
Because sigma depends on beta, the conjugate algebra of
:mod:`iclkit.constructions.bayes_optimal` does not apply; that module's posterior at a fixed sigma
is exact only for ``MoRConfig(sigma=...)``.

The sampler [DERIVED here; standard Metropolis-within-Gibbs]
-----------------------------------------------------------
The state is ``(beta, z)``. One sweep:

1. ``z | beta``: the sites are independent given beta, ``p(z_i = k | beta, data) ~ pi_k
   exp(-(y_i - x_i^T beta_k)^2 / (2 sigma(beta)^2))`` (exact categorical, drawn by Gumbel-max).
2. ``beta_k | beta_-k, z`` for k = 1..K in turn, by Metropolis-Hastings. With
   ``s = sigma(beta)`` of the current state, the proposal is the conjugate posterior of
   component k at that noise level,
   ``q(beta_k' | beta) = N(mu_k(s), s^2 A_k(s)^{-1})``, ``A_k(s) = sum_{z_i = k} x_i x_i^T +
   (s^2 / tau^2) I``, ``mu_k(s) = A_k(s)^{-1} sum_{z_i = k} y_i x_i``. It depends on the current
   state only through s, so the reverse density is that of ``beta_k`` under the conjugate
   posterior at ``s' = sigma(beta')``, and the move is accepted with probability
   ``min(1, [T(beta') q(beta_k | beta')] / [T(beta) q(beta_k' | beta)])``, where
   ``log T(beta) = -||beta_k||^2 / (2 tau^2) - m log sigma(beta) - sum_i (y_i - x_i^T
   beta_{z_i})^2 / (2 sigma(beta)^2)`` (every example enters: sigma moves with beta_k).
   When s' = s the ratio is 1 (a Gibbs draw of the fixed-sigma model). Then a second
   Metropolis-Hastings move of the same component with an independence proposal from the prior,
   ``beta_k' ~ N(0, tau^2 I)``, accepted with ``min(1, T(beta') N(beta_k) / (T(beta)
   N(beta_k')))`` (the prior terms cancel: the likelihood ratio at sigma(beta') and sigma(beta)).
   It reaches the broad, large-sigma part of the posterior that the conjugate proposal at a small
   sigma(beta) does not propose (measured: at K = 1, d = 1 the chains' standard error falls from
   0.28 to 0.009 with it). Each move leaves the posterior invariant, so their cycle does.
3. Label move: a uniformly random permutation of the K labels applied to beta and z together,
   accepted with probability ``min(1, prod_k pi_{s(k)}^{n_k} / pi_k^{n_k})`` (prior, R and the
   likelihood are invariant under relabelling), so chains cross between label-swapped modes
   when pi is not uniform (with a uniform pi every move is accepted and changes nothing that
   is averaged).

After ``burn_in`` sweeps, ``sum_k pi_k beta_k`` is averaged over the sweeps of each chain; the
estimate is the mean of ``chains`` independent chains (started from the prior) and its Monte
Carlo standard error ``std(chain means) / sqrt(chains)`` (valid when the chains have mixed; their
common bias, if not, is not in it).

Cases
-----
- Symmetric model (``beta_2 = -beta_1``, ``pi = (1/2, 1/2)``): ``sum_k pi_k beta_k = 0`` for
  every draw, so the prediction is exactly 0 (the oracle's).
- ``prior="sphere"``, ``pi_mode="dirichlet"`` or a fixed ``sigma``: refused by
  :meth:`BayesSNRPredictor.for_data` (``ParameterError`` naming ``prior``, ``pi_mode`` or
  ``snr``); with a fixed sigma use :class:`~iclkit.constructions.bayes_optimal.BayesOptimalPredictor`.

Tested against quadrature over the components with the assignments summed exactly (K = 1 and
K = 2, d = 1) in ``tests/constructions/test_bayes_snr.py``.
"""

from __future__ import annotations

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

from .bayes_optimal import PosteriorMean, PosteriorPredictor

__all__ = ["BayesSNRPredictor", "SNRPosteriorMean", "separation", "snr_posterior_mean"]

Start = Literal["prior", "truth"]


@dataclass(frozen=True)
class SNRPosteriorMean(PosteriorMean):
    """:class:`~iclkit.constructions.bayes_optimal.PosteriorMean` with the sampler's mean
    Metropolis-Hastings acceptance rate of the component moves (a mixing diagnostic)."""

    acceptance: float = float("nan")


def separation(betas: torch.Tensor) -> torch.Tensor:
    """``R(beta)``: ``min_{j != k} ||beta_j - beta_k||``, or ``||beta_1||`` when K = 1.

    betas : (R, K, d) -> (R,). The same quantity as
    :func:`iclkit.theory.mor.component_separation` (non-symmetric case).
    """
    K = betas.shape[1]
    if K == 1:
        return torch.linalg.vector_norm(betas[:, 0], dim=-1)
    return _min_distance(_distances(betas, torch.eye(K, dtype=torch.bool)), betas)


def _distances(beta: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """Pairwise ``||beta_j - beta_k||`` (R, K, K) with inf on the diagonal (K >= 2)."""
    diff = beta[:, :, None, :] - beta[:, None, :, :]
    return torch.linalg.vector_norm(diff, dim=-1).masked_fill(eye, float("inf"))


def _min_distance(dist: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """R(beta) from the distance matrix (``||beta_1||`` when K = 1); (R,)."""
    if beta.shape[1] == 1:
        return torch.linalg.vector_norm(beta[:, 0], dim=-1)
    return dist.flatten(1).min(dim=1).values


def _sse(beta: torch.Tensor, S: torch.Tensor, b: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
    """``sum_{z_i = k} (y_i - x_i^T beta_k)^2 = beta_k^T S_k beta_k - 2 beta_k^T b_k + yy_k``,
    clamped at 0 against round-off; beta (R, K, d), S (R, K, d, d), b (R, K, d), yy (R, K)."""
    quad = (beta * (S @ beta[..., None])[..., 0]).sum(-1)
    return (quad - 2 * (beta * b).sum(-1) + yy).clamp_min(0.0)


def _log_target(
    beta_k: torch.Tensor,
    resid2: torch.Tensor,
    sigma: torch.Tensor,
    m: int,
    tau: float,
) -> torch.Tensor:
    """``-||beta_k||^2/(2 tau^2) - m log sigma - sum_i r_i^2/(2 sigma^2)``; resid2 (R,) is
    ``sum_i r_i^2``; beta_k (R, d); sigma (R,)."""
    prior = -(beta_k**2).sum(-1) / (2 * tau**2)
    return prior - m * torch.log(sigma) - resid2 / (2 * sigma**2)


def _conjugate(
    S: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cholesky factor L of ``A = S + (sigma^2/tau^2) I`` and ``mu = A^{-1} b``; S (R, d, d),
    b (R, d), sigma (R,)."""
    d = S.shape[-1]
    A = S + (sigma**2 / tau**2)[:, None, None] * torch.eye(d, dtype=S.dtype)
    L = torch.linalg.cholesky(A)
    return L, torch.cholesky_solve(b[..., None], L)[..., 0]


def _log_q(
    beta_k: torch.Tensor, L: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``log N(beta_k; mu, sigma^2 (L L^T)^{-1})`` up to a constant common to all states."""
    d = beta_k.shape[-1]
    u = (L.transpose(-1, -2) @ (beta_k - mu)[..., None])[..., 0]  # L^T (beta - mu)
    half_logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return half_logdet - d * torch.log(sigma) - (u**2).sum(-1) / (2 * sigma**2)


def snr_posterior_mean(
    X: torch.Tensor,
    y: torch.Tensor,
    pi: torch.Tensor,
    snr: float,
    *,
    tau: float = 1.0,
    sweeps: int = 200,
    burn_in: int = 50,
    chains: int = 8,
    generator: torch.Generator,
    init: torch.Tensor | None = None,
) -> SNRPosteriorMean:
    """``w_post = E[sum_k pi_k beta_k | data]`` under the SNR model (module docstring).

    Parameters
    ----------
    X : (B, m, d) examples; y : (B, m) labels.
    pi : (B, K) known mixing weights (positive).
    snr : eta > 0; sigma = R(beta) / eta.
    tau : prior scale, ``beta_k ~ N(0, tau^2 I_d)``.
    sweeps : sweeps per chain, ``burn_in`` of them discarded (0 <= burn_in < sweeps).
    chains : independent chains (>= 2, for the standard error).
    generator : the only source of randomness.
    init : (B, K, d) starting components of every chain of each prompt, or None: each chain
        starts from its own prior draw. The target does not depend on it; only the chains'
        mixing does.

    Returns
    -------
    SNRPosteriorMean with w (B, d), chain_w (B, C, d), method "snr-mh" and the acceptance rate.
    """
    B, m, d = validate_prompts(X, y)
    check_shape(pi, "pi", (B, None))
    check_finite_tensor(pi, "pi")
    if bool((pi <= 0).any()):
        raise ParameterError("pi must be > 0 for every component")
    eta = check_positive(snr, "snr")
    tau = check_positive(tau, "tau")
    sweeps = check_int(sweeps, "sweeps", minimum=1)
    burn_in = check_int(burn_in, "burn_in", minimum=0, maximum=sweeps - 1)
    C = check_int(chains, "chains", minimum=2)
    K = int(pi.shape[1])
    f64 = torch.float64
    R = B * C  # rows: prompt-major, chain-minor
    Xr = X.to(f64).repeat_interleave(C, 0)  # (R, m, d)
    yr = y.to(f64).repeat_interleave(C, 0)
    pir = pi.to(f64).repeat_interleave(C, 0)
    log_pi = torch.log(pir)
    xx = Xr[:, :, :, None] * Xr[:, :, None, :]  # (R, m, d, d)
    xy = Xr * yr[:, :, None]

    yy = yr[:, :, None] ** 2  # (R, m, 1)
    eye = torch.eye(K, dtype=torch.bool)
    cross = [eye[k][:, None] | eye[k][None, :] for k in range(K)]  # pairs that involve k
    beta = tau * torch.randn(R, K, d, generator=generator, dtype=f64)
    if init is not None:
        check_shape(init, "init", (B, K, d))
        check_finite_tensor(init, "init")
        beta = init.to(f64).repeat_interleave(C, 0).clone()
    total = torch.zeros(R, d, dtype=f64)
    accepted = torch.zeros((), dtype=f64)
    for sweep in range(sweeps):
        # 1. z | beta (Gumbel-max on the exact categorical)
        dist = _distances(beta, eye)  # (R, K, K), inf on the diagonal
        sigma = _min_distance(dist, beta) / eta
        fit = torch.einsum("rmd,rkd->rmk", Xr, beta)
        logits = log_pi[:, None, :] - (yr[:, :, None] - fit) ** 2 / (2 * sigma[:, None, None] ** 2)
        u = torch.rand(R, m, K, generator=generator, dtype=f64).clamp_min(1e-300)
        z = torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)  # (R, m)
        onehot = torch.nn.functional.one_hot(z, K).to(f64)  # (R, m, K)
        S_all = torch.einsum("rmk,rmij->rkij", onehot, xx)
        b_all = torch.einsum("rmk,rmi->rki", onehot, xy)
        yy_all = (onehot * yy).sum(1)  # (R, K)
        # per-component residual sums of squares, sum_{z_i = k} (y_i - x_i^T beta_k)^2
        sse = _sse(beta, S_all, b_all, yy_all)  # (R, K)
        # 2. beta_k | beta_-k, z by MH: the conjugate proposal at sigma(beta), then an
        # independence proposal from the prior (reaches the wide, large-sigma region)
        for k in range(K):
            for kind in ("conjugate", "prior"):
                cur = beta[:, k]
                if kind == "conjugate":
                    L, mu = _conjugate(S_all[:, k], b_all[:, k], sigma, tau)
                    eps = torch.randn(R, d, 1, generator=generator, dtype=f64)
                    step = torch.linalg.solve_triangular(L.transpose(-1, -2), eps, upper=True)
                    prop_k = mu + sigma[:, None] * step[..., 0]
                else:
                    prop_k = tau * torch.randn(R, d, generator=generator, dtype=f64)
                if K == 1:
                    row = None
                    sigma_p = torch.linalg.vector_norm(prop_k, dim=-1) / eta
                else:
                    row = torch.linalg.vector_norm(beta - prop_k[:, None, :], dim=-1)  # (R, K)
                    row[:, k] = float("inf")
                    # pairs without component k, then pairs with the proposed beta_k
                    others = dist.masked_fill(cross[k], float("inf")).flatten(1).amin(1)
                    sigma_p = torch.minimum(others, row.amin(1)) / eta
                sse_k_p = _sse(prop_k[:, None], S_all[:, k : k + 1], b_all[:, k : k + 1],
                               yy_all[:, k : k + 1])[:, 0]  # fmt: skip
                resid2 = sse.sum(-1)
                resid2_p = resid2 - sse[:, k] + sse_k_p
                log_alpha = _log_target(prop_k, resid2_p, sigma_p, m, tau) - _log_target(
                    cur, resid2, sigma, m, tau
                )
                if kind == "conjugate":
                    L_p, mu_p = _conjugate(S_all[:, k], b_all[:, k], sigma_p, tau)
                    log_alpha = (
                        log_alpha + _log_q(cur, L_p, mu_p, sigma_p) - _log_q(prop_k, L, mu, sigma)
                    )
                else:  # q = prior: the prior terms of the target cancel
                    log_alpha = log_alpha + ((prop_k**2).sum(-1) - (cur**2).sum(-1)) / (2 * tau**2)
                ok = torch.log(torch.rand(R, generator=generator, dtype=f64)) < log_alpha
                ok = ok & (sigma_p > 0)
                beta[:, k] = torch.where(ok[:, None], prop_k, cur)
                sse[:, k] = torch.where(ok, sse_k_p, sse[:, k])
                if row is not None:
                    row = torch.where(ok[:, None], row, dist[:, k])
                    dist[:, k, :] = row
                    dist[:, :, k] = row
                sigma = torch.where(ok, sigma_p, sigma)
                if kind == "conjugate":
                    accepted = accepted + ok.to(f64).mean()
        # 3. label permutation of (beta, z) together
        if K > 1:
            beta = _relabel(beta, z, log_pi, generator)
        if sweep >= burn_in:
            total = total + (pir[:, :, None] * beta).sum(1)
    chain_w = (total / (sweeps - burn_in)).reshape(B, C, d)
    return SNRPosteriorMean(chain_w.mean(1), chain_w, "snr-mh", float(accepted) / (sweeps * K))


def _relabel(
    beta: torch.Tensor, z: torch.Tensor, log_pi: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Propose a random permutation s of the labels (component k's parameters and examples move
    to label s(k)); accept with ``min(1, exp(sum_k n_k (log pi_{s(k)} - log pi_k)))``. Returns
    the new beta (z is redrawn from beta at the next sweep, so it is not returned).

    beta : (R, K, d); z : (R, m); log_pi : (R, K).
    """
    R, K = log_pi.shape
    perm = torch.argsort(torch.rand(R, K, generator=generator, dtype=torch.float64), dim=1)
    counts = torch.nn.functional.one_hot(z, K).sum(1).to(log_pi.dtype)
    log_ratio = (counts * (torch.gather(log_pi, 1, perm) - log_pi)).sum(1)
    u = torch.rand(R, generator=generator, dtype=torch.float64)
    accept = torch.log(u) < log_ratio
    inverse = torch.argsort(perm, dim=1)  # label j now holds old component inverse[j]
    moved = beta[torch.arange(R)[:, None], inverse]
    return torch.where(accept[:, None, None], moved, beta)


@dataclass(frozen=True)
class BayesSNRPredictor(PosteriorPredictor):
    """The posterior mean ``E[y_m | first m examples, x_m]`` under the SNR data model (module
    docstring) at each position m; pi is read from the batch (known), sigma is not used.

    Parameters
    ----------
    snr : float
        eta of the data model.
    tau : float
        Prior scale (``MoRConfig.prior_scale``).
    symmetric : bool
        Symmetric two-component model: the prediction is exactly 0.
    sweeps, burn_in, chains : int
        Sampler settings (:func:`snr_posterior_mean`).
    start : {"prior", "truth"}
        Where the chains start: independent prior draws, or every chain at the prompt's true
        components. Either is a computational start only (the target is the posterior given
        the prompt); but chains that do not leave their starting mode are biased: upward from
        the prior (stuck in poor modes), toward the oracle (downward) from the truth. Run both
        to bracket the floor (``docs/foundation.md``).
    seed : int
        Position m draws from stream ``(seed, "bayes-snr", start, m)``.
    """

    snr: float
    tau: float = 1.0
    symmetric: bool = False
    sweeps: int = 200
    burn_in: int = 50
    chains: int = 4
    start: Start = "prior"
    seed: int = 0
    name: str = "bayes_snr"

    def __post_init__(self) -> None:
        check_positive(self.snr, "snr")
        check_positive(self.tau, "tau")
        check_int(self.sweeps, "sweeps", minimum=1)
        check_int(self.burn_in, "burn_in", minimum=0, maximum=self.sweeps - 1)
        check_int(self.chains, "chains", minimum=2)
        check_choice(self.start, "start", get_args(Start))
        check_int(self.seed, "seed", minimum=0)

    @classmethod
    def for_data(cls, data: MoRConfig, **settings: object) -> BayesSNRPredictor:
        """The predictor for prompts drawn from ``data``; ``settings`` are the other fields.
        Raises ParameterError naming ``prior`` (only ``"gaussian"`` is supported), ``pi_mode``
        (only ``"fixed"``) or ``snr`` (a fixed sigma: use the conjugate predictor)."""
        if data.prior != "gaussian":
            raise ParameterError(
                f"prior: the SNR-model Bayes floor supports the 'gaussian' prior only, "
                f"got {data.prior!r}"
            )
        if data.pi_mode != "fixed":
            raise ParameterError(
                f"pi_mode: the SNR-model Bayes floor assumes a fixed, known pi, "
                f"got {data.pi_mode!r}"
            )
        if data.snr is None:
            raise ParameterError(
                "snr: the SNR-model Bayes floor needs snr; with a fixed sigma the conjugate "
                "BayesOptimalPredictor is exact"
            )
        return cls(snr=data.snr, tau=data.prior_scale, symmetric=data.symmetric, **settings)  # type: ignore[arg-type]

    def posterior(self, batch: MoRBatch, m: int) -> PosteriorMean:
        """Posterior mean of ``sum_k pi_k beta_k`` given the first m examples (1 <= m <= n)."""
        m = check_int(m, "positions", minimum=1, maximum=batch.n)
        if self.symmetric:
            if batch.K != 2:
                raise ParameterError(f"K must be 2 for the symmetric model, got K={batch.K}")
            return PosteriorMean(
                torch.zeros(batch.B, batch.d, dtype=torch.float64), None, "symmetric"
            )
        return snr_posterior_mean(
            batch.X[:, :m],
            batch.y[:, :m],
            batch.pi,
            self.snr,
            tau=self.tau,
            sweeps=self.sweeps,
            burn_in=self.burn_in,
            chains=self.chains,
            generator=make_generator(derive_seed(self.seed, "bayes-snr", self.start, m)),
            init=batch.betas if self.start == "truth" else None,
        )
