"""``iclkit reproduce mechanism``: the mechanism metrics of :mod:`.mechanism` on the gradient-EM
reference, the Theorem 3.1 construction (arXiv 2410.14183) and trained transformers, stored
as parquet and resumable.

Setting (the same as :mod:`.constructed_vs_trained`): K = 2, pi = (1/2, 1/2) known, sigma fixed,
so one construction serves every prompt. The algorithm is gradient EM with the construction's
schedule (``T_outer`` iterations of ``T_inner`` steps of size ``alpha``) from the construction's
initial estimate (``init``):

- "in-context" (the presets' default): the construction computes its start from the prompt
  (spectral-initialisation layers in front,
  :func:`~iclkit.constructions.gradient_em_transformer.build_in_context_transformer`); the
  algorithm starts from the same spectral estimate computed outside the transformer
  (:class:`.mechanism.SpectralStart`, the surrogate the transformer equals to ~1e-13), and its
  gradients include the start's dependence on the prompt;
- "given": the truth plus a relative perturbation ``rho`` (the local regime of the theory),
  placed in the construction's tokens;
- "spectral": the spectral estimate of :func:`iclkit.constructions.predictors.initial_estimate`,
  computed from the prompt outside the transformer and placed in its tokens.

The trained transformers take no initial estimate; only the algorithm they are compared with
changes with ``init`` (with "in-context" it starts from the spectral estimate of the prompt).

Per model (a unit of work) four tables are written, each one parquet file
``OUT/mechanism/results/<table>-<model>-<run_id>.parquet`` (temporary file + rename):

- ``alignment``: one row per (model, layer, iterate): cosine and mean squared gap;
- ``probes``: one row per (model, layer, target): held-out R^2 of ``w_orc`` and of ``w^(k)``;
- ``sensitivity``: one row per (model, iterate, input): mean per-prompt gradient cosine;
- ``ood``: one row per (model, shift, value): excess risk and MSE when x is scaled or sigma
  (hence the SNR) differs from training.

``run_id`` hashes the resolved config; a rerun skips every model whose four files exist, and
trained models resume from their checkpoints under ``OUT/mechanism/checkpoints``, named by the
training fields only (:func:`training_id`), so changing the construction does not retrain them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any, Literal, get_args

import pandas as pd
import torch

from iclkit.constructions.gradient_em_transformer import (
    ConstructionConfig,
    build_gradient_em_transformer,
    build_in_context_transformer,
)
from iclkit.constructions.predictors import LOCAL_INIT_RHO, initial_estimate
from iclkit.io import to_jsonable, write_atomically
from iclkit.theory.metrics import excess_risk_vs_oracle, prediction_mse
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import (
    ParameterError,
    check_choice,
    check_int,
    check_int_fields,
    check_positive,
    check_real,
    check_seed,
)

from .constructed_vs_trained import (
    COMPARISON_CONSTRUCTION,
    COMPARISON_SCALES,
    COMPARISON_TRAINING,
    PI,
    ComparisonConfig,
    K,
)
from .mechanism import (
    ConstructionModel,
    GradientEMModel,
    InContextConstructionModel,
    MechanismModel,
    SpectralStart,
    TransformerModel,
    algorithm_gradients,
    alignment,
    gradient_cosine,
    input_gradients,
    probe_r2,
)
from .mechanism_plots import draw_alignment, draw_probes
from .models import Architecture, ModelConfig
from .storage import provenance
from .training import TrainConfig, train

__all__ = [
    "MECHANISM_MODELS",
    "MECHANISM_SCALES",
    "TABLES",
    "MechanismConfig",
    "MechanismRun",
    "measure_model",
    "read_tables",
    "run_id",
    "run_mechanism",
    "training_id",
]

#: How the construction (and the algorithm) gets its initial estimate; see the module docstring.
InitMode = Literal["in-context", "given", "spectral"]
#: The models a run can measure, in the order they run.
MechanismModelName = Literal["gradient_em", "construction", "relu_encoder", "gpt2"]
MECHANISM_MODELS: tuple[str, ...] = get_args(MechanismModelName)
#: The tables of one model, in the order they are written.
TABLES = ("alignment", "probes", "sensitivity", "ood")
RUN_ID_HEX_DIGITS = 12
#: Default torch intra-op threads of :func:`run_mechanism`.
SINGLE_THREAD = 1
#: Probe target name of the oracle weights (its ``iterate`` column is -1).
W_ORC = "w_orc"


@dataclass(frozen=True)
class MechanismConfig:
    """Settings of a mechanism run (K = 2, pi = 1/2, sigma fixed).

    Parameters
    ----------
    d, n, sigma : the prompt distribution (training and evaluation).
    prompts : held-out evaluation prompts (the probes fit on one half, score on the other).
    seed : seeds training, prompts and the initial estimate.
    construction : the construction's gradient-EM schedule and ReLU terms (also the algorithm's
        schedule); ``symmetric`` must be False.
    init : "in-context", "given" or "spectral", the initial estimate of the construction and the
        algorithm (module docstring); "in-context" uses ``construction.power_iterations``.
    rho : relative perturbation of the "given" initial estimate.
    D, layers, heads, training : the trained transformers (both architectures).
    models : which of :data:`MECHANISM_MODELS` to measure.
    x_scales, sigma_factors : the out-of-distribution shifts (x multiplied by s; sigma by f,
        i.e. the SNR divided by f).
    """

    d: int = 5
    n: int = 40
    sigma: float = 0.5
    prompts: int = 256
    seed: int = 0
    construction: ConstructionConfig = COMPARISON_CONSTRUCTION
    init: InitMode = "given"
    rho: float = LOCAL_INIT_RHO
    D: int = 32
    layers: int = 3
    heads: int = 4
    training: TrainConfig = COMPARISON_TRAINING
    models: tuple[str, ...] = MECHANISM_MODELS
    x_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    sigma_factors: tuple[float, ...] = (0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        check_int_fields(self, {"d": 1, "n": 2, "prompts": 8})
        check_seed(self.seed, "seed")
        check_positive(self.sigma, "sigma")
        check_real(self.rho, "rho", minimum=0.0)
        check_choice(self.init, "init", get_args(InitMode))
        if self.construction.symmetric:
            raise ParameterError("construction.symmetric must be False (the non-tied K = 2 form)")
        if self.init == "in-context" and self.d < K:
            raise ParameterError(f"d must be >= K = {K} for init='in-context', got {self.d}")
        if not self.models:
            raise ParameterError("models must name at least one model")
        for m in self.models:
            check_choice(m, "models", MECHANISM_MODELS)
        for s in (*self.x_scales, *self.sigma_factors):
            check_positive(s, "x_scales / sigma_factors")


#: E-step accuracy of the presets' in-context construction. From the spectral start (parameter
#: error ~3.6 against a component scale ~3 at the quick scale) about 12% of the training points
#: have both residuals beyond the default 6 sigma, where psi is linear instead of t^2 / 2, and
#: the construction then lags one iterate behind exact gradient EM (quick run: nearest iterates
#: 0, 1, 1, 2, 3 for rows 0-4). A 16 sigma domain with 64 ReLU terms puts every residual inside
#: the fitted range and restores the diagonal (squared gaps 4e-3 down to 2e-4 on 64 prompts).
IN_CONTEXT_RELU_TERMS = 64
IN_CONTEXT_R_RESIDUAL = 16.0


def _from_comparison(c: ComparisonConfig) -> MechanismConfig:
    con = replace(
        c.construction, relu_terms=IN_CONTEXT_RELU_TERMS, R_residual=IN_CONTEXT_R_RESIDUAL
    )
    return MechanismConfig(
        d=c.d, n=c.n, sigma=c.sigma, prompts=c.prompts, seed=c.seed,
        construction=con, init="in-context", rho=c.rho, D=c.D, layers=c.layers,
        heads=c.heads, training=c.training,
    )  # fmt: skip


#: The scales of ``iclkit reproduce mechanism --preset``: those of the trained-vs-constructed
#: comparison (smoke: d 3, n 12, 2 iterations; quick: d 5, n 40, 4 iterations, 1500 steps;
#: paper: n 100, 8 iterations, 50 000 steps) with the in-context start (the construction's 177
#: spectral-initialisation layers cost ~1 s at the quick scale). Smoke trains 400 steps, not
#: 150: the GPT-2 decoder leaves its loss plateau after ~250 at that size (docs/experiments.md).
MECHANISM_SCALES: dict[str, MechanismConfig] = {
    name: _from_comparison(c) for name, c in COMPARISON_SCALES.items()
}
_SMOKE = MECHANISM_SCALES["smoke"]
MECHANISM_SCALES["smoke"] = replace(_SMOKE, training=replace(_SMOKE.training, steps=400))


def run_id(config: MechanismConfig) -> str:
    """The first hex digits of the SHA-256 of the config's canonical JSON."""
    return _hash(asdict(config))


#: The fields of a :class:`MechanismConfig` that determine the trained models' weights.
TRAINING_FIELDS: tuple[str, ...] = ("d", "n", "sigma", "seed", "D", "layers", "heads", "training")


def training_id(config: MechanismConfig) -> str:
    """The id of the trained models' checkpoints: the hash of :data:`TRAINING_FIELDS` and both
    full :class:`ModelConfig` (defaults too), so that only a change of these retrains."""
    models = {a: asdict(_model_config(config, a)) for a in ("relu_encoder", "gpt2")}
    return _hash({**{k: getattr(config, k) for k in TRAINING_FIELDS}, "models": models})


def _model_config(c: MechanismConfig, arch: Architecture) -> ModelConfig:
    return ModelConfig(d=c.d, max_n=c.n, D=c.D, layers=c.layers, heads=c.heads, arch=arch)


def _hash(obj: object) -> str:
    text = json.dumps(to_jsonable(obj), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_HEX_DIGITS]


@dataclass(frozen=True)
class MechanismRun:
    """Outcome of :func:`run_mechanism`: this run's tables (all models, read back from disk),
    the models measured now and those skipped (already stored), and the figure paths."""

    run_id: str
    folder: str
    tables: dict[str, pd.DataFrame]
    models_run: tuple[str, ...]
    models_skipped: tuple[str, ...]
    figures: dict[str, tuple[str, str]]
    stats: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- prompts
def _spectral_start(config: MechanismConfig) -> SpectralStart:
    return SpectralStart(config.sigma, K, config.construction.power_iterations, pi=PI)


def _initial(batch: MoRBatch, config: MechanismConfig) -> torch.Tensor:
    """The initial estimate (B, K, d) of the construction and the algorithm ("in-context": the
    algorithm's spectral start, which the construction computes itself)."""
    if config.init == "in-context":
        with torch.no_grad():
            return _spectral_start(config)(batch.X_train, batch.y_train)
    gen = make_generator(derive_seed(config.seed, "mechanism-init"))
    if config.init == "spectral":
        return initial_estimate(
            batch.betas, method="spectral", generator=gen, X=batch.X_train, y=batch.y_train
        )
    return initial_estimate(batch.betas, rho=config.rho, generator=gen)


def scale_x(batch: MoRBatch, s: float) -> MoRBatch:
    """The batch with every x multiplied by ``s`` and y recomputed: the signal ``x^T beta_z``
    scales by ``s``, the noise is kept."""
    beta_z = torch.gather(batch.betas, 1, batch.z[..., None].expand(-1, -1, batch.d))
    signal = (batch.X * beta_z).sum(-1)
    y = s * signal + (batch.y - signal)
    return MoRBatch(s * batch.X, y, batch.z, batch.betas, batch.pi, batch.sigma)


# --------------------------------------------------------------------------- metrics of one model
def measure_model(
    model: MechanismModel,
    batch: MoRBatch,
    init: torch.Tensor,
    algorithm: GradientEMModel,
    shifted: list[tuple[str, float, MoRBatch, torch.Tensor]],
) -> dict[str, pd.DataFrame]:
    """The four tables of ``model`` against ``algorithm`` on ``batch`` (with initial estimate
    ``init``) and on the ``shifted`` batches ``(shift, value, batch, init)``."""
    X, y, xq = batch.X_train, batch.y_train, batch.x_query
    with torch.no_grad():
        preds = model.layer_predictions(X, y, xq, init)
        states = model.layer_states(X, y, xq, init)
        iterates = algorithm.iterates(X, y, init)
        alg_preds = algorithm.layer_predictions(X, y, xq, init)
    if not bool(torch.isfinite(preds).all()):
        raise ParameterError(f"{model.name}: non-finite layer read-outs on the evaluation prompts")
    cos, gap = alignment(preds, alg_preds)
    base = {"model": model.name}
    rows = [
        {**base, "layer": r, "depth": model.depths[r], "iterate": k,
         "cosine": float(cos[r, k]), "mse_gap": float(gap[r, k])}
        for r in range(cos.shape[0]) for k in range(cos.shape[1])
    ]  # fmt: skip
    pi = algorithm.pi
    targets = [(W_ORC, -1, batch.w_oracle)] + [
        ("iterate", k, (pi[None, :, None] * b).sum(1)) for k, b in enumerate(iterates)
    ]
    probes = [
        {**base, "layer": r, "depth": model.depths[r], "target": name, "iterate": k,
         "r2": probe_r2(h, w)}
        for r, h in enumerate(states) for name, k, w in targets
    ]  # fmt: skip
    gx, gy = input_gradients(model, X, y, xq, init)
    sens = []
    for k, (ax, ay) in enumerate(algorithm_gradients(algorithm, X, y, xq, init)):
        for wrt, g, a in (("x_query", gx, ax), ("y", gy, ay)):
            c = gradient_cosine(g, a)
            sens.append({**base, "iterate": k, "wrt": wrt, "cosine": c.mean, "cosine_se": c.se})
    ood = []
    for shift, value, b, init_b in shifted:
        with torch.no_grad():
            pred = model.predict(b.X_train, b.y_train, b.x_query, init_b)
        ex, mse = excess_risk_vs_oracle(pred, b.y_oracle), prediction_mse(pred, b.y_query)
        ood.append({**base, "shift": shift, "value": value, "excess_risk": ex.mean,
                    "excess_risk_se": ex.se, "mse": mse.mean, "mse_se": mse.se})  # fmt: skip
    return {
        "alignment": pd.DataFrame(rows),
        "probes": pd.DataFrame(probes),
        "sensitivity": pd.DataFrame(sens),
        "ood": pd.DataFrame(ood),
    }


# --------------------------------------------------------------------------- storage
def _path(results: str, table: str, model: str, rid: str) -> str:
    return os.path.join(results, f"{table}-{model}-{rid}.parquet")


def _write_parquet(path: str, frame: pd.DataFrame) -> None:
    def write(fh: IO[bytes]) -> None:
        frame.to_parquet(fh, index=False)

    write_atomically(path, write)


def _finished(results: str, model: str, rid: str) -> bool:
    return all(os.path.isfile(_path(results, t, model, rid)) for t in TABLES)


def read_tables(results: str, rid: str) -> dict[str, pd.DataFrame]:
    """Every stored row of run ``rid`` under ``results``, one frame per table of :data:`TABLES`
    (temporary files are ignored)."""
    out = {}
    for table in TABLES:
        files = sorted(glob.glob(os.path.join(results, f"{table}-*-{rid}.parquet")))
        frames = [pd.read_parquet(f) for f in files]
        out[table] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def _clean(folders: list[str]) -> None:
    for folder in folders:
        for stale in glob.glob(os.path.join(folder, ".tmp-*")):
            if os.path.isfile(stale):
                os.unlink(stale)


# --------------------------------------------------------------------------- the run
def _build(
    name: str, c: MechanismConfig, data: MoRConfig, checkpoints: str, rid: str, progress: bool
) -> tuple[MechanismModel, float]:
    """The model ``name`` and its final training loss (NaN when it is not trained)."""
    con = c.construction
    if name == "gradient_em":
        return _algorithm(c), float("nan")
    if name == "construction" and c.init == "in-context":
        itf = build_in_context_transformer(
            c.d, K, c.n, c.sigma, replace(con, init="in-context", symmetric=False), pi=PI
        )
        return InContextConstructionModel(itf), float("nan")
    if name == "construction":
        tf = build_gradient_em_transformer(
            c.d, K, c.n, c.sigma, con.T_outer, con.T_inner, con.alpha, con.relu_terms,
            symmetric=False, pi=PI, R_residual=con.R_residual,
        )  # fmt: skip
        return ConstructionModel(tf), float("nan")
    arch: Architecture = "relu_encoder" if name == "relu_encoder" else "gpt2"
    ckpt = _checkpoint(checkpoints, name, c, rid)
    res = train(_model_config(c, arch), data, replace(c.training, seed=c.seed), checkpoint=ckpt,
                progress=progress)  # fmt: skip
    return TransformerModel(res.model, name), res.final_loss


def _checkpoint(checkpoints: str, name: str, c: MechanismConfig, rid: str) -> str:
    """``checkpoints/<name>-<training id>.pt``; one left under the run id by an earlier version
    (the same training by construction) is renamed to it."""
    path = os.path.join(checkpoints, f"{name}-{training_id(c)}.pt")
    legacy = os.path.join(checkpoints, f"{name}-{rid}.pt")
    if not os.path.exists(path) and os.path.exists(legacy):
        os.replace(legacy, path)
    return path


def _algorithm(c: MechanismConfig) -> GradientEMModel:
    """Gradient EM with the construction's schedule (from the spectral start when in context)."""
    con = c.construction
    start = _spectral_start(c) if c.init == "in-context" else None
    return GradientEMModel(
        c.sigma, PI, con.T_outer, T_inner=con.T_inner, alpha=con.alpha, start=start
    )


def run_mechanism(
    config: MechanismConfig,
    out: str,
    *,
    progress: bool = False,
    draw: bool = True,
    threads: int | None = SINGLE_THREAD,
) -> MechanismRun:
    """Measure every model of ``config.models`` (skipping those already stored under
    ``out/mechanism``), then draw the alignment heatmaps and probe curves from the stored rows.

    ``threads``: torch intra-op threads during the run (restored afterwards; None leaves the
    setting alone). The default 1: the tensors are small, and on a shared 2-core machine two
    threads spin against each other (docs/experiments.md, measured ~18x slower per step).
    """
    if threads is None:
        return _run(config, out, progress, draw)
    before = torch.get_num_threads()
    torch.set_num_threads(check_int(threads, "threads", minimum=1))
    try:
        return _run(config, out, progress, draw)
    finally:
        torch.set_num_threads(before)


def _run(config: MechanismConfig, out: str, progress: bool, draw: bool) -> MechanismRun:
    c = config
    t0 = time.perf_counter()
    folder = os.path.join(out, "mechanism")
    results, checkpoints = os.path.join(folder, "results"), os.path.join(folder, "checkpoints")
    for sub in (results, checkpoints):
        os.makedirs(sub, exist_ok=True)
    _clean([folder, results, checkpoints])
    rid = run_id(c)
    data = MoRConfig(d=c.d, K=K, n=c.n, sigma=c.sigma)
    batch = sample_mor(data, c.prompts, seed=derive_seed(c.seed, "mechanism-eval"))
    init = _initial(batch, c)
    algorithm = _algorithm(c)
    shifted: list[tuple[str, float, MoRBatch, torch.Tensor]] = [
        ("x_scale", s, scale_x(batch, s), init) for s in c.x_scales
    ]
    for f in c.sigma_factors:
        b = sample_mor(data.replace(sigma=c.sigma * f), c.prompts,
                       seed=derive_seed(c.seed, "mechanism-ood-sigma", str(f)))  # fmt: skip
        shifted.append(("sigma_factor", f, b, _initial(b, c)))
    meta = {
        "run_id": rid,
        "config_json": json.dumps(to_jsonable(asdict(c)), sort_keys=True),
        **provenance(),
    }
    ran, skipped, seconds = [], [], {}
    for name in c.models:
        if _finished(results, name, rid):
            skipped.append(name)
            continue
        t1 = time.perf_counter()
        model, loss = _build(name, c, data, checkpoints, rid, progress)
        tables = measure_model(model, batch, init, algorithm, shifted)
        for table in TABLES:  # ood last: a model is finished when all four files exist
            _write_parquet(
                _path(results, table, name, rid),
                tables[table].assign(final_train_loss=loss, **meta),
            )
        ran.append(name)
        seconds[name] = time.perf_counter() - t1
    order = {m: i for i, m in enumerate(c.models)}
    stored = {
        t: f.sort_values("model", key=lambda m: m.map(order), kind="stable", ignore_index=True)
        if len(f)
        else f
        for t, f in read_tables(results, rid).items()
    }
    figures: dict[str, tuple[str, str]] = {}
    if draw:
        figures["alignment"] = draw_alignment(
            stored["alignment"], os.path.join(folder, "mechanism_alignment")
        )
        figures["probes"] = draw_probes(stored["probes"], os.path.join(folder, "mechanism_probes"))
    return MechanismRun(
        run_id=rid,
        folder=folder,
        tables=stored,
        models_run=tuple(ran),
        models_skipped=tuple(skipped),
        figures=figures,
        stats={"seconds": time.perf_counter() - t0, "model_seconds": seconds},
    )
