"""Hand-set transformer weights and the algorithms they implement (reference implementations)."""

from __future__ import annotations
