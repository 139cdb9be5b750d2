"""Explicit, derivable randomness.

Every random draw in iclkit comes from a ``torch.Generator`` made here from an integer
seed. Streams that must be independent (data, init, training batches, sweep cells) derive
their own seed from a parent seed and a tuple of keys with :func:`derive_seed`, so an
interrupted run can regenerate batch ``i`` without storing generator state.
"""

from __future__ import annotations

import hashlib

import torch

from .validation import MAX_SEED, ParameterError, check_seed

__all__ = ["derive_seed", "make_generator", "resolve_generator"]

_MAX_SEED = MAX_SEED


def make_generator(seed: int, *, name: str = "seed") -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``seed`` (0 <= seed <= 2**63 - 1).

    ``seed`` is checked by :func:`~iclkit.theory.validation.check_seed` (numpy integers
    accepted; bool, float, None refused); ``name`` is the parameter named in its error.
    """
    seed = check_seed(seed, name)
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def derive_seed(seed: int, *keys: int | str, name: str = "seed") -> int:
    """Derive a child seed from ``seed`` and ``keys`` (stable across runs and platforms).

    Uses BLAKE2b over the decimal/str representation, so ``derive_seed(s, "data", 3)`` and
    ``derive_seed(s, "init", 3)`` are independent streams. ``seed`` is checked by
    :func:`~iclkit.theory.validation.check_seed` (``name`` is the parameter named in its
    error). A key enters the hash with its type name, as before (``np.int64(3)`` and ``3``
    are two different keys).
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(str(check_seed(seed, name)).encode())
    for key in keys:
        h.update(b"\x00" + type(key).__name__.encode() + b":" + str(key).encode())
    return int.from_bytes(h.digest(), "little") & _MAX_SEED


def resolve_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """The generator of a sampling call that takes ``seed=`` or ``generator=``: exactly one of
    them must be given; a seed makes a fresh generator with :func:`make_generator`."""
    if (seed is None) == (generator is None):
        raise ParameterError("seed and generator: give exactly one of them")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ParameterError(
                f"generator must be a torch.Generator, got {type(generator).__name__}"
            )
        return generator
    assert seed is not None
    return make_generator(seed)
