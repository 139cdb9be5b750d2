"""The one-layer linear self-attention (LSA) model of ZFB eqs. (3.4)-(3.6) [READ-2nd].

``E = [[x_1 .. x_N x_q], [y_1 .. y_N 0]]`` in R^{(d+1) x (N+1)},
``f(E) = E + W^PV E (E^T W^KQ E) / N`` and ``y_hat = f(E)[d+1, N+1]``. This module computes the
prediction literally from the embedding (no block algebra), which makes it an independent check
of the closed-form loss in :mod:`.lsa_loss`.
"""

from __future__ import annotations

import torch
from torch import nn

from iclkit.theory.validation import ParameterError

__all__ = ["LSALayer", "embed", "lsa_prediction"]


def embed(X_train: torch.Tensor, y_train: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
    """The ZFB embedding.

    Parameters
    ----------
    X_train : (B, N, d)
    y_train : (B, N)
    x_query : (B, d)

    Returns
    -------
    E : (B, d+1, N+1), query label slot 0.
    """
    if (
        X_train.ndim != 3
        or y_train.shape != X_train.shape[:2]
        or x_query.shape != (X_train.shape[0], X_train.shape[2])
    ):
        raise ParameterError(
            "X_train, y_train, x_query must have shapes (B, N, d), (B, N), (B, d); got "
            f"{tuple(X_train.shape)}, {tuple(y_train.shape)}, {tuple(x_query.shape)}"
        )
    X = torch.cat([X_train, x_query[:, None, :]], dim=1)  # (B, N+1, d)
    y = torch.cat([y_train, torch.zeros_like(y_train[:, :1])], dim=1)  # (B, N+1)
    return torch.cat([X, y[:, :, None]], dim=2).transpose(1, 2)


def lsa_prediction(E: torch.Tensor, W_KQ: torch.Tensor, W_PV: torch.Tensor) -> torch.Tensor:
    """``y_hat = [E + W^PV E (E^T W^KQ E)/N]_{d+1, N+1}`` for E (B, d+1, N+1); returns (B,)."""
    N = E.shape[2] - 1
    attn = E.transpose(1, 2) @ (W_KQ @ E[:, :, -1:])  # (B, N+1, 1): E^T W^KQ (query column)
    row = (W_PV[-1] @ E)[:, None, :]  # (B, 1, N+1): row d+1 of W^PV E
    return E[:, -1, -1] + (row @ attn)[:, 0, 0] / N


class LSALayer(nn.Module):
    """Trainable LSA layer with full (d+1) x (d+1) weights W^KQ and W^PV (float64 by default)."""

    def __init__(self, W_KQ: torch.Tensor, W_PV: torch.Tensor) -> None:
        super().__init__()
        if W_KQ.shape != W_PV.shape or W_KQ.ndim != 2 or W_KQ.shape[0] != W_KQ.shape[1]:
            raise ParameterError("W_KQ, W_PV must both be (d+1, d+1)")
        self.W_KQ = nn.Parameter(W_KQ.detach().clone())
        self.W_PV = nn.Parameter(W_PV.detach().clone())

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        """E : (B, d+1, N+1) -> y_hat : (B,)."""
        return lsa_prediction(E, self.W_KQ, self.W_PV)
