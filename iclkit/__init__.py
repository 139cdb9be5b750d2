"""iclkit: checks the theory of in-context learning in transformers by computation.

Subpackages (arrows point one way: cli -> (checks, experiments) -> (constructions, dynamics) -> theory):

- :mod:`iclkit.theory` - data models (MoR, feature tokens), metrics, theorem bounds and rates.
- :mod:`iclkit.constructions` - hand-set transformer weights and the reference algorithms
  they implement (EM, gradient EM, GD, OLS, ridge).
- :mod:`iclkit.dynamics` - gradient-flow ODEs and GD simulators for LSA and softmax attention.
- :mod:`iclkit.checks` - theorem checks, their registry and the report.
- :mod:`iclkit.experiments` - training, sweeps and figures.
"""

from __future__ import annotations

__version__ = "0.1.0"
