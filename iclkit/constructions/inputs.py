"""The boundary of the reference algorithms: tensors in, one float dtype, one device, no autograd.

Every public algorithm of :mod:`iclkit.constructions` (``em``, ``gradient_em``, ``em_step``,
``gradient_em_step``, ``ols``, ``ridge``, ``run_algorithm``, ``run_gradient_em_transformer``)
passes its tensors through :func:`prepare_tensors` once per call, before any iteration:

- **dtype.** float32 and float64 are computed in; all tensors of one call are promoted to their
  common float dtype (float64 as soon as one of them is float64). Integer and bool tensors are
  converted to float64 (they count as float64 in the promotion). float16, bfloat16 and complex
  tensors are refused by name: half precision cannot carry the log-likelihood or a Cholesky
  factorisation (torch has no half kernels for them), and converting would hide that the data
  had already been rounded to 3 digits.
- **device.** Every tensor must be on the device of the first one (``X``).
- **autograd.** Tensors are detached: these are reference algorithms whose outputs are compared
  with constructions and trained models, never trained through, and their in-place kernels
  (``torch.mul(..., out=)``) do not support autograd.
- **scale.** Entries of ``X`` and ``y`` must be small enough that the Gram matrices
  ``X^T X`` and ``X^T y`` stay finite in the dtype (:func:`check_data_scale`); beyond that
  torch's batched linear algebra fails with internal errors instead of a message.

numpy arrays are taken as tensors (``torch.from_numpy``); other objects are refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
from torch import Tensor

from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import ParameterError

__all__ = [
    "COMPUTE_DTYPES",
    "MAX_ITERATIONS",
    "Sigma",
    "check_data_scale",
    "prepare_prompts",
    "prepare_tensors",
]

#: A known noise level: one per prompt (B,), or one for all prompts.
Sigma = Tensor | float

#: Most iterations (EM iterations, gradient steps per M-step) one call may ask for: EM
#: contracts geometrically, so 10^5 iterations are far past any use, and a larger count (such as
#: a mistyped 10**400) would only keep the call running for hours.
MAX_ITERATIONS = 100_000

#: The dtypes the algorithms compute in.
COMPUTE_DTYPES = (torch.float32, torch.float64)
_REFUSED = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
#: Headroom of the scale check: ``X^T X`` sums n products of d-vectors; a factor 4 keeps the
#: sums of the M-step (weighted by gamma <= 1) and ``X^T y`` below the largest float.
_GRAM_HEADROOM = 4.0


def _as_tensor(value: object, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ParameterError(f"{name} must hold numbers, got a numpy array of {value.dtype}")
        return torch.from_numpy(value)
    raise ParameterError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _float_kind(t: Tensor, name: str) -> torch.dtype:
    """The float dtype ``t`` counts as in the promotion (refusing half and complex)."""
    if t.dtype in _REFUSED:
        raise ParameterError(
            f"{name} must be float32 or float64, got {_REFUSED[t.dtype]} (half precision is "
            "refused: cast it with .float() or .double())"
        )
    if t.is_complex():
        raise ParameterError(f"{name} must be real (float32 or float64), got {t.dtype}")
    if t.dtype in COMPUTE_DTYPES:
        return t.dtype
    return torch.float64  # integers and bools


def prepare_tensors(named: Mapping[str, object]) -> dict[str, Tensor | None]:
    """Detach the tensors of ``named``, promote them to one float dtype, check one device.

    ``None`` values pass through as ``None``; Python numbers are left to the caller (they are
    not in the result). The first tensor's device is the device of all.

    Returns
    -------
    dict of the tensors (and ``None`` values), all of the common dtype.
    """
    tensors: dict[str, Tensor] = {}
    out: dict[str, Tensor | None] = {}
    for name, value in named.items():
        if value is None:
            out[name] = None
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        ):
            continue
        else:
            tensors[name] = _as_tensor(value, name)
    if not tensors:
        return out
    kinds = [_float_kind(t, n) for n, t in tensors.items()]
    dtype = torch.float64 if torch.float64 in kinds else torch.float32
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t.device != first.device:
            raise ParameterError(
                f"{name} must be on the device of {first_name} ({first.device}), got {t.device}"
            )
        out[name] = t.detach().to(dtype)
    return out


def check_data_scale(X: Tensor, y: Tensor, **others: Tensor) -> None:
    """Refuse data whose Gram matrices overflow: ``max|X|, max|y| <= sqrt(max / (4 n d))``.

    ``max`` is the largest finite number of the dtype (1.8e308 for float64, 3.4e38 for
    float32); below the bound every entry of ``X^T X`` and ``X^T y`` is finite. ``others``
    (e.g. an initial estimate and the query) are held to the same bound, where their products
    with the data enter the computation.
    """
    n, d = int(X.shape[-2]), int(X.shape[-1])
    limit = math.sqrt(torch.finfo(X.dtype).max / (_GRAM_HEADROOM * max(1, n) * max(1, d)))
    for name, t in (("X", X), ("y", y), *others.items()):
        if t.numel() == 0:
            continue
        lo, hi = torch.aminmax(t)
        big = max(abs(float(lo)), abs(float(hi)))
        if big > limit:
            raise ParameterError(
                f"{name} has entries up to {big:.3g}; in {X.dtype} with n = {n}, d = {d} the "
                f"Gram matrices overflow beyond {limit:.3g}: rescale the data (and sigma)"
            )


def prepare_prompts(
    X: Tensor, y: Tensor, sigma: Sigma | None, **others: Tensor | None
) -> tuple[Tensor, Tensor, Sigma, dict[str, Tensor | None]]:
    """The boundary of an algorithm's entry point, once per call: :func:`prepare_tensors` on
    ``X``, ``y``, ``sigma`` and ``others``, then finite prompts of valid shapes
    (:func:`~iclkit.theory.mor.validate_prompts`) whose Gram matrices do not overflow
    (:func:`check_data_scale`).

    Returns
    -------
    X, y, sigma (the tensor, or the number as given), and the dict of all prepared tensors.
    """
    t = prepare_tensors({"X": X, "y": y, "sigma": sigma, **others})
    X, y = cast(Tensor, t["X"]), cast(Tensor, t["y"])
    validate_prompts(X, y)
    check_data_scale(X, y)
    sig = t.get("sigma")
    return X, y, cast(Sigma, sigma if sig is None else sig), t
