"""iclkit: checks the theory of in-context learning in transformers by computation.

The entry points a notebook needs, re-exported here (one per capability)::

    import iclkit
    batch = iclkit.sample_mor(iclkit.MoRConfig(d=5, K=3, n=500, snr=10.0), 8, seed=0)
    init = iclkit.initial_estimate(batch.betas, method="spectral", X=batch.X_train,
                                   y=batch.y_train, generator=iclkit.make_generator(1))
    fit = iclkit.em(batch.X_train, batch.y_train, init, batch.sigma)
    print(iclkit.parameter_error(fit.betas, batch.betas))
    result = iclkit.simulate_softmax(iclkit.SoftmaxConfig(iclkit.FeatureConfig(K=4, N=50)))
    print(result.status, iclkit.detect_phases(result).summary)
    run = iclkit.run_checks(iclkit.CheckConfig(only=("em",)))

Subpackages (arrows point one way: cli -> checks -> (experiments, constructions, dynamics) ->
theory; ``iclkit.io`` is a leaf for file output):

- :mod:`iclkit.theory` - data models (MoR, feature tokens, linear regression), metrics, the
  theorems' bounds and rates as pure functions.
- :mod:`iclkit.constructions` - hand-set transformer weights (the Theorem 3.1 transformer, the
  GD layer) and the reference algorithms they implement (EM, gradient EM, OLS, ridge).
- :mod:`iclkit.dynamics` - the LSA gradient flow and GD of softmax attention.
- :mod:`iclkit.experiments` - training transformers on MoR prompts, sweeps and the figures.
- :mod:`iclkit.checks` - theorem checks, their registry and the report.
"""

from __future__ import annotations

from .checks import CheckConfig, CheckRun, run_checks
from .constructions import (
    AlgorithmConfig,
    ConstructionConfig,
    build_gd_transformer,
    build_gradient_em_transformer,
    em,
    gradient_em,
    initial_estimate,
    layer_count,
    ols,
    ridge,
    run_algorithm,
    run_gradient_em_transformer,
)
from .dynamics import (
    LSAConfig,
    LSAResult,
    SoftmaxConfig,
    SoftmaxResult,
    SolverStats,
    Status,
    detect_phases,
    simulate_lsa,
    simulate_softmax,
)
from .theory import (
    MoRBatch,
    MoRConfig,
    ParameterError,
    PromptPool,
    derive_seed,
    fresh_batch,
    make_generator,
    sample_mor,
)
from .theory.features import FeatureConfig
from .theory.metrics import excess_risk, parameter_error
from .theory.rates import fit_line, fit_rate
from .version import __version__

__all__ = [
    "AlgorithmConfig",
    "CheckConfig",
    "CheckRun",
    "ConstructionConfig",
    "FeatureConfig",
    "LSAConfig",
    "LSAResult",
    "MoRBatch",
    "MoRConfig",
    "ParameterError",
    "PromptPool",
    "SoftmaxConfig",
    "SoftmaxResult",
    "SolverStats",
    "Status",
    "__version__",
    "build_gd_transformer",
    "build_gradient_em_transformer",
    "derive_seed",
    "detect_phases",
    "em",
    "excess_risk",
    "fit_line",
    "fit_rate",
    "fresh_batch",
    "gradient_em",
    "initial_estimate",
    "layer_count",
    "make_generator",
    "ols",
    "parameter_error",
    "ridge",
    "run_algorithm",
    "run_checks",
    "run_gradient_em_transformer",
    "sample_mor",
    "simulate_lsa",
    "simulate_softmax",
]
