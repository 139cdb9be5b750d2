"""Training transformers on MoR prompts, sweeps, and the paper's figures."""

from __future__ import annotations
