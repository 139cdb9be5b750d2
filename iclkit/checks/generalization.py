"""Checks of the generalization capability (filled in as its API lands)."""

from __future__ import annotations
