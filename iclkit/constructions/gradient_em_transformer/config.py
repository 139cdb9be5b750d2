"""The configuration of the Theorem 3.1 construction: the gradient-EM schedule it runs and the
accuracy of its E-step (arXiv 2410.14183, Theorem 3.1; design in ``docs/construction.md``).

:class:`ConstructionConfig` holds THE defaults: the builder, the runner and ``iclkit construct``
all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from iclkit.constructions.attention import AttentionPath
from iclkit.constructions.inputs import MAX_ITERATIONS
from iclkit.theory.validation import check_choice, check_int, check_positive, check_real

__all__ = [
    "DEFAULT_CONSTRUCTION",
    "MAX_R_RESIDUAL",
    "MIN_RELU_TERMS_GENERAL",
    "MIN_RELU_TERMS_SYMMETRIC",
    "Architecture",
    "ConstructionConfig",
    "InitMode",
    "Precision",
    "default_init_mode",
    "min_relu_terms",
]

#: "attention-only": every ReLU term of the E-step is one attention head (depth grows with M);
#: "attention-mlp": Bai et al. Def. 2.2 blocks, one per-token MLP evaluates each nonlinearity
#: (depth independent of M).
Architecture = Literal["attention-only", "attention-mlp"]
#: Floating-point type of the forward pass (weights and tokens).
Precision = Literal["float64", "float32"]

#: Fewest ReLU terms of the tanh sum of the symmetric E-step (``relu_approx.tanh_relu_sum``).
MIN_RELU_TERMS_SYMMETRIC = 3
#: Fewest ReLU terms of the interpolating sums of the general-K E-step (psi, softplus, exp).
MIN_RELU_TERMS_GENERAL = 4


#: Where the initial estimate comes from: the prompt file / caller ("given") or the prompt itself,
#: by the spectral-initialisation layers in front of the construction ("in-context").
InitMode = Literal["given", "in-context"]


def default_init_mode(
    has_initial_estimate: bool, architecture: Architecture, dtype: Precision
) -> InitMode:
    """The initialisation a caller without an explicit choice gets: "given" when an initial
    estimate is supplied, or when the requested form has no in-context initialisation layers
    (they exist for the attention-only float64 construction); else "in-context", which needs no
    oracle."""
    if has_initial_estimate or architecture != "attention-only" or dtype != "float64":
        return "given"
    return "in-context"


def min_relu_terms(symmetric: bool) -> int:
    """The fewest ReLU terms per nonlinearity the construction accepts."""
    return MIN_RELU_TERMS_SYMMETRIC if symmetric else MIN_RELU_TERMS_GENERAL


@dataclass(frozen=True)
class ConstructionConfig:
    """What the Theorem 3.1 transformer runs, and how accurately.

    Parameters
    ----------
    T_outer : int
        Gradient-EM iterations (>= 0).
    T_inner : int
        Gradient steps of size ``alpha`` per M-step (>= 1; 1 is Balakrishnan-Wainwright-Yu
        gradient EM).
    alpha : float
        M-step step size (> 0).
    relu_terms : int
        M, ReLU terms per nonlinearity (tanh; or psi, softplus, exp for general K). 32 puts the
        symmetric surrogate within ~4e-3 of exact gradient EM (``docs/construction.md``).
    symmetric : bool
        The tied two-component construction (K = 2, pi = 1/2) instead of the general-K one.
    R_residual : float
        General K: half-width of the domain where ``psi`` is fitted to ``t^2 / 2``, in units of
        sigma (linear beyond; the right component's residual lies inside 6 sigma with
        probability 1 - 2e-9).
    attention : "auto" or "dense"
        How the forward pass evaluates a head: "auto" evaluates the heads whose train tokens
        share the key or the query (every head of this construction) exactly in O(n D) and the
        others densely; "dense" uses the full n x n scores for every head. Same output to
        round-off (``docs/construction.md``, structured attention).
    architecture : "attention-only" or "attention-mlp"
        "attention-only": ReLU-attention layers of at most 4 heads, one head per ReLU term
        (layers per EM iteration grow like M / 4); "attention-mlp": blocks of attention (at most
        4 heads) then a per-token ReLU MLP of width ~M that evaluates each E-step nonlinearity
        at once (blocks per EM iteration independent of M). Same surrogate gradient EM.
    dtype : "float64" or "float32"
        Floating-point type of the forward pass (the surrogate and exact gradient EM it is
        compared with stay float64; ``docs/construction.md`` reports the float32 error).
    init : "given" or "in-context"
        "given": the initial estimate is an input (placed in the tokens); "in-context": it is
        computed from the prompt by spectral-initialisation layers in front of the construction
        (:mod:`iclkit.constructions.gradient_em_transformer.in_context`). The library's default
        stays "given"; ``iclkit construct`` picks "in-context" when it has no initial estimate.
    power_iterations : int
        ``init="in-context"``: power (subspace) iterations of the spectral initialisation (>= 0).
    """

    T_outer: int = 4
    T_inner: int = 1
    alpha: float = 1.0
    relu_terms: int = 32
    symmetric: bool = False
    R_residual: float = 6.0
    attention: AttentionPath = "auto"
    architecture: Architecture = "attention-only"
    dtype: Precision = "float64"
    init: InitMode = "given"
    power_iterations: int = 8

    def __post_init__(self) -> None:
        checked = {
            "T_outer": check_int(self.T_outer, "T_outer", minimum=0, maximum=MAX_ITERATIONS),
            "T_inner": check_int(self.T_inner, "T_inner", minimum=1, maximum=MAX_ITERATIONS),
            "alpha": check_positive(self.alpha, "alpha"),
            "relu_terms": check_int(
                self.relu_terms, "relu_terms", minimum=min_relu_terms(self.symmetric)
            ),
            "R_residual": check_real(
                self.R_residual,
                "R_residual",
                minimum=0.0,
                maximum=MAX_R_RESIDUAL,
                strict_minimum=True,
            ),
            "power_iterations": check_int(
                self.power_iterations, "power_iterations", minimum=0, maximum=MAX_ITERATIONS
            ),
        }
        check_choice(self.attention, "attention", get_args(AttentionPath))
        check_choice(self.architecture, "architecture", get_args(Architecture))
        check_choice(self.dtype, "dtype", get_args(Precision))
        check_choice(self.init, "init", get_args(InitMode))
        for name, value in checked.items():  # store the normalised int / float
            object.__setattr__(self, name, value)


#: Largest residual half-width (in units of sigma): residuals beyond 1e4 sigma have
#: likelihood exp(-5e7), and the ReLU fit of psi over a wider domain loses all precision.
MAX_R_RESIDUAL = 1e4

#: The defaults, as one object (for function signatures).
DEFAULT_CONSTRUCTION = ConstructionConfig()
