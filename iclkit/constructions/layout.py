"""Token layout of the Theorem 3.1 transformer: named slots, the embedding and the read-outs.

The paper's format [READ-Bai §2.2 / ``docs/provenance.md`` §6]: token ``h_i = [x_i; y'_i; aux; 1; t_i]``
with ``y'_{n+1} = 0`` and ``t_i = 1{i <= n}`` (train indicator); the auxiliary block holds the
current estimate(s) and scratch. ``read_y = clip_R(h_{n+1}[y])`` [READ-Bai];
``read_beta`` = the query token's estimate slot [RECON].

This project's layout (tokens are rows, ``H : (B, n+1, D)``)::

    x (d) | y (1) | yx (d) | beta_1 .. beta_P (P d) | acc_1 .. acc_A (A d) | scratch (S) | 1 | t

- ``yx = y'_i x_i`` is a feature the plain format lacks (this project's choice, documented in
  ``docs/construction.md``): with it the E-step argument ``y_i <x_i, beta> / sigma^2`` is a
  bilinear score (query ``yx_i``, key ``beta``), so the E-step nonlinearity is *univariate* with
  a proven interpolation bound, instead of the bivariate ``y tanh(y s / sigma^2)`` that needs
  many more ReLU terms (docs/provenance.md §6).
- ``P = 1`` estimate slot in the symmetric two-component model (``beta_2 = -beta_1``), else K.
- ``acc_k`` are d-dimensional accumulators (general K: the M-step gradient of component k is
  summed over several layers there before ``beta_k`` is updated); scratch names are scalar
  per-token slots given by the construction (e.g. ``c`` for the frozen E-step weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iclkit.theory.validation import ParameterError, check_finite_tensor, check_int, check_shape

__all__ = ["TokenLayout", "embed", "read_beta", "read_y"]


@dataclass(frozen=True)
class TokenLayout:
    """Named coordinates of a token (all indices into the last axis of ``H``).

    Parameters
    ----------
    d : int, covariate dimension.
    K : int, number of mixture components.
    symmetric : bool, one tied estimate slot (K = 2, beta_2 = -beta_1).
    scratch_names : tuple of str, the scratch coordinates in order.
    n_acc : int, number of d-dimensional accumulator slots.
    """

    d: int
    K: int
    symmetric: bool
    scratch_names: tuple[str, ...]
    n_acc: int = 0

    def __post_init__(self) -> None:
        check_int(self.d, "d", minimum=1)
        check_int(self.K, "K", minimum=1)
        if self.symmetric and self.K != 2:
            raise ParameterError(f"K must be 2 when symmetric=True, got {self.K}")
        check_int(self.n_acc, "n_acc", minimum=0)
        if len(set(self.scratch_names)) != len(self.scratch_names):
            raise ParameterError("scratch_names must be distinct")

    # ---------------------------------------------------------------- slots
    @property
    def P(self) -> int:
        """Number of estimate slots."""
        return 1 if self.symmetric else self.K

    @property
    def x(self) -> slice:
        return slice(0, self.d)

    @property
    def y(self) -> int:
        return self.d

    @property
    def yx(self) -> slice:
        return slice(self.d + 1, 2 * self.d + 1)

    def beta(self, k: int) -> slice:
        """Slot of estimate ``k`` (0-based)."""
        if not 0 <= k < self.P:
            raise ParameterError(f"k must be in [0, {self.P - 1}], got {k}")
        start = 2 * self.d + 1 + k * self.d
        return slice(start, start + self.d)

    def acc(self, k: int) -> slice:
        """Accumulator ``k`` (0-based), d coordinates."""
        if not 0 <= k < self.n_acc:
            raise ParameterError(f"k must be in [0, {self.n_acc - 1}], got {k}")
        start = 2 * self.d + 1 + self.P * self.d + k * self.d
        return slice(start, start + self.d)

    @property
    def _scratch_start(self) -> int:
        return 2 * self.d + 1 + (self.P + self.n_acc) * self.d

    def scratch(self, name: str) -> int:
        try:
            return self._scratch_start + self.scratch_names.index(name)
        except ValueError:
            raise ParameterError(
                f"name must be one of the scratch slots {self.scratch_names}, got {name!r}"
            ) from None

    @property
    def one(self) -> int:
        return self._scratch_start + len(self.scratch_names)

    @property
    def t(self) -> int:
        return self.one + 1

    @property
    def D(self) -> int:
        return self.t + 1

    def table(self) -> list[tuple[str, str]]:
        """(slot, coordinates) rows for docs and reports (0-based, end exclusive)."""
        rows = [
            ("x", f"{self.x.start}:{self.x.stop}"),
            ("y", str(self.y)),
            ("yx", f"{self.yx.start}:{self.yx.stop}"),
        ]
        for k in range(self.P):
            s = self.beta(k)
            rows.append((f"beta_{k + 1}", f"{s.start}:{s.stop}"))
        for k in range(self.n_acc):
            s = self.acc(k)
            rows.append((f"acc_{k + 1}", f"{s.start}:{s.stop}"))
        rows += [(name, str(self.scratch(name))) for name in self.scratch_names]
        rows += [("1", str(self.one)), ("t", str(self.t))]
        return rows


def embed(
    layout: TokenLayout,
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    x_query: torch.Tensor,
) -> torch.Tensor:
    """Build ``H : (B, n+1, D)`` from the prompt.

    Parameters
    ----------
    X : (B, n, d) train covariates.
    y : (B, n) train labels.
    init : (B, P, d) initial estimates (``(B, d)`` or ``(B, 2, d)`` accepted when symmetric;
        then ``init[:, 0]`` is used), copied into every token.
    x_query : (B, d)

    Returns
    -------
    H : (B, n+1, D); the query token has ``y' = 0``, ``yx = 0``, ``t = 0``.
    """
    check_shape(X, "X", (None, None, layout.d))
    B, n, d = X.shape
    check_shape(y, "y", (B, n))
    check_shape(x_query, "x_query", (B, d))
    if layout.symmetric and init.dim() == 2:
        init = init[:, None]
    if layout.symmetric and init.dim() == 3 and init.shape[1] == 2:
        init = init[:, :1]
    check_shape(init, "init", (B, layout.P, d))
    for name, val in (("X", X), ("y", y), ("init", init), ("x_query", x_query)):
        check_finite_tensor(val, name)
    dtype = X.dtype
    H = torch.zeros(B, n + 1, layout.D, dtype=dtype)
    H[:, :n, layout.x] = X
    H[:, n, layout.x] = x_query.to(dtype)
    H[:, :n, layout.y] = y.to(dtype)
    H[:, :n, layout.yx] = y.to(dtype)[:, :, None] * X
    for k in range(layout.P):
        H[:, :, layout.beta(k)] = init[:, k].to(dtype)[:, None, :]
    H[:, :, layout.one] = 1.0
    H[:, :n, layout.t] = 1.0
    return H


def read_y(layout: TokenLayout, H: torch.Tensor, R: float = float("inf")) -> torch.Tensor:
    """``clip_R`` of the query token's y slot, (B,)."""
    return H[:, -1, layout.y].clamp(-R, R)


def read_beta(layout: TokenLayout, H: torch.Tensor) -> torch.Tensor:
    """The query token's estimates, (B, K, d) (``(beta, -beta)`` when symmetric)."""
    betas = torch.stack([H[:, -1, layout.beta(k)] for k in range(layout.P)], 1)
    if layout.symmetric:
        betas = torch.cat([betas, -betas], 1)
    return betas
