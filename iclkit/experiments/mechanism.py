"""Mechanism metrics: does a model with hidden states run gradient EM layer by layer?

One API for any model that exposes, at the query token, a read-out of its prediction after
every layer and its hidden state after every layer (:class:`MechanismModel`). Adapters:

- :class:`TransformerModel`: a trained :class:`~iclkit.experiments.models.ICLTransformer`
  (ReLU-attention encoder or GPT-2 decoder). Layer l's read-out is the model's own read-out
  (final LayerNorm, then the linear read-out) applied to the residual stream at the query
  token after block l (a "logit lens"; l = 0 is the read-in).
- :class:`ConstructionModel`: the Theorem 3.1 construction of arXiv 2410.14183
  (:mod:`iclkit.constructions.gradient_em_transformer`). Its rows are the block iterates: row 0
  is the input, row t the layer after which the query token holds the t-th gradient-EM iterate
  ``beta^(t)``; the read-out there is ``x_query^T sum_k pi_k beta_k^(t)``.
- :class:`InContextConstructionModel`: the same construction with its initial estimate computed
  in context (:func:`~iclkit.constructions.gradient_em_transformer.build_in_context_transformer`:
  spectral-initialisation layers in front). Row 0 is the layer after the initialisation layers
  (the query token holds the spectral start ``beta^(0)``), row t the end of gradient-EM iteration
  t; its depths are the real layer indices, so row 0 sits at depth ``L_init``.
- :class:`GradientEMModel`: gradient EM itself (``T_outer`` iterations of ``T_inner`` steps of
  size ``alpha``, responsibilities ``gamma_ik = softmax_k(log pi_k - (y_i - x_i^T beta_k)^2 /
  (2 sigma^2))``, step ``beta_k += alpha (1/n) sum_i gamma_ik (y_i - x_i^T beta_k) x_i``
  [RECON, standard]), written in differentiable torch; row k is iterate k and its "hidden
  state" is the flattened ``beta^(k)`` (B, K d). It is the reference every model is compared
  with, and a model with a known answer for the metrics. It starts from the ``init`` it is
  given, or, with ``start`` (e.g. :class:`SpectralStart`), from an initial estimate it computes
  from the prompt itself (then differentiable through that start too).

Metrics (all on the same held-out prompts, float64; ``w^(k) = sum_k pi_k beta_k^(k)``):

- :func:`alignment`: for every row l of the model and iterate k of the algorithm, the cosine of
  the prediction vectors ``(y_hat_l(b))_b`` and ``(x_query(b)^T w^(k)(b))_b`` over the B prompts
  (uncentred) and their mean squared gap;
- :func:`input_gradients` / :func:`gradient_cosine`: the per-prompt cosine between
  ``d y_hat / d x_query`` (and ``d y_hat / d y_i``, i = 1..n) of the model and of the algorithm,
  by autograd through both (the initial estimate held fixed);
- :func:`probe_r2` (ridge, closed form, fitted on one half of the prompts and scored on the
  other): R^2 of ``w_orc`` and of ``w^(k)`` from each row's hidden state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from iclkit.constructions.gradient_em_transformer import (
    GradientEMTransformer,
    InContextEMTransformer,
)
from iclkit.constructions.layout import read_y
from iclkit.constructions.spectral_init import (
    spectral_functions,
    spectral_init,
    spectral_init_k2,
    spectral_relu_sums,
)
from iclkit.theory.metrics import RiskEstimate
from iclkit.theory.validation import ParameterError, check_int, check_positive, check_shape

from .constructed_vs_trained import probe_r2
from .models import ICLTransformer

__all__ = [
    "ConstructionModel",
    "GradientEMModel",
    "InContextConstructionModel",
    "MechanismModel",
    "SpectralStart",
    "TransformerModel",
    "algorithm_gradients",
    "alignment",
    "gradient_cosine",
    "input_gradients",
    "probe_r2",
    "weighted_readout",
]

F64 = torch.float64

#: Prompts per autograd pass of :func:`input_gradients`: bounds the memory of the construction's
#: backward pass (every layer's hidden states of a chunk are kept).
GRADIENT_CHUNK = 32


class MechanismModel(Protocol):
    """A model whose prediction at the query can be read after every layer.

    ``depths[r]`` is the network layer of read-out row r (0 = the input). Every method takes
    ``X (B, n, d)``, ``y (B, n)``, ``x_query (B, d)`` and ``init (B, K, d)``, the initial estimate
    (used by the construction and the algorithm; a trained model, the in-context construction
    and an algorithm with its own ``start`` ignore it).
    """

    name: str
    depths: tuple[int, ...]

    def layer_predictions(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        """(R, B): the prediction read out at every row."""
        ...

    def layer_states(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        """R tensors (B, F): the hidden state at the query token after every row."""
        ...

    def predict(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        """(B,) the final prediction, differentiable in X, y and x_query."""
        ...


def weighted_readout(betas: Tensor, pi: Tensor, x_query: Tensor) -> Tensor:
    """``x_query^T sum_k pi_k beta_k`` for ``betas (B, K, d)``, ``pi (K,)``, ``x_query (B, d)``: (B,)."""
    w = (pi.to(betas.dtype)[None, :, None] * betas).sum(1)
    return (w * x_query).sum(-1)


# --------------------------------------------------------------------------- adapters
class SpectralStart:
    """The spectral initial estimate (B, P, d) of a prompt, computed outside any transformer.

    It is the **surrogate** spectral initialisation of
    :func:`iclkit.constructions.spectral_init.spectral_init` with the construction's ReLU sums
    (:func:`~iclkit.constructions.spectral_init.spectral_relu_sums`), not the exact one. Why: the
    in-context construction equals this surrogate to round-off (~1e-13), while the exact
    initialisation differs from it by the scale ``s ~ sqrt(m2 - sigma^2)`` (its ReLU sum is
    within ~6 % inside its domain; the directions agree to round-off). Starting the algorithm
    from the exact start would put that scale gap into row 0 and carry it through every iterate,
    so the alignment would measure the scalar approximation instead of whether the layers run
    the gradient-EM iterations. The surrogate is itself a spectral estimate (same span and unit
    vectors, scale within ~6 %), so it is also a fair start for the algorithm the trained models
    are compared with.

    Parameters
    ----------
    sigma : the noise level the start assumes (that of the construction).
    P : number of vectors (K in the non-tied form).
    T_power : power iterations (``ConstructionConfig.power_iterations``).
    pi : with ``P = 2``, the known weights of the non-tied K = 2 form: the start is then the
        first-moment-corrected one the in-context construction computes for general K = 2
        (:func:`~iclkit.constructions.spectral_init.spectral_init_k2`, whose Newton-refined
        scalars make the surrogate equal the exact start to round-off); None: ``s u_k``.
    """

    def __init__(
        self, sigma: float, P: int, T_power: int, pi: tuple[float, ...] | None = None
    ) -> None:
        self.sigma = check_positive(sigma, "sigma")
        self.P = check_int(P, "P", minimum=1)
        self.T_power = check_int(T_power, "T_power", minimum=0)
        if pi is not None and (self.P != 2 or len(pi) != 2):
            raise ParameterError(f"pi: the first-moment-corrected start needs P = 2, got P = {P}")
        self.pi = pi
        self.functions = spectral_functions(spectral_relu_sums())

    def __call__(self, X: Tensor, y: Tensor) -> Tensor:
        """X : (B, n, d), y : (B, n) -> (B, P, d), differentiable in X and y."""
        X, y = X.to(F64), y.to(F64)
        if self.pi is not None:
            fns, T = self.functions, self.T_power
            return spectral_init_k2(X, y, self.sigma, self.pi, fns, T_power=T).init
        return spectral_init(X, y, self.sigma, self.P, self.functions, T_power=self.T_power).init


class GradientEMModel:
    """Gradient EM (known sigma and pi) as a :class:`MechanismModel`: row k = iterate k.

    ``start``: when given, a function ``(X, y) -> (B, K, d)`` that computes the initial estimate
    from the prompt (e.g. :class:`SpectralStart`); the ``init`` argument of every method is then
    ignored and every gradient includes the start's dependence on the prompt.
    """

    def __init__(
        self,
        sigma: float,
        pi: tuple[float, ...],
        T_outer: int,
        *,
        T_inner: int = 1,
        alpha: float = 1.0,
        name: str = "gradient_em",
        start: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        self.sigma = check_positive(sigma, "sigma")
        self.pi = torch.tensor(pi, dtype=F64)
        if bool((self.pi < 0).any()) or abs(float(self.pi.sum()) - 1) > 1e-12:
            raise ParameterError(f"pi must be non-negative and sum to 1, got {pi}")
        self.T_outer = check_int(T_outer, "T_outer", minimum=0)
        self.T_inner = check_int(T_inner, "T_inner", minimum=1)
        self.alpha = check_positive(alpha, "alpha")
        self.name = name
        self.depths = tuple(range(self.T_outer + 1))
        self.start = start

    def iterates(self, X: Tensor, y: Tensor, init: Tensor) -> list[Tensor]:
        """``[beta^(0), ..., beta^(T_outer)]``, each (B, K, d), differentiable in X, y, init
        (``init`` replaced by ``start(X, y)`` when the model has a start)."""
        if self.start is not None:
            init = self.start(X, y)
        check_shape(init, "init", (X.shape[0], self.pi.numel(), X.shape[2]))
        n = X.shape[1]
        log_pi = torch.log(self.pi.clamp_min(torch.finfo(F64).tiny)).to(X.dtype)
        betas = init.to(X.dtype)
        out = [betas]
        for _ in range(self.T_outer):
            resid = y[:, :, None] - X @ betas.transpose(1, 2)  # (B, n, K)
            gamma = torch.softmax(log_pi - resid**2 / (2 * self.sigma**2), dim=-1)
            for _ in range(self.T_inner):
                resid = y[:, :, None] - X @ betas.transpose(1, 2)
                betas = betas + self.alpha * torch.einsum("bnk,bnd->bkd", gamma * resid, X) / n
            out.append(betas)
        return out

    def layer_predictions(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        return torch.stack(
            [weighted_readout(b, self.pi, x_query) for b in self.iterates(X, y, init)]
        )

    def layer_states(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        return [b.flatten(1) for b in self.iterates(X, y, init)]

    def predict(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        return weighted_readout(self.iterates(X, y, init)[-1], self.pi, x_query)


class TransformerModel:
    """A trained :class:`ICLTransformer` (either architecture), run in float64 on a copy.

    Rows: the read-in (0) and each of the L blocks; the read-out of row l is
    ``read_out(ln_f(h_l))`` at the token that predicts the query.
    """

    def __init__(self, model: ICLTransformer, name: str) -> None:
        self.model = copy.deepcopy(model).to(F64).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.name = name
        self.depths = tuple(range(model.config.layers + 1))

    @staticmethod
    def _prompt(X: Tensor, y: Tensor, x_query: Tensor) -> tuple[Tensor, Tensor]:
        X_full = torch.cat([X, x_query[:, None]], 1).to(F64)
        y_full = torch.cat([y, torch.zeros_like(y[:, :1])], 1).to(F64)
        return X_full, y_full

    def _read(self, h: Tensor) -> Tensor:
        return self.model.read_out(self.model.ln_f(h))[..., 0]

    def layer_predictions(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        return torch.stack([self._read(h) for h in self.layer_states(X, y, x_query, init)])

    def layer_states(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        return self.model.hidden_states(*self._prompt(X, y, x_query))

    def predict(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        return self.model(*self._prompt(X, y, x_query))[:, -1]


class ConstructionModel:
    """The Theorem 3.1 construction (general-K form) at its block iterates.

    Row 0 is the input; row t (t = 1..T_outer) is the layer after the last inner step of outer
    iteration t (``report.block_ends``). The hidden state of a row is the query token's full
    row (B, D); its read-out is ``x_query^T sum_k pi_k beta_k`` from the estimate slots.
    """

    def __init__(self, tf: GradientEMTransformer, name: str = "construction") -> None:
        if tf.layout.symmetric:
            raise ParameterError("tf must be the general (non-tied) construction")
        self.tf = tf
        self.name = name
        last = {t: layer for kind, t, s, layer in tf.report.block_ends
                if kind == "inner" and s == tf.T_inner - 1}  # fmt: skip
        self.depths = (0, *(last[t] for t in range(tf.T_outer)))
        self.pi = torch.tensor(tf.pi, dtype=F64)

    def _rows(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        H0 = self.tf.embed(X.to(F64), y.to(F64), init.to(F64), x_query.to(F64))
        rows = self.tf.model.token_states(H0, list(self.depths))
        return [rows[layer] for layer in self.depths]

    def layer_predictions(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        lay = self.tf.layout
        out = []
        for h in self._rows(X, y, x_query, init):
            betas = torch.stack([h[:, lay.beta(k)] for k in range(lay.P)], 1)
            out.append(weighted_readout(betas, self.pi, x_query.to(F64)))
        return torch.stack(out)

    def layer_states(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        return self._rows(X, y, x_query, init)

    def predict(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        H0 = self.tf.embed(X.to(F64), y.to(F64), init.to(F64), x_query.to(F64))
        if torch.is_grad_enabled():  # the out-of-place path, which autograd can differentiate
            return read_y(self.tf.layout, self.tf.model.hidden_states(H0)[-1])
        return read_y(self.tf.layout, self.tf.model(H0))


class InContextConstructionModel:
    """The construction with its initial estimate computed in context, at its block iterates.

    Row 0 is the layer after the ``init_layers`` spectral-initialisation layers (the query token
    holds ``beta^(0)``); row t (t = 1..T_outer) the layer after the last inner step of gradient-EM
    iteration t. ``depths`` are these real layer indices (row 0 at ``L_init``). The ``init``
    argument of every method is ignored: the model computes its own start from the prompt.
    """

    def __init__(self, tf: InContextEMTransformer, name: str = "construction") -> None:
        if tf.layout.base.symmetric:
            raise ParameterError("tf must be the general (non-tied) construction")
        self.tf = tf
        self.name = name
        T_inner = tf.em.T_inner
        last = {t: layer for kind, t, s, layer in tf.report.block_ends
                if kind == "inner" and s == T_inner - 1}  # fmt: skip
        self.depths = (tf.init_layers, *(last[t] for t in range(tf.em.T_outer)))
        self.pi = torch.tensor(tf.em.pi, dtype=F64)

    def _embed(self, X: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
        return self.tf.embed(X.to(F64), y.to(F64), x_query.to(F64))

    def layer_states(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> list[Tensor]:
        rows = self.tf.model.token_states(self._embed(X, y, x_query), list(self.depths))
        return [rows[layer] for layer in self.depths]

    def layer_predictions(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        lay = self.tf.layout.base
        out = []
        for h in self.layer_states(X, y, x_query, init):
            betas = torch.stack([h[:, lay.beta(k)] for k in range(lay.P)], 1)
            out.append(weighted_readout(betas, self.pi, x_query.to(F64)))
        return torch.stack(out)

    def predict(self, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor) -> Tensor:
        H0 = self._embed(X, y, x_query)
        if torch.is_grad_enabled():  # the out-of-place path, which autograd can differentiate
            return read_y(self.tf.layout.base, self.tf.model.hidden_states(H0)[-1])
        return read_y(self.tf.layout.base, self.tf.model(H0))


# --------------------------------------------------------------------------- metrics
def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine along the last axis; 0 where either vector is zero (no shared direction)."""
    num = (a * b).sum(-1)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(a.dtype).tiny), 0.0)


def alignment(model_predictions: Tensor, algorithm_predictions: Tensor) -> tuple[Tensor, Tensor]:
    """Layer-vs-iteration agreement of two sets of prediction vectors over the same B prompts.

    Parameters
    ----------
    model_predictions : (R, B), row l = the model's read-out after layer l.
    algorithm_predictions : (T + 1, B), row k = the algorithm's prediction after k iterations.

    Returns
    -------
    cosine : (R, T + 1), uncentred cosine of the two B-vectors (0 when one is all zero).
    gap : (R, T + 1), mean over prompts of the squared difference.
    """
    if model_predictions.dim() != 2 or algorithm_predictions.dim() != 2:
        raise ParameterError("model_predictions and algorithm_predictions must be 2-d (rows, B)")
    B = model_predictions.shape[1]
    check_shape(algorithm_predictions, "algorithm_predictions", (None, B))
    m = model_predictions.to(F64)[:, None, :]
    a = algorithm_predictions.to(F64)[None, :, :]
    return _cosine(m, a), ((m - a) ** 2).mean(-1)


def input_gradients(
    model: MechanismModel,
    X: Tensor,
    y: Tensor,
    x_query: Tensor,
    init: Tensor,
    *,
    chunk: int = GRADIENT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """``d y_hat / d x_query`` (B, d) and ``d y_hat / d y`` (B, n) of ``model.predict`` by
    autograd in float64 (each prompt's prediction depends only on its own inputs, so the
    gradient of the sum is the per-prompt gradient); ``init`` is held fixed."""
    check_int(chunk, "chunk", minimum=1)
    gx, gy = [], []
    for start in range(0, X.shape[0], chunk):
        sl = slice(start, start + chunk)
        Xc = X[sl].detach().to(F64)
        yc = y[sl].detach().to(F64).requires_grad_(True)
        xq = x_query[sl].detach().to(F64).requires_grad_(True)
        with torch.enable_grad():
            out = model.predict(Xc, yc, xq, init[sl].detach().to(F64))
            g = (
                torch.autograd.grad(out.sum(), [xq, yc], allow_unused=True)
                if out.requires_grad
                else (None, None)  # a prediction that depends on neither input
            )
        gx.append(torch.zeros_like(xq) if g[0] is None else g[0])
        gy.append(torch.zeros_like(yc) if g[1] is None else g[1])
    return torch.cat(gx).detach(), torch.cat(gy).detach()


def algorithm_gradients(
    algorithm: GradientEMModel, X: Tensor, y: Tensor, x_query: Tensor, init: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """Per iterate k, ``(d y^(k) / d x_query (B, d), d y^(k) / d y (B, n))`` of the algorithm's
    prediction ``y^(k) = x_query^T w^(k)`` (autograd; ``init`` held fixed)."""
    yc = y.detach().to(F64).requires_grad_(True)
    xq = x_query.detach().to(F64).requires_grad_(True)
    out = []
    with torch.enable_grad():
        preds = algorithm.layer_predictions(X.detach().to(F64), yc, xq, init.detach().to(F64))
        for k in range(preds.shape[0]):
            g = torch.autograd.grad(preds[k].sum(), [xq, yc], retain_graph=True, allow_unused=True)
            out.append(
                (
                    (torch.zeros_like(xq) if g[0] is None else g[0]).detach(),
                    (torch.zeros_like(yc) if g[1] is None else g[1]).detach(),
                )
            )
    return out


def gradient_cosine(model_grad: Tensor, algorithm_grad: Tensor) -> RiskEstimate:
    """Mean over prompts (with its standard error) of the per-prompt cosine of two gradients
    ``(B, F)`` (0 for a prompt where either gradient is zero)."""
    if model_grad.shape != algorithm_grad.shape or model_grad.dim() != 2:
        raise ParameterError(
            f"model_grad and algorithm_grad must have one shape (B, F), got "
            f"{tuple(model_grad.shape)} and {tuple(algorithm_grad.shape)}"
        )
    c = _cosine(model_grad.to(F64), algorithm_grad.to(F64))
    B = c.numel()
    se = float(c.std() / B**0.5) if B > 1 else float("nan")
    return RiskEstimate(float(c.mean()), se, B)
