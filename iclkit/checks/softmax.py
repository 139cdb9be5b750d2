"""Checks of the softmax capability (filled in as its API lands)."""

from __future__ import annotations
