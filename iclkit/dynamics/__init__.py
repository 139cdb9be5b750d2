"""Gradient-flow ODEs and GD simulators for linear and softmax attention."""

from __future__ import annotations
