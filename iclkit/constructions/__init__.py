"""Hand-set transformer weights and the algorithms they implement (reference implementations).

Entry points:

- :func:`build_gradient_em_transformer` - the MoR Theorem 3.1 transformer (ReLU attention,
  <= 4 heads per layer) that runs gradient EM in context, configured by
  :class:`ConstructionConfig`; :func:`run_gradient_em_transformer` runs it on prompts next to
  surrogate and exact gradient EM (:mod:`iclkit.constructions.gradient_em_transformer`).
- :func:`build_gd_transformer` - one ReLU-attention layer per gradient step on least squares
  (von Oswald / Bai).
- :mod:`iclkit.constructions.algorithms` - reference EM, gradient EM, OLS, ridge (batched);
  :func:`run_algorithm` runs one of them by name.
- :func:`sample_prompts` - MoR prompts with the local initialisation of the EM-type algorithms.
- :mod:`iclkit.constructions.predictors` - the shared predictor interface and baselines.
- :mod:`iclkit.constructions.bayes_optimal` - the Bayes-optimal in-context predictor (posterior
  mean given the prompt; enumeration over assignments or collapsed Gibbs).
"""

from __future__ import annotations

from .algorithms import em, gradient_em, ols, ridge
from .estimate import AlgorithmConfig, run_algorithm
from .gd_layer import build_gd_transformer
from .gradient_em_transformer import (
    ConstructionConfig,
    build_gradient_em_transformer,
    layer_count,
    run_gradient_em_transformer,
)
from .predictors import initial_estimate
from .prompts import PromptsConfig, sample_prompts

__all__ = [
    "AlgorithmConfig",
    "ConstructionConfig",
    "PromptsConfig",
    "build_gd_transformer",
    "build_gradient_em_transformer",
    "em",
    "gradient_em",
    "initial_estimate",
    "layer_count",
    "ols",
    "ridge",
    "run_algorithm",
    "run_gradient_em_transformer",
    "sample_prompts",
]
