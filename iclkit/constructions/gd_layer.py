"""One ReLU-attention layer = one gradient step on least squares (von Oswald et al.; Bai et al. Fig. 3, Thm 13).

[READ-Bai, ``docs/provenance.md`` §6] With every token carrying the same estimate ``w``, a head with
query ``Q h_i = [w_i; 1]`` and key ``K h_j = [x_j; -y_j]`` scores ``<w, x_j> - y_j``; since
``s - t = relu(s - t) - relu(t - s)``, two heads with values ``-eta x_j`` and ``+eta x_j``
written into the estimate slot realise exactly

    w <- w - (eta / n) sum_j (<x_j, w> - y_j) x_j,

one gradient step on ``(1/2n) sum_j (y_j - <x_j, w>)^2`` (the label may be any slot, e.g. the
surrogate label of gradient EM). :func:`build_gd_transformer` stacks ``T`` such layers on the
plain prompt; it is checked against the closed form ``w_T = (I - eta S)^T w_0 + ...``.
"""

from __future__ import annotations

import torch

from iclkit.constructions.attention import AttentionLayer, AttentionTransformer, Head
from iclkit.constructions.layout import TokenLayout
from iclkit.theory.validation import check_int, check_positive

__all__ = ["build_gd_transformer", "gd_heads", "gd_step_closed_form"]


def gd_heads(
    D: int,
    x: slice,
    label: int,
    w: slice,
    eta: float,
    *,
    dtype: torch.dtype = torch.float64,
) -> tuple[Head, Head]:
    """The two heads of one GD step on ``(1/2n) sum_j (h_j[label] - <h_j[x], w>)^2``.

    Parameters
    ----------
    D : token width; ``x``, ``w`` : slots of equal length d; ``label`` : coordinate.
    eta : step size.
    """
    d = x.stop - x.start
    heads = []
    for sign in (1.0, -1.0):
        Q = torch.zeros(d + 1, D, dtype=dtype)
        K = torch.zeros(d + 1, D, dtype=dtype)
        V = torch.zeros(D, D, dtype=dtype)
        idx = torch.arange(d)
        Q[idx, w.start + idx] = sign
        K[idx, x.start + idx] = 1.0
        Q[d, D - 2] = sign  # the constant-1 coordinate is D-2 in every layout here
        K[d, label] = -1.0
        V[w.start + idx, x.start + idx] = -sign * eta
        text = "relu(<w, x_j> - y_j)" if sign > 0 else "relu(y_j - <w, x_j>)"
        heads.append(Head(Q, K, V, f"{text} * ({-sign * eta:+g}) x_j -> w"))
    return heads[0], heads[1]


def build_gd_transformer(
    d: int, T: int, eta: float, *, dtype: torch.dtype = torch.float64
) -> tuple[AttentionTransformer, TokenLayout]:
    """``T`` layers of 2 heads each: ``T`` GD steps of size ``eta`` on the prompt's least squares.

    Uses the layout with one estimate slot and no scratch (``TokenLayout(d, 1, False, ())``);
    embed with :func:`iclkit.constructions.layout.embed` (``init : (B, 1, d)``) and read the
    iterate with ``read_beta``.
    """
    d = check_int(d, "d", minimum=1)
    T = check_int(T, "T", minimum=1)
    eta = check_positive(eta, "eta")
    layout = TokenLayout(d, 1, False, ())
    layers = [
        AttentionLayer(gd_heads(layout.D, layout.x, layout.y, layout.beta(0), eta, dtype=dtype))
        for _ in range(T)
    ]
    return AttentionTransformer(layers, t_slot=layout.t), layout


def gd_step_closed_form(
    X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, eta: float, T: int = 1
) -> torch.Tensor:
    """``T`` GD steps on ``(1/2n)||y - X w||^2`` in closed form (independent of attention):
    ``w_T = (I - eta S)^T w_0 + sum_{r<T} (I - eta S)^r eta m``, ``S = X^T X / n``, ``m = X^T y / n``.

    X : (B, n, d), y : (B, n), w : (B, d) -> (B, d).
    """
    n, d = X.shape[1], X.shape[2]
    S = X.transpose(1, 2) @ X / n
    m = (X.transpose(1, 2) @ y[..., None])[..., 0] / n
    A = torch.eye(d, dtype=X.dtype) - eta * S
    out = torch.linalg.matrix_power(A, T) @ w[..., None]
    acc = torch.zeros_like(out)
    P = torch.eye(d, dtype=X.dtype).expand_as(A)
    for _ in range(T):
        acc = acc + P @ (eta * m[..., None])
        P = P @ A
    return (out + acc)[..., 0]
