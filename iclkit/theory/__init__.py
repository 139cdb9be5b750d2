"""Data models, metrics, and the theorems' bounds and rates as pure functions.

This subpackage imports nothing else of iclkit.
"""

from __future__ import annotations

from .mor import MoRBatch, MoRConfig, PromptPool, fresh_batch, sample_mor
from .rng import derive_seed, make_generator, resolve_generator
from .validation import ParameterError

__all__ = [
    "MoRBatch",
    "MoRConfig",
    "ParameterError",
    "PromptPool",
    "derive_seed",
    "fresh_batch",
    "make_generator",
    "resolve_generator",
    "sample_mor",
]
