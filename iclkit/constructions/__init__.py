"""Hand-set transformer weights and the algorithms they implement (reference implementations).

Entry points:

- :func:`build_gradient_em_transformer` - the MoR Theorem 3.1 transformer (ReLU attention,
  <= 4 heads per layer) that runs gradient EM in context (docs/construction.md).
- :func:`build_gd_transformer` - one ReLU-attention layer per gradient step on least squares
  (von Oswald / Bai).
- :mod:`iclkit.constructions.algorithms` - reference EM, gradient EM, OLS, ridge (batched).
- :mod:`iclkit.constructions.predictors` - the shared predictor interface and baselines.
"""

from __future__ import annotations

from .algorithms import em, gradient_em, ols, ridge
from .gd_layer import build_gd_transformer
from .gradient_em_transformer import build_gradient_em_transformer, run_gradient_em_transformer

__all__ = [
    "build_gd_transformer",
    "build_gradient_em_transformer",
    "em",
    "gradient_em",
    "ols",
    "ridge",
    "run_gradient_em_transformer",
]
