"""Training a transformer on MoR prompts: the ERM pretraining of the MoR paper (``docs/provenance.md`` §8).

By default (``loss_positions="all"``) the loss is the squared error averaged over all prompt
positions 1..n (positions where at least one example is visible), as in Garg et al.'s and Bai et
al.'s code (``docs/provenance.md`` §9 [RECON, community default]): n predictions per prompt
instead of one. ``loss_positions="query"`` scores only the query (position n). The paper's own
training settings are [NOT FOUND].

Two data modes (``docs/provenance.md`` §2):

- ``"fresh"``: new prompts every step, batch ``step`` drawn from stream ``(seed, "train")`` with
  :func:`iclkit.theory.mor.fresh_batch` (the population-loss regime);
- ``"fixed"``: a pool of B prompts drawn once (:class:`iclkit.theory.mor.PromptPool`), minibatches
  resampled from it (the finite-B ERM of the generalization bound O(L/sqrt(B)), Figure 2).

Optimiser AdamW, linear warmup then cosine decay to ``min_lr_ratio * lr``, gradient clipping,
optional curriculum over d and n (Garg et al.: unused coordinates of x are zero, the prompt is
shortened). Training runs in float32. Checkpoints hold model, optimiser, scheduler, the torch
RNG state, the step and the loss trace; they are written atomically (temporary file, then
``os.replace``) and read with ``torch.load(weights_only=True)``. Since every batch is a pure
function of (seed, step), a resumed run reproduces the uninterrupted run's weights exactly.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import torch
from tqdm.auto import tqdm

from iclkit.io import to_jsonable, write_atomically
from iclkit.theory.mor import MoRBatch, MoRConfig, PromptPool, fresh_batch
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import (
    ParameterError,
    check_choice,
    check_int,
    check_int_fields,
    check_real,
    check_seed,
    check_shape,
)

from .models import ICLTransformer, ModelConfig, build_model

__all__ = [
    "Curriculum",
    "RunStatus",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "lr_factor",
    "train",
    "training_loss",
]

Mode = Literal["fresh", "fixed"]
Device = Literal["cpu", "cuda", "auto"]
#: Prompt positions the training loss averages over: 1..n ("all") or the query n only.
LossPositions = Literal["all", "query"]

#: AdamW's betas must stay below 1 (a moment average that never forgets); this is the largest
#: value accepted.
_MAX_ADAM_BETA = 0.999999

#: Largest learning rate accepted: a typo guard far above any AdamW rate that trains (~1e-2)
#: and far inside float32, the dtype the optimiser scales the float32 parameters' updates in.
MAX_LR = 1e3

#: :attr:`TrainResult.final_loss` averages the last 1/20 (5%) of the steps.
_FINAL_LOSS_FRACTION = 20

#: Steps between refreshes of the progress bar's loss, which is the mean over that window.
_PROGRESS_WINDOW = 25


@dataclass(frozen=True)
class Curriculum:
    """Garg et al.'s curriculum: start at ``d_start`` active coordinates and ``n_start``
    examples, add ``d_step`` / ``n_step`` every ``interval`` steps until the full d and n."""

    d_start: int
    n_start: int
    d_step: int = 1
    n_step: int = 2
    interval: int = 200

    def __post_init__(self) -> None:
        check_int_fields(
            self,
            {"d_start": 1, "n_start": 1, "d_step": 0, "n_step": 0, "interval": 1},
            prefix="curriculum.",
        )

    def at(self, step: int, d: int, n: int) -> tuple[int, int]:
        """Active (d, n) at ``step`` for a target (d, n)."""
        k = step // self.interval
        return min(d, self.d_start + k * self.d_step), min(n, self.n_start + k * self.n_step)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Parameters
    ----------
    steps : int
        Number of optimiser steps.
    batch_size : int
        Prompts per step.
    lr, weight_decay, adam_beta1, adam_beta2 : AdamW settings.
    warmup : int
        Linear warmup steps (then cosine decay to ``min_lr_ratio * lr`` at ``steps``).
    grad_clip : float
        Max global gradient norm (0 disables clipping).
    mode : {"fresh", "fixed"}
    pool_size : int or None
        B, the number of training prompts in ``"fixed"`` mode.
    curriculum : Curriculum or None
    loss_positions : {"all", "query"}
        Squared error averaged over positions 1..n ("all", Garg et al.'s recipe) or at the
        query n only ("query"): :func:`training_loss`.
    checkpoint_every : int
        Steps between checkpoints (one is always written at the end).
    seed : int
        Seeds the initialisation, the data and the pool (independent derived streams).
    device : {"cpu", "cuda", "auto"}
    """

    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    mode: Mode = "fresh"
    pool_size: int | None = None
    curriculum: Curriculum | None = None
    loss_positions: LossPositions = "all"
    checkpoint_every: int = 500
    seed: int = 0
    device: Device = "cpu"

    def __post_init__(self) -> None:
        check_int_fields(self, {"steps": 1, "batch_size": 1, "warmup": 0, "checkpoint_every": 1})
        check_seed(self.seed, "seed")
        check_real(self.lr, "lr", minimum=0.0, maximum=MAX_LR, strict_minimum=True)
        check_real(self.weight_decay, "weight_decay", minimum=0.0)
        check_real(self.adam_beta1, "adam_beta1", minimum=0.0, maximum=_MAX_ADAM_BETA)
        check_real(self.adam_beta2, "adam_beta2", minimum=0.0, maximum=_MAX_ADAM_BETA)
        check_real(self.min_lr_ratio, "min_lr_ratio", minimum=0.0, maximum=1.0)
        check_real(self.grad_clip, "grad_clip", minimum=0.0)
        check_choice(self.mode, "mode", get_args(Mode))
        if self.mode == "fixed":
            if self.pool_size is None:
                raise ParameterError("pool_size must be given (B >= 1) when mode='fixed'")
            object.__setattr__(self, "pool_size", check_int(self.pool_size, "pool_size", minimum=1))
            if self.curriculum is not None:
                raise ParameterError(
                    "curriculum must be None when mode='fixed' (the pool of B prompts is fixed)"
                )
        elif self.pool_size is not None:
            raise ParameterError("pool_size must be None when mode='fresh'")
        if self.curriculum is not None and not isinstance(self.curriculum, Curriculum):
            raise ParameterError(
                f"curriculum must be a Curriculum or None, got {self.curriculum!r}"
            )
        check_choice(self.device, "device", get_args(Device))
        check_choice(self.loss_positions, "loss_positions", get_args(LossPositions))


#: How a long job (training run, sweep) ended: ``finished`` (all its work done), ``stopped`` (a
#: requested early stop; call again to resume) or ``failed`` (some of its work raised). How a
#: simulation ended is :class:`iclkit.dynamics.status.Status`; a check's verdict is PASS/FAIL.
RunStatus = Literal["finished", "stopped", "failed"]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : the trained model (float32, on CPU).
    status : "finished" (all steps done) or "stopped" (``stop_at`` reached; resume later).
    step : steps completed.
    losses : (step,) float32 tensor, the training loss at every step.
    stats : wall time, steps run in this call, resumed-from step, device.
    message : one line for humans.
    """

    model: ICLTransformer
    status: RunStatus  # never "failed": an error in training raises
    step: int
    losses: torch.Tensor
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 5% of steps (at least one step)."""
        k = max(1, self.losses.numel() // _FINAL_LOSS_FRACTION)
        return float(self.losses[-k:].mean()) if self.losses.numel() else float("nan")


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step``: linear warmup, then cosine decay."""
    if config.warmup > 0 and step < config.warmup:
        return (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    r = config.min_lr_ratio
    return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress))


def training_loss(pred: torch.Tensor, y: torch.Tensor, loss_positions: str = "all") -> torch.Tensor:
    """The training loss of predictions ``pred : (B, N)`` of labels ``y : (B, N)`` (N = n + 1).

    "all": mean of ``(pred_m - y_m)^2`` over the B prompts and positions m = 1..n (position 0
    sees no example); "query": the mean over the B prompts at m = n only.
    """
    check_choice(loss_positions, "loss_positions", get_args(LossPositions))
    check_shape(pred, "pred", (None, None))
    if pred.shape[1] < 2:
        raise ParameterError(f"pred must have N >= 2 positions, got shape {tuple(pred.shape)}")
    check_shape(y, "y", tuple(pred.shape))
    first = pred.shape[1] - 1 if loss_positions == "query" else 1
    return ((pred[:, first:] - y[:, first:]) ** 2).mean()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device: 'cuda' was asked for but no CUDA GPU is available")
    return torch.device(name)


def _batch_at(
    step: int,
    data: MoRConfig,
    config: TrainConfig,
    pool: PromptPool | None,
) -> tuple[MoRBatch, int]:
    """Training batch of ``step`` (float32) and the number of active examples n."""
    if pool is not None:
        return pool.minibatch(config.batch_size, seed=config.seed, step=step).to(
            torch.float32
        ), data.n
    d_cur, n_cur = data.d, data.n
    if config.curriculum is not None:
        d_cur, n_cur = config.curriculum.at(step, data.d, data.n)
    cfg = data if (d_cur, n_cur) == (data.d, data.n) else data.replace(d=d_cur, n=n_cur)
    batch = fresh_batch(
        cfg,
        config.batch_size,
        seed=derive_seed(config.seed, "train"),
        step=step,
        dtype=torch.float32,
    )
    if d_cur < data.d:  # zero-pad the inactive coordinates (Garg et al.'s curriculum)
        pad = torch.zeros(batch.B, batch.n + 1, data.d - d_cur, dtype=batch.X.dtype)
        betas = torch.cat(
            [batch.betas, torch.zeros(batch.B, batch.K, data.d - d_cur, dtype=batch.X.dtype)], 2
        )
        batch = MoRBatch(
            torch.cat([batch.X, pad], 2), batch.y, batch.z, betas, batch.pi, batch.sigma
        )
    return batch, n_cur


#: Fields added after checkpoints were first written, with the value every older checkpoint was
#: trained with: a checkpoint that lacks them is read as having these values.
_LEGACY_MODEL_FIELDS = {"y_token": "y"}
_LEGACY_TRAIN_FIELDS = {"loss_positions": "all"}


def _meta(model_config: ModelConfig, data: MoRConfig, config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: every setting that shapes the weights
    (``y_token`` only for the decoder, the one architecture that reads it)."""
    model = asdict(model_config)
    if model_config.arch != "gpt2":
        del model["y_token"]
    return {"model": model, "train": to_jsonable(asdict(config)), "data": repr(data)}


def _legacy_meta(meta: Any) -> Any:
    """A stored checkpoint's meta with the fields added later filled in (see above)."""
    if not (isinstance(meta, dict) and isinstance(meta.get("model"), dict)):
        return meta
    model, train_ = dict(meta["model"]), meta.get("train")
    if model.get("arch") == "gpt2":
        model = {**_LEGACY_MODEL_FIELDS, **model}
    if isinstance(train_, dict):
        train_ = {**_LEGACY_TRAIN_FIELDS, **train_}
    return {**meta, "model": model, "train": train_}


def _atomic_save(obj: dict[str, Any], path: str) -> None:
    write_atomically(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (``torch.load(weights_only=True)``)."""
    if not os.path.isfile(path):
        raise ParameterError(f"checkpoint: file not found: {path}")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ParameterError(f"checkpoint: cannot read {path} ({exc})") from None
    for key in ("model", "optimizer", "scheduler", "rng", "step", "losses", "meta"):
        if key not in state:
            raise ParameterError(f"checkpoint: {path} lacks the entry {key!r}")
    return state


def train(
    model_config: ModelConfig,
    data: MoRConfig,
    config: TrainConfig,
    *,
    checkpoint: str | None = None,
    stop_at: int | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a transformer on MoR prompts, resuming from ``checkpoint`` if it exists.

    Parameters
    ----------
    model_config : ModelConfig
        ``model_config.d`` must equal ``data.d`` and ``model_config.max_n >= data.n``.
    data : MoRConfig
        The prompt distribution (its n is the training prompt length).
    config : TrainConfig
    checkpoint : str or None
        Path of the checkpoint file. If it exists, training resumes from it (it must come from
        the same configuration); it is rewritten every ``checkpoint_every`` steps and at the end.
    stop_at : int or None
        Stop (status "stopped") once this many steps are done: a forced stop for tests and for
        splitting long runs.
    progress : bool
        Show a tqdm bar with the loss and ETA (only when stderr is a terminal).
    """
    for name, value, kind in (
        ("model_config", model_config, ModelConfig),
        ("data", data, MoRConfig),
        ("config", config, TrainConfig),
    ):
        if not isinstance(value, kind):
            raise ParameterError(f"{name} must be a {kind.__name__}, got {value!r}")
    if model_config.d != data.d:
        raise ParameterError(f"d: the model has d={model_config.d} but the data has d={data.d}")
    if model_config.max_n < data.n:
        raise ParameterError(f"max_n must be >= n = {data.n}, got max_n={model_config.max_n}")
    if stop_at is not None:
        check_int(stop_at, "stop_at", minimum=0)
    device = _device(config.device)
    t0 = time.perf_counter()
    model = build_model(model_config, seed=derive_seed(config.seed, "init")).to(device)
    decay = [p for n_, p in model.named_parameters() if p.dim() >= 2 and "wpe" not in n_]
    no_decay = [p for n_, p in model.named_parameters() if not (p.dim() >= 2 and "wpe" not in n_)]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    meta = _meta(model_config, data, config)
    losses = torch.zeros(config.steps, dtype=torch.float32)
    start = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        if _legacy_meta(state["meta"]) != meta:
            raise ParameterError(
                f"checkpoint: {checkpoint} was written by a different configuration; "
                "delete it or use another path"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
        losses[:start] = state["losses"][:start]
    resumed_from = start

    def save(step: int) -> None:
        if checkpoint is None:
            return
        _atomic_save(
            {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "step": step,
                "losses": losses.clone(),
                "meta": meta,
            },
            checkpoint,
        )

    pool = (
        PromptPool.draw(data, int(config.pool_size), seed=config.seed)
        if config.mode == "fixed" and config.pool_size is not None
        else None
    )
    end = config.steps if stop_at is None else min(config.steps, stop_at)
    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="train",
        disable=not (progress and sys.stderr.isatty()),
        leave=False,
    )
    model.train()
    step = start
    try:
        for step in range(start, end):
            batch, _ = _batch_at(step, data, config, pool)
            X, y = batch.X.to(device), batch.y.to(device)
            pred = model(X, y)
            loss = training_loss(pred, y, config.loss_positions)
            if not bool(torch.isfinite(loss)):
                raise ParameterError(
                    f"lr: the training loss became {float(loss.detach())} at step {step}; "
                    f"lower lr (now {config.lr:g}) or raise warmup"
                    + (
                        f", or lower weight_decay (now {config.weight_decay:g})"
                        if config.weight_decay > 0
                        else ""
                    )
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            losses[step] = float(loss.detach())
            bar.update(1)
            if step % _PROGRESS_WINDOW == 0:
                window = losses[max(0, step - _PROGRESS_WINDOW + 1) : step + 1]
                bar.set_postfix(loss=f"{float(window.mean()):.4f}")
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < end:
                save(step + 1)
        step = end
    finally:
        bar.close()
    save(step)
    model = model.cpu().eval()
    status: RunStatus = "finished" if step >= config.steps else "stopped"
    seconds = time.perf_counter() - t0
    message = (
        f"trained {step - resumed_from} steps ({resumed_from} -> {step} of {config.steps}) "
        f"in {seconds:.1f} s"
        + ("" if status == "finished" else "; stopped early, call train() again to resume")
    )
    return TrainResult(
        model=model,
        status=status,
        step=step,
        losses=losses[:step].clone(),
        stats={
            "seconds": seconds,
            "steps_run": step - resumed_from,
            "resumed_from": resumed_from,
            "device": str(device),
        },
        message=message,
    )
