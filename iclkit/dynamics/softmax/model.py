"""One-layer softmax attention of Huang, Cheng, Liang (arXiv 2310.05249) and its loss, §A.2-A.3.

Model ([RECON], ``docs/provenance.md`` §11; value matrix fixed with v = 1 and key-query merged into one
trained matrix Q are [READ-review])::

    F(E; Q) = E + W^PV E softmax(E^T W^KQ E),   W^PV = [[0, 0], [0, 1]],  W^KQ = [[Q, 0], [0, 0]],
    y_hat = [F]_{d+1, N+1} = sum_i attn_i y_i,   attn_i = exp(x_i^T Q x_q) / normaliser.

The normaliser is ambiguous in what could be read ([RECON]); both variants are implemented:

* ``include_query_in_softmax=False`` (default): ``sum_{j<=N} exp(x_j^T Q x_q)`` (prompt tokens only);
* ``include_query_in_softmax=True``: the literal column softmax of ``E^T W^KQ E``, which also
  normalises over the query column (logit ``x_q^T Q x_q``, value = the query's label slot 0).

Loss: ``L(Q) = 1/2 E[(y_hat - <w, x_q>)^2]``; this module gives its Monte Carlo estimate on a
sampled batch (the per-prompt squared errors), used by the full-model simulator.
"""

from __future__ import annotations

import torch
from torch import nn

from iclkit.theory.validation import ParameterError, check_shape

__all__ = [
    "SoftmaxAttention",
    "prompt_squared_errors",
    "softmax_attention_prediction",
    "softmax_attention_weights",
]


def softmax_attention_weights(
    Q: torch.Tensor, X: torch.Tensor, *, include_query_in_softmax: bool = False
) -> torch.Tensor:
    """Attention of the query on every token.

    Parameters
    ----------
    Q : (d, d)
    X : (B, N+1, d)
        Tokens, the last one is the query.

    Returns
    -------
    attn : (B, N) or (B, N+1)
        Softmax of ``x_i^T Q x_q`` over the prompt tokens (or over the prompt and the query).
    """
    d = X.shape[-1]
    check_shape(Q, "Q", (d, d))
    xq = X[:, -1, :]  # (B, d)
    keys = X if include_query_in_softmax else X[:, :-1, :]
    qv = xq @ Q.T  # (B, d): Q x_q
    logits = torch.bmm(keys, qv.unsqueeze(-1)).squeeze(-1)  # x_i^T Q x_q
    return torch.softmax(logits, dim=-1)


def softmax_attention_prediction(
    Q: torch.Tensor, E: torch.Tensor, *, include_query_in_softmax: bool = False
) -> torch.Tensor:
    """``y_hat = [E + W^PV E softmax(E^T W^KQ E)]_{d+1, N+1}`` for a batch of embeddings.

    Parameters
    ----------
    Q : (d, d)
    E : (B, d+1, N+1)
        Embeddings with tokens in rows ``:d`` and labels in row ``d`` (query label slot 0).

    Returns
    -------
    y_hat : (B,)
    """
    if E.dim() != 3:
        raise ParameterError(f"E must have shape (B, d+1, N+1), got {tuple(E.shape)}")
    X = E[:, :-1, :].transpose(1, 2)  # (B, N+1, d)
    labels = E[:, -1, :]  # (B, N+1)
    attn = softmax_attention_weights(Q, X, include_query_in_softmax=include_query_in_softmax)
    values = labels if include_query_in_softmax else labels[:, :-1]
    # residual term E[d, N+1] is the query label slot, 0 by construction
    return E[:, -1, -1] + (attn * values).sum(-1)


def prompt_squared_errors(
    Q: torch.Tensor,
    E: torch.Tensor,
    y_query: torch.Tensor,
    *,
    include_query_in_softmax: bool = False,
) -> torch.Tensor:
    """Per-prompt loss ``1/2 (y_hat - y_query)^2``, shape (B,); its mean estimates L(Q)."""
    y_hat = softmax_attention_prediction(Q, E, include_query_in_softmax=include_query_in_softmax)
    return 0.5 * (y_hat - y_query) ** 2


class SoftmaxAttention(nn.Module):
    """The one-layer model with the single trained matrix Q (d, d), float64 by default.

    ``forward(E)`` returns ``y_hat`` of shape (B,). ``Q`` starts at ``Q0`` (default zero, the
    initialisation recalled in ``docs/provenance.md`` §11 [RECON]).
    """

    def __init__(
        self,
        d: int,
        *,
        Q0: torch.Tensor | None = None,
        include_query_in_softmax: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        init = torch.zeros(d, d, dtype=dtype) if Q0 is None else Q0.detach().clone().to(dtype)
        check_shape(init, "Q0", (d, d))
        self.Q = nn.Parameter(init)
        self.include_query_in_softmax = include_query_in_softmax

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        return softmax_attention_prediction(
            self.Q, E, include_query_in_softmax=self.include_query_in_softmax
        )
