"""Exact O(N D) evaluation of ReLU / linear attention heads whose train tokens share a key or a
query (used by :func:`iclkit.constructions.attention.attention` with ``path="auto"``).

A head of a layer computes, for token ``i`` of prompt ``b`` (``t_j`` the train indicator,
``n = sum_j t_j``, ``phi`` = ReLU or the identity)::

    out_i = (1/n) sum_j t_j phi(<Q h_i, K h_j>) V h_j.

Every train token of the hand-set constructions carries the same estimates (Bai's trick), so in
most heads the coordinates that ``K`` reads, or those that ``Q`` reads, are equal in every train
token. Then the ``(N x N)`` score matrix is rank-one in a way that removes the double sum:

- **shared key** (``K h_j = k*`` for every train ``j``): ``out_i = phi(<Q^T k*, h_i>) V hbar``
  with ``hbar = (1/n) sum_j t_j h_j``, for every token ``i`` (the query token too: its own key is
  masked out, only its query enters);
- **shared query** (``Q h_i = q*`` for every train ``i``): every train token receives the same
  ``w = V (1/n) sum_j t_j phi(<K^T q*, h_j>) h_j``; a token outside the train set (the query
  token) receives ``w`` if the coordinates ``Q`` reads equal the train tokens' too, else its own
  row ``V (1/n) sum_j t_j phi(<K^T Q h_i, h_j>) h_j`` (O(N D) per such token).

Both are the dense formula re-associated, so they agree with it to float64 round-off. The
structure is detected at run time and exactly: a coordinate is *shared* when its value in every
train token equals (``==``) its value in the prompt's first train token, for every prompt; a
head is shared-key (shared-query) when every coordinate its ``K`` (``Q``) reads with a nonzero
weight is shared. Equal inputs give equal keys / queries, so no tolerance is involved; a head
without the structure (or with NaNs) is left to the dense path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["StructuredPlan", "TrainTokens", "plan_structured", "structured_heads"]


@dataclass(frozen=True)
class StructuredPlan:
    """Which heads of a layer the O(N D) paths evaluate.

    Attributes
    ----------
    shared_key : (a,) long, heads whose train tokens share the key.
    shared_query : (e,) long, heads whose train tokens share the query (and not the key).
    dense : (g,) long, the other heads.
    ref : (B, D), the first train token of each prompt (the shared values).
    shared : the layer's memoised test "are these coordinates shared".
    """

    shared_key: torch.Tensor
    shared_query: torch.Tensor
    dense: torch.Tensor
    ref: torch.Tensor
    shared: _SharedCoordinates


def _identity(s: torch.Tensor) -> torch.Tensor:
    return s


@dataclass(frozen=True)
class TrainTokens:
    """The train tokens of a batch of prompts, read once from the key mask.

    Attributes
    ----------
    weights : (B, N), ``t_j / n`` (all 0 in a prompt without train tokens, as in the dense path).
    first : (B,) long, each prompt's first train token (0 when there is none).
    span : ``(lo, hi)`` when every prompt's train tokens are exactly ``lo..hi-1`` (the usual
        ``[x_1 .. x_n, query]`` prompts), else None.
    is_train : (B, N) bool.
    """

    weights: torch.Tensor
    first: torch.Tensor
    span: tuple[int, int] | None
    is_train: torch.Tensor

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> TrainTokens:
        """From the key mask (B, N) (``t_j``; > 0 marks a train token)."""
        is_train = mask > 0
        weights = mask / mask.sum(-1, keepdim=True).clamp_min(1)
        first = is_train.to(torch.uint8).argmax(1)
        span = None
        cols = is_train.any(0).nonzero().flatten()
        if cols.numel():
            lo, hi = int(cols[0]), int(cols[-1]) + 1
            if bool(is_train[:, lo:hi].all()):  # the same contiguous block in every prompt
                span = (lo, hi)
        return cls(weights, first, span, is_train)


class _SharedCoordinates:
    """``shared(cols)``: are coordinates ``cols`` equal (``==``) in every train token of every
    prompt? Memoised per contiguous run of coordinates; one comparison per run."""

    def __init__(self, H: torch.Tensor, train: TrainTokens) -> None:
        self.H, self.train = H, train
        self.ref = H[torch.arange(H.shape[0]), train.first]  # (B, D)
        self._runs: dict[tuple[int, int], bool] = {}

    def _run(self, lo: int, hi: int) -> bool:
        if (lo, hi) not in self._runs:
            H, tr = self.H, self.train
            if tr.span is not None:  # one fused comparison against the expanded reference
                a, b = tr.span
                block = H[:, a:b, lo:hi]
                ok = torch.equal(block, self.ref[:, None, lo:hi].expand_as(block))
            else:
                same = (H[:, :, lo:hi] == self.ref[:, None, lo:hi]) | ~tr.is_train[..., None]
                ok = bool(same.all())
            self._runs[(lo, hi)] = ok
        return self._runs[(lo, hi)]

    def __call__(self, cols: list[int]) -> bool:
        start = 0
        for i in range(1, len(cols) + 1):
            if i == len(cols) or cols[i] != cols[i - 1] + 1:
                if not self._run(cols[start], cols[i - 1] + 1):
                    return False
                start = i
        return True


def plan_structured(
    H: torch.Tensor, Q: torch.Tensor, K: torch.Tensor, train: TrainTokens
) -> StructuredPlan:
    """Sort a layer's heads into shared-key, shared-query and dense (see module docstring).

    Parameters
    ----------
    H : (B, N, D); Q, K : (m, r, D), the stacked heads; train : the prompts' train tokens.
    """
    shared = _SharedCoordinates(H, train)
    reads_k = K.ne(0).any(1)  # (m, D)
    reads_q = Q.ne(0).any(1)
    kinds = []
    for m in range(Q.shape[0]):
        if shared(reads_k[m].nonzero().flatten().tolist()):
            kinds.append(0)
        elif shared(reads_q[m].nonzero().flatten().tolist()):
            kinds.append(1)
        else:
            kinds.append(2)
    kind = torch.tensor(kinds, dtype=torch.long)
    idx = torch.arange(Q.shape[0])
    return StructuredPlan(idx[kind == 0], idx[kind == 1], idx[kind == 2], shared.ref, shared)


def structured_heads(
    H: torch.Tensor,
    Q: torch.Tensor,
    K: torch.Tensor,
    V: torch.Tensor,
    train: TrainTokens,
    plan: StructuredPlan,
    *,
    relu: bool,
) -> tuple[torch.Tensor, int]:
    """The summed output of the plan's shared-key and shared-query heads, in O(N D) per head.

    Parameters
    ----------
    H : (B, N, D)
    Q, K : (m, r, D); V : (m, c, D), the rows of the values for the written coordinates.
    train : the prompts' train tokens (``TrainTokens.from_mask``).
    plan : from :func:`plan_structured` on the same ``H``.
    relu : ReLU attention (else linear); both normalised by ``1/n``.

    Returns
    -------
    acc : (B, N, c), the heads' contribution to the written coordinates.
    own_rows : int, (token, head) pairs of shared-query heads evaluated as their own row (a
        non-train token whose query differs from the train tokens').
    """
    B, N, _D = H.shape
    c = V.shape[1]
    phi = torch.relu if relu else _identity
    w = train.weights  # (B, N), t_j / n
    ref = plan.ref
    sk, sq = plan.shared_key, plan.shared_query
    # score directions: shared key: Q^T k*; shared query: K^T q* (each (B, heads, D))
    u_k = torch.einsum("bmr,mrd->bmd", torch.einsum("bd,mrd->bmr", ref, K[sk]), Q[sk])
    u_q = torch.einsum("bmr,mrd->bmd", torch.einsum("bd,mrd->bmr", ref, Q[sq]), K[sq])
    scores = phi(torch.bmm(H, torch.cat([u_k, u_q], 1).transpose(1, 2)))  # (B, N, a + e)
    a = sk.numel()
    if a:
        read_v = V[sk].ne(0).any((0, 1)).nonzero().flatten().tolist()
        if plan.shared(read_v):  # the values read only shared coordinates: hbar = ref sum_j w_j
            hbar = ref * w.sum(1, keepdim=True)
        else:
            hbar = torch.bmm(w[:, None, :], H)[:, 0]  # (B, D)
        vbar = torch.einsum("mcd,bd->bmc", V[sk], hbar)  # (B, a, c)
        acc = torch.bmm(scores[:, :, :a].contiguous(), vbar)
    else:
        acc = H.new_zeros(B, N, c)
    if sq.numel() == 0:
        return acc, 0
    omega = scores[:, :, a:] * w[:, :, None]  # (B, N, e)
    hq = torch.bmm(omega.transpose(1, 2), H)  # (B, e, D)
    wv = torch.einsum("mcd,bmd->bmc", V[sq], hq)  # (B, e, c): every train token's output
    # non-train tokens whose query reads coordinates that differ from the train tokens'
    reads_q = Q[sq].ne(0).any(1)  # (e, D)
    own_rows: list[tuple[int, int, torch.Tensor]] = []
    own = 0
    for b, i in torch.nonzero(~train.is_train).tolist():
        differs = ((H[b, i] != ref[b]) & reads_q).any(1)  # (e,)
        if not bool(differs.any()):
            continue
        q_i = torch.einsum("mrd,d->mr", Q[sq], H[b, i])
        u_i = torch.einsum("mr,mrd->md", q_i, K[sq])  # (e, D)
        om_i = phi(H[b] @ u_i.T) * w[b, :, None]  # (N, e)
        own_i = torch.einsum("mcd,md->mc", V[sq], om_i.T @ H[b])  # (e, c)
        own_rows.append((b, i, acc[b, i] + torch.where(differs[:, None], own_i, wv[b]).sum(0)))
        own += int(differs.sum())
    acc += wv.sum(1)[:, None, :]
    for b, i, row in own_rows:
        acc[b, i] = row
    return acc, own
