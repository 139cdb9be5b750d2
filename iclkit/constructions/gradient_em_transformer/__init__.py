"""The Theorem 3.1 transformer of Jin, Balasubramanian, Lai (arXiv 2410.14183): hand-set
ReLU-attention weights, at most 4 heads per layer, that run (surrogate) gradient EM in context.

One module per stage (design in ``docs/construction.md``):

- :mod:`.config` - :class:`ConstructionConfig`, the schedule (``T_outer``, ``T_inner``,
  ``alpha``) and the E-step accuracy (``relu_terms``) with their defaults;
- :mod:`.heads` - head primitives (ReLU sums, clearing a slot, read-out), packing into layers of
  at most 4 heads, and the layer formula :func:`layer_count`;
- :mod:`.nonlinearities` - the general-K ReLU sums (``psi``, softplus, exp);
- :mod:`.build` - :func:`build_gradient_em_transformer`: layout, E-step heads, M-step heads,
  read-out, schedule;
- :mod:`.mlp`, :mod:`.mlp_build` - the ``attention-mlp`` architecture: attention + per-token
  ReLU MLP blocks (Bai et al. Def. 2.2), depth independent of ``relu_terms``;
- :mod:`.model` - :class:`GradientEMTransformer` (callable on prompts) and its report;
- :mod:`.run` - running it on prompts next to surrogate and exact gradient EM;
- :mod:`.measure` - the depth-vs-M and float32 measurements quoted in the docs, and the
  float32 round-off bound.
- :mod:`.spectral_init`, :mod:`.in_context` - the construction with its initial estimate
  computed in context (spectral-initialisation layers in front, ``ConstructionConfig.init``).
"""

from __future__ import annotations

from .build import build_gradient_em_transformer
from .config import (
    DEFAULT_CONSTRUCTION,
    Architecture,
    ConstructionConfig,
    InitMode,
    Precision,
    default_init_mode,
    min_relu_terms,
)
from .heads import MAX_HEADS, layer_count, layer_formula_text
from .in_context import (
    InContextEMTransformer,
    InContextRun,
    SampledInContextRun,
    build_in_context_transformer,
    run_in_context_on_sampled_prompts,
    run_in_context_transformer,
)
from .mlp import AttentionMLPTransformer, MLPLayer
from .model import ConstructionReport, GradientEMTransformer
from .nonlinearities import estep_functions, general_relu_sums
from .run import (
    CONSTRUCT_PROMPTS,
    ConstructionRun,
    SampledConstructionRun,
    layerwise_relative_error,
    run_gradient_em_transformer,
    run_on_sampled_prompts,
    surrogate_iterates,
)

__all__ = [
    "CONSTRUCT_PROMPTS",
    "DEFAULT_CONSTRUCTION",
    "MAX_HEADS",
    "Architecture",
    "AttentionMLPTransformer",
    "ConstructionConfig",
    "ConstructionReport",
    "ConstructionRun",
    "GradientEMTransformer",
    "InContextEMTransformer",
    "InContextRun",
    "InitMode",
    "MLPLayer",
    "Precision",
    "SampledConstructionRun",
    "SampledInContextRun",
    "build_gradient_em_transformer",
    "build_in_context_transformer",
    "default_init_mode",
    "estep_functions",
    "general_relu_sums",
    "layer_count",
    "layer_formula_text",
    "layerwise_relative_error",
    "min_relu_terms",
    "run_gradient_em_transformer",
    "run_in_context_on_sampled_prompts",
    "run_in_context_transformer",
    "run_on_sampled_prompts",
    "surrogate_iterates",
]
