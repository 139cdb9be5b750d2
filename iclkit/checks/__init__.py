"""Theorem checks, their registry, and the report (imported only by the CLI)."""

from __future__ import annotations
