"""One entry to the reference estimators of a mixture of linear regressions on a batch of prompts.

:func:`run_algorithm` runs one of :data:`ALGORITHMS` (arXiv 2410.14183 and the baselines it
compares with) on prompts ``X (B, n, d)``, ``y (B, n)`` with known noise levels ``sigma (B,)``
and returns component estimates ``beta (B, K, d)`` and mixing weights ``pi (B, K)``:

- ``em``, ``gradient-em``: :func:`iclkit.constructions.algorithms.em` / ``gradient_em`` from
  ``init (B, K, d)``;
- ``oracle``: the true components ``betas (B, K, d)`` and the known (or uniform) pi;
- ``ols``, ``ridge``: one component (K = 1, pi = 1); ridge's default penalty ``sigma^2`` is the
  posterior mean for ``beta ~ N(0, I)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import (
    ParameterError,
    check_finite_tensor,
    check_int,
    check_positive,
    check_real,
    check_shape,
)

from .algorithms import em, gradient_em, ols, ridge
from .em_core import as_sigma
from .inputs import MAX_ITERATIONS, prepare_tensors

__all__ = ["ALGORITHMS", "AlgorithmConfig", "Estimates", "run_algorithm"]

ALGORITHMS = ("em", "gradient-em", "oracle", "ols", "ridge")


@dataclass(frozen=True)
class AlgorithmConfig:
    """Settings of the iterative algorithms (ignored by the others).

    Parameters
    ----------
    T_outer : int
        EM / gradient-EM iterations (>= 0).
    T_inner : int
        Gradient steps per M-step (gradient-em; >= 1).
    alpha : float
        Gradient step size (gradient-em; > 0).
    estimate_pi : bool or None
        Re-estimate pi each iteration; None: yes for em, no for gradient-em.
    symmetric : bool
        gradient-em: the tied two-component tanh form (beta_2 = -beta_1).
    lam : float or None
        Ridge penalty (>= 0); None: sigma^2 per prompt.
    """

    T_outer: int = 20
    T_inner: int = 1
    alpha: float = 1.0
    estimate_pi: bool | None = None
    symmetric: bool = False
    lam: float | None = None

    def __post_init__(self) -> None:
        check_int(self.T_outer, "T_outer", minimum=0, maximum=MAX_ITERATIONS)
        check_int(self.T_inner, "T_inner", minimum=1, maximum=MAX_ITERATIONS)
        check_positive(self.alpha, "alpha")
        if self.lam is not None:
            check_real(self.lam, "lam", minimum=0.0)


#: The defaults, as one object (for function signatures).
DEFAULT_ALGORITHM = AlgorithmConfig()


@dataclass(frozen=True)
class Estimates:
    """Component estimates ``beta (B, K, d)`` and mixing weights ``pi (B, K)``.

    ``status`` is the iterative algorithms' (``converged``, ``max_iter``, ``diverged``; see
    :class:`~iclkit.constructions.algorithms.EMResult`, whose diverged prompts keep their last
    finite iterate) or ``"closed-form"``; ``first_nonfinite`` the first iteration at which a
    non-finite value appeared (None: none did); ``diverged`` (B,) bool marks the prompts whose
    ``beta`` is their last finite iterate (None for the closed forms).
    """

    beta: torch.Tensor
    pi: torch.Tensor
    status: str = "closed-form"
    first_nonfinite: int | None = None
    diverged: torch.Tensor | None = None

    def describe(self) -> str:
        """The status in one phrase: ``converged``, ``max_iter`` (ran all iterations without
        meeting the step tolerance), ``closed-form``, or ``diverged`` with the iteration and
        the number of prompts affected."""
        if self.status != "diverged":
            return self.status
        count = "some" if self.diverged is None else str(int(self.diverged.sum()))
        return (
            f"diverged (first non-finite value at iteration {self.first_nonfinite}; {count} of "
            f"{self.beta.shape[0]} prompts keep their last finite iterate, not an estimate)"
        )


def _required(prompts: Mapping[str, torch.Tensor], key: str, algorithm: str) -> torch.Tensor:
    if key not in prompts:
        raise ParameterError(f"{key}: required by algorithm {algorithm!r}")
    return prompts[key]


def run_algorithm(
    name: str, prompts: Mapping[str, torch.Tensor], config: AlgorithmConfig = DEFAULT_ALGORITHM
) -> Estimates:
    """Run algorithm ``name`` (one of :data:`ALGORITHMS`) on ``prompts``.

    ``prompts`` holds ``X`` (B, n, d), ``y`` (B, n), ``sigma`` (B,) (the known noise levels),
    and, where the algorithm needs them, ``init`` (B, K, d) (em, gradient-em), ``betas``
    (B, K, d) (the true components: oracle) and optionally ``pi`` (B, K) (initial or known
    mixing weights; default uniform): the arrays ``iclkit sample`` writes. ``sigma`` may be
    one float for all prompts. The tensors pass the algorithms' boundary
    (:mod:`iclkit.constructions.inputs`): one float dtype, one device, detached.
    """
    if name not in ALGORITHMS:
        raise ParameterError(f"algorithm must be one of {ALGORITHMS}, got {name!r}")
    if not isinstance(config, AlgorithmConfig):
        raise ParameterError(f"config must be an AlgorithmConfig, got {type(config).__name__}")
    if not isinstance(prompts, Mapping):
        raise ParameterError(f"prompts must be a mapping of arrays, got {type(prompts).__name__}")
    X, y = _required(prompts, "X", name), _required(prompts, "y", name)
    sigma = _required(prompts, "sigma", name)
    pi, c = prompts.get("pi"), config
    if name == "em":
        estimate_pi = True if c.estimate_pi is None else c.estimate_pi
        init = _required(prompts, "init", name)
        res = em(X, y, init, sigma, pi, T=c.T_outer, estimate_pi=estimate_pi)
        return Estimates(res.betas, res.pi, res.status, res.first_nonfinite, res.diverged)
    if name == "gradient-em":
        res = gradient_em(
            X, y, _required(prompts, "init", name), sigma, None if c.symmetric else pi,
            T_outer=c.T_outer, T_inner=c.T_inner, alpha=c.alpha,
            estimate_pi=bool(c.estimate_pi), symmetric=c.symmetric,
        )  # fmt: skip
        return Estimates(res.betas, res.pi, res.status, res.first_nonfinite, res.diverged)
    if name == "oracle":
        t = prepare_tensors({"X": X, "y": y, "betas": _required(prompts, "betas", name), "pi": pi})
        B, _, d = validate_prompts(cast(Tensor, t["X"]), cast(Tensor, t["y"]))
        truth = cast(Tensor, t["betas"])
        check_shape(truth, "betas", (B, None, d))
        check_finite_tensor(truth, "betas")
        K = truth.shape[1]
        weights = t["pi"]
        if weights is None:
            weights = torch.full((B, K), 1.0 / K, dtype=truth.dtype, device=truth.device)
        check_shape(weights, "pi", (B, K))
        check_finite_tensor(weights, "pi")
        return Estimates(truth, weights)
    if name == "ols":
        w = ols(X, y)
    else:
        lam: Tensor | float | None = c.lam
        if lam is None:  # sigma^2 per prompt
            Xp, yp, sp = _tensors(X, y, sigma)
            B = validate_prompts(Xp, yp)[0]
            lam = as_sigma(sp, B, Xp.dtype, Xp.device) ** 2
        w = ridge(X, y, cast(Tensor | float, lam))
    return Estimates(w[:, None, :], torch.ones(w.shape[0], 1, dtype=w.dtype, device=w.device))


def _tensors(*values: object) -> list[Tensor]:
    """``values`` through :func:`prepare_tensors` (numbers stay numbers)."""
    named = prepare_tensors({f"arg{i}": v for i, v in enumerate(values)})
    return [cast(Tensor, named.get(f"arg{i}", v)) for i, v in enumerate(values)]
