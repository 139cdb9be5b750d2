"""Tests of iclkit.constructions.layout."""

from __future__ import annotations

import pytest
import torch

from iclkit.constructions.layout import TokenLayout, embed, read_beta, read_y
from iclkit.theory.validation import ParameterError

f64 = torch.float64


@pytest.mark.parametrize(
    "lay",
    [TokenLayout(3, 2, True, ("c",)), TokenLayout(4, 3, False, ("e0", "e1", "g0"), n_acc=3)],
)
def test_slots_are_disjoint_and_cover_D(lay: TokenLayout) -> None:
    idx: list[int] = [*list(range(lay.x.start, lay.x.stop)), lay.y]
    idx += list(range(lay.yx.start, lay.yx.stop))
    for k in range(lay.P):
        idx += list(range(lay.beta(k).start, lay.beta(k).stop))
    for k in range(lay.n_acc):
        idx += list(range(lay.acc(k).start, lay.acc(k).stop))
    idx += [lay.scratch(s) for s in lay.scratch_names] + [lay.one, lay.t]
    assert sorted(idx) == list(range(lay.D))
    assert len(lay.table()) == 5 + lay.P + lay.n_acc + len(lay.scratch_names)


def test_embed_and_readouts() -> None:
    lay = TokenLayout(2, 2, True, ("c",))
    X = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=f64)
    y = torch.tensor([[0.5, -1.0]], dtype=f64)
    init = torch.tensor([[7.0, 8.0]], dtype=f64)
    xq = torch.tensor([[9.0, 10.0]], dtype=f64)
    H = embed(lay, X, y, init, xq)
    assert H.shape == (1, 3, lay.D)
    torch.testing.assert_close(H[0, 1, lay.yx], torch.tensor([-3.0, -4.0], dtype=f64))
    assert H[0, 2, lay.y] == 0 and H[0, 2, lay.t] == 0 and H[0, 0, lay.t] == 1
    assert bool((H[0, :, lay.one] == 1).all())
    torch.testing.assert_close(H[0, :, lay.beta(0)], init.expand(3, 2))
    torch.testing.assert_close(
        read_beta(lay, H), torch.tensor([[[7.0, 8.0], [-7.0, -8.0]]], dtype=f64)
    )
    H[0, 2, lay.y] = 5.0
    assert float(read_y(lay, H, R=2.0)[0]) == 2.0
    assert float(read_y(lay, H)[0]) == 5.0


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="K"):
        TokenLayout(2, 3, True, ())
    with pytest.raises(ParameterError, match="d"):
        TokenLayout(0, 2, False, ())
    with pytest.raises(ParameterError, match="scratch_names"):
        TokenLayout(2, 2, False, ("a", "a"))
    lay = TokenLayout(2, 2, False, ("a",))
    with pytest.raises(ParameterError, match="name"):
        lay.scratch("b")
    with pytest.raises(ParameterError, match="k"):
        lay.beta(2)
    X = torch.zeros(1, 3, 2, dtype=f64)
    with pytest.raises(ParameterError, match="init"):
        embed(
            lay,
            X,
            torch.zeros(1, 3, dtype=f64),
            torch.zeros(1, 1, 2, dtype=f64),
            torch.zeros(1, 2, dtype=f64),
        )
    with pytest.raises(ParameterError, match="y"):
        embed(
            lay,
            X,
            torch.zeros(1, 4, dtype=f64),
            torch.zeros(1, 2, 2, dtype=f64),
            torch.zeros(1, 2, dtype=f64),
        )
    Xn = X.clone()
    Xn[0, 0, 0] = float("nan")
    with pytest.raises(ParameterError, match="X"):
        embed(
            lay,
            Xn,
            torch.zeros(1, 3, dtype=f64),
            torch.zeros(1, 2, 2, dtype=f64),
            torch.zeros(1, 2, dtype=f64),
        )
