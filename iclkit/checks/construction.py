"""Checks of the construction capability (filled in as its API lands)."""

from __future__ import annotations
