"""Robustness of the experiments' public configs and entry points under generated, mixed valid
and invalid input.

:class:`TrainConfig`, :class:`Curriculum`, :class:`ModelConfig`, :class:`EvalConfig`,
:class:`ComparisonConfig`, :class:`DemoConfig`, the sweep cells' :func:`build_configs`, the
prompt pool, and a tiny :func:`train` (<= 3 steps of a 1-layer model) + :func:`evaluate`
(<= 8 prompts). Every call either returns a valid config / a finite result of the documented
shape (an evaluation row that is NaN must be listed in ``stats["failures"]``, as documented), or
raises ParameterError; any other exception fails. ``HYPOTHESIS_PROFILE=dev`` runs 400 examples
per test (train/evaluate: 200); outcome counts go where ``ROBUSTNESS_REPORT`` says.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.constructions.prompts import PromptsConfig
from iclkit.experiments.cells import build_configs, cells_of, load_preset
from iclkit.experiments.constructed_vs_trained import ComparisonConfig
from iclkit.experiments.demo import DemoConfig
from iclkit.experiments.evaluation import BASELINES, EvalConfig, evaluate
from iclkit.experiments.models import ModelConfig
from iclkit.experiments.training import Curriculum, TrainConfig, train
from iclkit.theory.mor import MoRConfig, PromptPool
from iclkit.theory.validation import ParameterError

_BASE = settings.default.max_examples
EXAMPLES = settings(max_examples=_BASE if _BASE < 100 else 2 * _BASE)
FEW = settings(max_examples=_BASE // 2 if _BASE < 100 else _BASE)  # train + evaluate: ~0.3 s
Record = Callable[[str], None]

pytestmark = pytest.mark.usefixtures("small_memory", "one_torch_thread")

JUNK = st.sampled_from([None, "abc", "3", True, [1], math.nan, math.inf, -math.inf, object()])


def ints(lo: int, hi: int) -> st.SearchStrategy[Any]:
    """Mostly valid ints in [lo, hi] (also numpy ints), and invalid values."""
    return st.one_of(
        st.integers(lo, hi),
        st.integers(lo, hi).map(np.int64),
        st.sampled_from([lo - 1, -(2**70), 1.5, float(lo)]),
        JUNK,
    )


def reals(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.one_of(st.floats(lo, hi), st.sampled_from([-1.0, -1e300, 10**400]), JUNK)


def outcome(record: Record, call: Callable[[], Any], check: Callable[[Any], str]) -> None:
    """Run ``call``: a ParameterError naming something, or a result that passes ``check``."""
    try:
        result = call()
    except ParameterError as exc:
        assert str(exc)
        record("ParameterError")
        return
    record(check(result))


def valid(_: Any) -> str:
    return "finite"


TRAIN_FIELDS = st.fixed_dictionaries(
    {"steps": ints(1, 10**6)},
    optional={
        "batch_size": ints(1, 512), "lr": reals(1e-6, 1.0), "weight_decay": reals(0.0, 1.0),
        "adam_beta1": reals(0.0, 0.999), "adam_beta2": reals(0.0, 0.9999),
        "warmup": ints(0, 1000), "min_lr_ratio": reals(0.0, 1.0), "grad_clip": reals(0.0, 10.0),
        "mode": st.sampled_from(["fresh", "fixed", "other", None]),
        "pool_size": st.one_of(st.none(), ints(1, 1000)),
        "curriculum": st.one_of(st.none(), st.just("curriculum"), JUNK),
        "checkpoint_every": ints(1, 1000), "seed": ints(0, 2**63 - 1),
        "device": st.sampled_from(["cpu", "cuda", "auto", "tpu", 0]),
    },
)  # fmt: skip

CURRICULUM_FIELDS = st.fixed_dictionaries(
    {"d_start": ints(1, 5), "n_start": ints(1, 5)},
    optional={"d_step": ints(0, 2), "n_step": ints(0, 4), "interval": ints(1, 500)},
)

MODEL_FIELDS = st.fixed_dictionaries(
    {"d": ints(1, 8), "max_n": ints(1, 64)},
    optional={
        "D": ints(1, 128), "layers": ints(1, 12), "heads": ints(1, 8),
        "arch": st.sampled_from(["gpt2", "relu_encoder", "lstm", None]),
        "mlp": st.one_of(st.booleans(), JUNK), "norm": st.one_of(st.booleans(), JUNK),
    },
)  # fmt: skip

EVAL_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "prompts": ints(2, 4096),
        "positions": st.one_of(
            st.none(), st.lists(st.integers(-2, 20), max_size=4).map(tuple), JUNK
        ),
        "methods": st.one_of(
            st.lists(st.sampled_from([*BASELINES, "nope"]), max_size=3).map(tuple), JUNK
        ),
        "em_T": ints(0, 50), "alpha": reals(0.01, 10.0), "rho": reals(0.0, 2.0),
    },
)  # fmt: skip


@EXAMPLES
@given(
    train_f=TRAIN_FIELDS, cur_f=CURRICULUM_FIELDS, model_f=MODEL_FIELDS, eval_f=EVAL_FIELDS,
    cmp_d=ints(1, 8), cmp_n=ints(2, 64), cmp_sigma=reals(0.01, 3.0), cmp_prompts=ints(8, 512),
    cmp_rho=reals(0.0, 1.0), cmp_seed=ints(0, 10**6), demo_T=ints(0, 50),
    demo_prompts=st.one_of(st.just("default"), JUNK),
)  # fmt: skip
def test_configs(
    train_f: dict[str, Any], cur_f: dict[str, Any], model_f: dict[str, Any],
    eval_f: dict[str, Any], cmp_d: Any, cmp_n: Any, cmp_sigma: Any, cmp_prompts: Any,
    cmp_rho: Any, cmp_seed: Any, demo_T: Any, demo_prompts: Any, robustness: Record,
) -> None:  # fmt: skip
    def train_config() -> TrainConfig:
        fields = dict(train_f)
        if fields.get("curriculum") == "curriculum":
            fields["curriculum"] = Curriculum(**cur_f)
        return TrainConfig(**fields)

    outcome(robustness, lambda: Curriculum(**cur_f), valid)
    outcome(robustness, train_config, valid)
    outcome(robustness, lambda: ModelConfig(**model_f), valid)
    outcome(robustness, lambda: EvalConfig(**eval_f), valid)
    outcome(
        robustness,
        lambda: ComparisonConfig(
            d=cmp_d, n=cmp_n, sigma=cmp_sigma, prompts=cmp_prompts, rho=cmp_rho, seed=cmp_seed
        ),
        valid,
    )
    prompts = PromptsConfig() if demo_prompts == "default" else demo_prompts
    outcome(robustness, lambda: DemoConfig(prompts=prompts, T=demo_T), valid)


#: One resolved cell of a shipped preset: the sweep's cell configs are built from such specs.
SPEC = cells_of(load_preset("fig1", "smoke"))[0].spec
SPEC_EDITS = st.lists(
    st.tuples(
        st.sampled_from([
            ("data", "K"), ("data", "snr"), ("data", "n"), ("model", "D"), ("model", "heads"),
            ("train", "steps"), ("train", "lr"), ("train", "pool_size"), ("train", "mode"),
            ("eval", "prompts"), ("eval", "positions"), ("eval", "methods"), ("", "seed"),
            ("train", "unknown_key"), ("data", "unknown_key"),
        ]),
        st.one_of(st.integers(-3, 64), st.floats(allow_nan=True), JUNK, st.just([1, 2])),
    ),
    max_size=3,
)  # fmt: skip


@EXAMPLES
@given(edits=SPEC_EDITS, pool_B=ints(1, 64), batch=ints(1, 16), seed=ints(0, 2**63 - 1),
       step=ints(0, 10**6))  # fmt: skip
def test_cell_configs_and_prompt_pool(
    edits: list[tuple[tuple[str, str], Any]], pool_B: Any, batch: Any, seed: Any, step: Any,
    robustness: Record,
) -> None:  # fmt: skip
    spec = copy.deepcopy(SPEC)
    for (section, key), value in edits:
        if section:
            spec[section][key] = value
        else:
            spec[key] = value
    outcome(robustness, lambda: build_configs(spec), lambda cfgs: "finite")

    cfg = MoRConfig(d=2, n=4)

    def pool_check(b: Any) -> str:
        assert b.X.shape == (int(batch), cfg.n + 1, cfg.d)
        assert bool(torch.isfinite(b.X).all() and torch.isfinite(b.y).all())
        return "finite"

    def minibatch() -> Any:
        return PromptPool.draw(cfg, pool_B, seed=seed).minibatch(batch, seed=seed, step=step)

    outcome(robustness, minibatch, pool_check)


@FEW
@given(
    D=st.sampled_from([4, 8, 6]), heads=st.sampled_from([1, 2, 4]),
    arch=st.sampled_from(["gpt2", "relu_encoder"]), max_n=ints(4, 8),
    steps=st.one_of(st.integers(1, 3), JUNK), lr=st.one_of(st.floats(1e-4, 0.1),
    st.sampled_from([1e3, 1e6, 1e300]), JUNK), mode=st.sampled_from(["fresh", "fixed"]),
    wd=st.sampled_from([0.0, 0.1, 1e300]), clip=st.sampled_from([0.0, 1.0, 1e-300, 1e300]),
    stop_at=st.one_of(st.none(), st.integers(-1, 3), JUNK),
    eval_f=st.fixed_dictionaries({
        "prompts": st.one_of(st.integers(2, 8), JUNK),
        "positions": st.one_of(st.none(), st.lists(st.integers(0, 6), min_size=1, max_size=2)
                               .map(tuple)),
        "methods": st.lists(st.sampled_from(BASELINES), max_size=2).map(tuple),
        "em_T": st.integers(0, 3), "alpha": st.one_of(st.floats(0.1, 2.0), JUNK),
    }),
    with_model=st.booleans(), seed=ints(0, 10),
    junk_arg=st.sampled_from([None, "model_config", "data", "config", "eval"]),
)  # fmt: skip
def test_train_and_evaluate(
    D: int, heads: int, arch: str, max_n: Any, steps: Any, lr: Any, mode: str, wd: float,
    clip: float, stop_at: Any,
    eval_f: dict[str, Any], with_model: bool, seed: Any, junk_arg: str | None, robustness: Record,
) -> None:  # fmt: skip
    data = MoRConfig(d=2, n=4)
    args: dict[str, Any] = {}

    def call_train() -> Any:
        args["model_config"] = ModelConfig(d=2, max_n=max_n, D=D, layers=1, heads=heads, arch=arch)
        args["config"] = TrainConfig(
            steps=steps, batch_size=4, lr=lr, warmup=0, mode=mode, weight_decay=wd, grad_clip=clip,
            pool_size=8 if mode == "fixed" else None, seed=seed,
        )  # fmt: skip
        args["data"] = data
        if junk_arg in args:
            args[junk_arg] = {"d": 2}
        return train(args["model_config"], args["data"], args["config"], stop_at=stop_at)

    trained: list[Any] = []

    def trained_ok(res: Any) -> str:
        assert res.status in ("finished", "stopped")
        assert res.losses.shape == (res.step,)
        assert bool(torch.isfinite(res.losses[: res.step]).all()), res.losses
        trained.append(res.model)
        return "finite"

    outcome(robustness, call_train, trained_ok)

    def evaluated(res: Any) -> str:
        failures = res.stats["failures"]
        for row in res.rows:
            if not math.isfinite(row["excess_risk"]):
                assert f"{row['method']}@{row['position']}" in failures, row
        return "finite" if not failures else "status:baseline-failed"

    model = trained[0] if (trained and with_model) else None
    ev: Any = {"prompts": 4} if junk_arg == "eval" else None

    def call_evaluate() -> Any:
        config = ev if ev is not None else EvalConfig(**eval_f)
        return evaluate(model, data, config, seed=seed)

    outcome(robustness, call_evaluate, evaluated)
