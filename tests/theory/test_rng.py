"""Seeds: one check (``check_seed``) behind every public seed parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iclkit.constructions.predictors import EMPredictor
from iclkit.constructions.prompts import PromptsConfig
from iclkit.theory.mor import MoRConfig, PromptPool, fresh_batch, sample_mor
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import MAX_SEED, ParameterError, check_seed

BAD_SEEDS = [True, False, 1.5, 2.0, math.nan, math.inf, -1, MAX_SEED + 1, "abc", "3", None, [1]]
CFG = MoRConfig(d=2, K=2, n=4)


@pytest.mark.parametrize("seed", [0, 3, MAX_SEED, np.int64(3), np.int32(3), np.uint8(7)])
def test_check_seed_accepts_python_and_numpy_integers(seed: object) -> None:
    assert check_seed(seed) == int(seed)  # type: ignore[call-overload]
    assert type(check_seed(seed)) is int


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_check_seed_refuses_with_name_value_and_range(seed: object) -> None:
    with pytest.raises(ParameterError, match=r"^my_seed must be an integer in \[0, 2\*\*63 - 1\]"):
        check_seed(seed, "my_seed")


def test_float_seed_message_says_why() -> None:
    with pytest.raises(ParameterError, match="even integral ones such as 2.0"):
        check_seed(2.0)


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_every_seed_entry_point_refuses(seed: object) -> None:
    calls = [
        lambda: make_generator(seed),  # type: ignore[arg-type]
        lambda: derive_seed(seed, "x"),  # type: ignore[arg-type]
        lambda: fresh_batch(CFG, 2, seed=seed, step=0),  # type: ignore[arg-type]
        lambda: PromptPool.draw(CFG, 2, seed=seed),  # type: ignore[arg-type]
        lambda: PromptsConfig(seed=seed),  # type: ignore[arg-type]
        lambda: EMPredictor(seed=seed),  # type: ignore[arg-type]
    ]
    if seed is not None:  # sample_mor: seed=None means "use generator="
        calls.append(lambda: sample_mor(CFG, 2, seed=seed))  # type: ignore[arg-type]
    for call in calls:
        with pytest.raises(ParameterError, match="seed"):
            call()


def test_numpy_integer_seeds_give_the_python_int_streams() -> None:
    a = sample_mor(CFG, 3, seed=np.int64(3))
    b = sample_mor(CFG, 3, seed=3)
    assert torch.equal(a.X, b.X)
    g1, g2 = make_generator(np.int64(4)), make_generator(4)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    assert derive_seed(np.int64(5), "k") == derive_seed(5, "k")
    pool = PromptPool.draw(CFG, 4, seed=np.int64(2))
    assert pool.minibatch(2, seed=np.int64(2), step=np.int64(1)).B == 2
