"""Tests of iclkit.experiments.training: a tiny run learns (loss falls, beats the zero predictor),
the decoder leaves its plateau with the default y token, the loss over all positions against a
direct loop, a forced stop + resume reproduces the uninterrupted weights bit for bit, checkpoints
from before the y_token / loss_positions fields, the schedule, the fixed-B and curriculum modes,
and every bad-input path."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from iclkit.experiments.evaluation import TransformerPredictor
from iclkit.experiments.models import ModelConfig, build_model
from iclkit.experiments.training import (
    Curriculum,
    TrainConfig,
    _batch_at,
    load_checkpoint,
    lr_factor,
    train,
    training_loss,
)
from iclkit.theory.metrics import excess_risk_vs_oracle
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

DATA = MoRConfig(d=2, K=2, n=8, snr=5.0)
MODEL = ModelConfig(d=2, max_n=8, D=16, layers=2, heads=2, arch="relu_encoder")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_run_learns_and_beats_zero_predictor() -> None:
    # One-component MoR (linear regression), the case a 300-step run learns for sure;
    # the K >= 2 cases are the figures' job (docs/experiments.md).
    data = MoRConfig(d=2, K=1, n=8, snr=5.0)
    res = train(MODEL, data, TrainConfig(steps=300, batch_size=32, lr=3e-3, warmup=20))
    assert res.status == "finished" and res.step == 300
    first, last = float(res.losses[:30].mean()), res.final_loss
    assert last < 0.7 * first  # the loss falls by a clear margin (measured: about 0.4x)
    batch = sample_mor(data, 512, seed=123)
    pos = [8]
    y_orc = batch.y_oracle
    tf = excess_risk_vs_oracle(TransformerPredictor(res.model)(batch, pos)[:, 0], y_orc)
    zero = excess_risk_vs_oracle(torch.zeros(512, dtype=torch.float64), y_orc)
    # the zero predictor's excess risk is ||w_orc||^2 ~ 2 here; the trained model must beat it
    # by more than 5 standard errors of the difference (a wide, non-flaky margin)
    assert tf.mean + 5 * (tf.se + zero.se) < zero.mean


def test_decoder_leaves_plateau_with_xy_tokens_only() -> None:
    # Linear regression (K = 1, d = 2, n = 10, Var y = |beta|^2 + sigma^2 = 2.25): the zero
    # predictor's loss is the plateau. Measured (seed 0, D 32, 3 layers), mean loss over steps
    # 1-50, 51-100, 101-150: 2.24, 1.99, 1.24 with the y token [x; y]; 2.24, 2.24, 2.25 with
    # Garg et al.'s [0; y] (still 2.15-2.29 up to step 300 of a 500-step run).
    data = MoRConfig(d=2, K=1, n=10, sigma=0.5)
    cfg = TrainConfig(steps=150, batch_size=64, lr=2e-3, warmup=100)
    losses = {}
    for y_token in ("xy", "y"):
        model = ModelConfig(d=2, max_n=10, D=32, layers=3, heads=4, y_token=y_token)  # type: ignore[arg-type]
        losses[y_token] = train(model, data, cfg).losses
    plateau = float(losses["y"][:50].mean())
    assert 1.9 < plateau < 2.6  # Var y = 2.25 up to the batch noise of 50 x 64 prompts
    assert float(losses["xy"][-50:].mean()) < 0.75 * plateau  # left the plateau (0.55 measured)
    assert float(losses["y"][-50:].mean()) > 0.9 * plateau  # still on it (1.01 measured)


def test_training_loss_against_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    pred, y = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    per_position = [float(((pred[:, m] - y[:, m]) ** 2).mean()) for m in range(6)]
    assert float(training_loss(pred, y, "all")) == pytest.approx(sum(per_position[1:]) / 5)
    assert float(training_loss(pred, y, "query")) == pytest.approx(per_position[5])
    # with one example (N = 2) the only position scored by "all" is the query
    assert torch.equal(
        training_loss(pred[:, :2], y[:, :2], "all"), training_loss(pred[:, :2], y[:, :2], "query")
    )
    with pytest.raises(ParameterError, match="loss_positions"):
        training_loss(pred, y, "first")
    with pytest.raises(ParameterError, match="pred"):
        training_loss(pred[:, :1], y[:, :1])
    with pytest.raises(ParameterError, match="y"):
        training_loss(pred, y[:, :5])


def test_query_loss_trains_on_the_query_only() -> None:
    # labels before the query never reach a "query" loss: their gradient is exactly zero
    model = build_model(ModelConfig(d=2, max_n=8, D=8, layers=1, heads=2))
    batch = sample_mor(DATA, 4, seed=0, dtype=torch.float32)
    pred = model(batch.X, batch.y)
    target = batch.y.clone().requires_grad_(True)
    training_loss(pred, target, "query").backward()
    assert target.grad is not None
    assert (
        torch.count_nonzero(target.grad[:, :-1]) == 0
        and torch.count_nonzero(target.grad[:, -1]) == 4
    )


@pytest.mark.parametrize("arch", ["relu_encoder", "gpt2"])
def test_checkpoint_from_before_the_new_fields(tmp_path: object, arch: str) -> None:
    # A checkpoint written before y_token / loss_positions existed lacks them in its meta; it
    # was trained with loss over all positions and, for the decoder, Garg's [0; y] y token.
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=2)
    ckpt = os.path.join(str(tmp_path), "old.pt")
    old_model = ModelConfig(d=2, max_n=8, D=8, layers=1, heads=2, arch=arch, y_token="y")  # type: ignore[arg-type]
    train(old_model, DATA, cfg, checkpoint=ckpt, stop_at=2)
    state = torch.load(ckpt, weights_only=True)
    state["meta"]["model"].pop("y_token", None)
    del state["meta"]["train"]["loss_positions"]
    torch.save(state, ckpt)
    new_model = ModelConfig(d=2, max_n=8, D=8, layers=1, heads=2, arch=arch)  # y_token "xy"
    if arch == "gpt2":  # the [0; y] model it was: refused as the default [x; y] model
        with pytest.raises(ParameterError, match="different configuration"):
            train(new_model, DATA, cfg, checkpoint=ckpt)
        assert train(old_model, DATA, cfg, checkpoint=ckpt).stats["resumed_from"] == 2
    else:  # the encoder never reads y_token: the same training
        assert train(new_model, DATA, cfg, checkpoint=ckpt).stats["resumed_from"] == 2
    with pytest.raises(ParameterError, match="different configuration"):
        train(
            old_model,
            DATA,
            replace(cfg, loss_positions="query"),
            checkpoint=ckpt,
        )


@pytest.mark.parametrize("arch", ["relu_encoder", "gpt2"])
def test_forced_stop_then_resume_gives_identical_weights(tmp_path: object, arch: str) -> None:
    model = ModelConfig(d=2, max_n=8, D=8, layers=1, heads=2, arch=arch)
    cfg = TrainConfig(steps=24, batch_size=8, lr=1e-3, warmup=4, checkpoint_every=5)
    full = train(model, DATA, cfg)
    ckpt = os.path.join(str(tmp_path), "run.pt")
    part = train(model, DATA, cfg, checkpoint=ckpt, stop_at=13)
    assert part.status == "stopped" and part.step == 13
    assert load_checkpoint(ckpt)["step"] == 13
    resumed = train(model, DATA, cfg, checkpoint=ckpt)
    assert resumed.status == "finished" and resumed.stats["resumed_from"] == 13
    for (name, p), q in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name  # bit-identical: every batch is a function of (seed, step)
    assert torch.equal(full.losses, resumed.losses)
    # a finished checkpoint resumes as a no-op
    again = train(model, DATA, cfg, checkpoint=ckpt)
    assert again.stats["steps_run"] == 0 and torch.equal(again.losses, full.losses)
    assert not [f for f in os.listdir(str(tmp_path)) if f.startswith(".tmp-")]


def test_fixed_pool_and_curriculum_modes_run() -> None:
    fixed = train(MODEL, DATA, TrainConfig(steps=5, batch_size=4, mode="fixed", pool_size=6))
    assert fixed.status == "finished" and torch.isfinite(fixed.losses).all()
    cur = Curriculum(d_start=1, n_start=3, d_step=1, n_step=2, interval=2)
    assert cur.at(0, 2, 8) == (1, 3) and cur.at(2, 2, 8) == (2, 5) and cur.at(100, 2, 8) == (2, 8)
    res = train(MODEL, DATA, TrainConfig(steps=6, batch_size=4, curriculum=cur))
    assert res.status == "finished" and torch.isfinite(res.losses).all()


def test_curriculum_batches_zero_pad_inactive_coordinates() -> None:
    # Garg et al.'s curriculum: at step s the batch has the active n (n_start + k n_step) and
    # only the first d_start + k d_step coordinates of x (and beta) nonzero, k = s // interval
    cur = Curriculum(d_start=1, n_start=3, d_step=1, n_step=2, interval=2)
    cfg = TrainConfig(steps=10, batch_size=4, curriculum=cur)
    for step, (d_act, n_act) in ((0, (1, 3)), (2, (2, 5)), (9, (2, 8))):
        batch, n_cur = _batch_at(step, DATA, cfg, None)
        assert n_cur == n_act and batch.X.shape == (4, n_act + 1, 2)
        assert torch.count_nonzero(batch.X[..., d_act:]) == 0
        assert torch.count_nonzero(batch.betas[..., d_act:]) == 0
        assert torch.count_nonzero(batch.X[..., :d_act]) == batch.X[..., :d_act].numel()


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(steps=110, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert lr_factor(110, cfg) == pytest.approx(0.1)


def test_bad_input(tmp_path: object) -> None:
    with pytest.raises(ParameterError, match="pool_size"):
        TrainConfig(steps=1, mode="fixed")
    with pytest.raises(ParameterError, match="curriculum"):
        TrainConfig(steps=1, mode="fixed", pool_size=3, curriculum=Curriculum(1, 1))
    with pytest.raises(ParameterError, match="pool_size"):
        TrainConfig(steps=1, pool_size=3)
    with pytest.raises(ParameterError, match="mode"):
        TrainConfig(steps=1, mode="online")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="lr"):
        TrainConfig(steps=1, lr=0.0)
    with pytest.raises(ParameterError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ParameterError, match="device"):
        TrainConfig(steps=1, device="tpu")
    with pytest.raises(ParameterError, match="loss_positions"):
        TrainConfig(steps=1, loss_positions="last")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="d"):
        train(ModelConfig(d=3, max_n=8), DATA, TrainConfig(steps=1))
    with pytest.raises(ParameterError, match="max_n"):
        train(ModelConfig(d=2, max_n=4), DATA, TrainConfig(steps=1))
    ckpt = os.path.join(str(tmp_path), "c.pt")
    train(MODEL, DATA, TrainConfig(steps=2, batch_size=2), checkpoint=ckpt)
    with pytest.raises(ParameterError, match="different configuration"):
        train(MODEL, DATA, TrainConfig(steps=3, batch_size=2), checkpoint=ckpt)
    bad = os.path.join(str(tmp_path), "bad.pt")
    with open(bad, "wb") as fh:
        fh.write(b"not a checkpoint")
    with pytest.raises(ParameterError, match="checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(ParameterError, match="checkpoint"):
        load_checkpoint(os.path.join(str(tmp_path), "missing.pt"))
