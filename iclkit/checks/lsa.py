"""Checks of the lsa capability (filled in as its API lands)."""

from __future__ import annotations
