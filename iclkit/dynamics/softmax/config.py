"""One GD run of softmax attention as one validated object: :class:`SoftmaxConfig`.

GD ``Q(t+1) = Q(t) - eta grad L(Q(t))`` on the loss of Huang, Cheng, Liang (arXiv 2310.05249)
for the feature data of :class:`~iclkit.theory.features.FeatureConfig`, with the simulator, the
horizon and the stopping rule. :func:`default_horizon` is the horizon used when only the target
loss is given (also the default of ``iclkit dynamics softmax``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from iclkit.theory.features import FeatureConfig
from iclkit.theory.validation import (
    ParameterError,
    check_bool,
    check_choice,
    check_int,
    check_memory,
    check_positive,
    check_real,
    check_seed,
)

from .population import DEFAULT_MAX_TERMS, DEFAULT_TAIL_MASS

__all__ = [
    "DEFAULT_STEPS",
    "HORIZON_TAIL_FACTOR",
    "METHODS",
    "Init",
    "Method",
    "SoftmaxConfig",
    "default_horizon",
]

Method = Literal["exact", "mean-field", "monte-carlo"]
Init = Literal["zero", "random"]

#: The simulators (see :mod:`.methods`).
METHODS: tuple[Method, ...] = ("exact", "mean-field", "monte-carlo")

#: GD steps when neither a horizon nor a target loss is given.
DEFAULT_STEPS = 100_000

#: Upper limit of ``steps`` (a typo guard: 10^9 steps take days).
MAX_STEPS = 10**9

#: Longest prompt the simulators take: the exact count tables index prompts with int64, the
#: monte-carlo prompts are allocated; beyond 2**40 tokens neither is meaningful (a typo guard).
MAX_N = 2**40

#: Arrays of the monte-carlo batch's size (B, N + 1, d + 2) alive at once: the prompts and
#: labels, their feature indices, the attention's scores and weights and autograd's copies of
#: them (counted as six: a lower bound, the estimate refuses only what cannot fit).
MC_COPIES = 6

#: Most torch intra-op threads a run may ask for (a typo guard; torch takes a C int).
MAX_THREADS = 4096

#: ``max_time / eta`` within this of an integer counts as that integer (round-off in the ratio).
_CEIL_SLACK = 1e-9

#: Multiple of ``1/(p_min eps)`` in :func:`default_horizon`: twice the 4x margin of
#: :func:`.scaling.phase_time_scaling` (whose sweeps are costly), so that a single run is sure
#: to reach eps.
HORIZON_TAIL_FACTOR = 2.0


def default_horizon(p_min: float, eps: float, *, tail_factor: float = HORIZON_TAIL_FACTOR) -> float:
    """Horizon ``4 / p_min^2 + tail_factor / (p_min eps)`` (units of eta * t) for GD to reach eps.

    Why: the least likely feature (probability ``p_min``, the slowest query type) reaches
    ``Attn_k = 1/2`` at eta t ~ ``1 / p_min^2`` (the K^2 law of phase I for balanced data, with a
    4x margin), and its loss then decays like ``1 / (4 p_min eta t)`` (the last phase's 1/t
    law), which is below eps after ``1 / (4 p_min eps)``; ``tail_factor = 1`` leaves a 4x margin
    on that, the default 2 an 8x margin.

    Parameters
    ----------
    p_min : float
        Smallest feature probability, in (0, 1].
    eps : float
        Target loss (> 0).
    tail_factor : float
        Multiple of ``1 / (p_min eps)`` (> 0).
    """
    p_min = check_real(p_min, "p_min", minimum=0.0, strict_minimum=True, maximum=1.0)
    eps = check_positive(eps, "eps")
    return 4.0 / p_min**2 + check_positive(tail_factor, "tail_factor") / (p_min * eps)


@dataclass(frozen=True)
class SoftmaxConfig:
    """Validated configuration of one GD run.

    Parameters
    ----------
    features : FeatureConfig
        Data model (K, N, d, p).
    eta : float
        GD step size (> 0).
    method : {"exact", "mean-field", "monte-carlo"}
        Simulator (see the module docstring).
    steps : int or None
        Number of GD steps; default ``ceil(max_time / eta)``.
    max_time : float or None
        Horizon in units of eta * t (alternative to ``steps``). When neither is given:
        :func:`default_horizon` of ``stop_loss`` if that is given, else :data:`DEFAULT_STEPS`.
    stop_loss : float or None
        Stop early once the loss of every query type is <= stop_loss (checked on the record grid).
    include_query_in_softmax : bool
        Normalise the attention over the query token too ([RECON] ambiguity, see :mod:`.model`).
    init : {"zero", "random"}
        ``Q(0) = 0`` (default, [RECON]) or ``Q(0) = init_scale * G``, G with i.i.d. N(0, 1) entries.
    init_scale : float
        Scale of the random initialisation.
    batch_size : int
        Prompts per step (monte-carlo).
    resample : bool
        Fresh prompts every step (True) or one fixed pool for all steps (common random numbers).
    seed : int
        Seeds the feature basis, the initialisation and the prompts (derived streams).
    record_resolution : int
        Record every step up to this many steps, then with relative spacing 1/record_resolution.
    store_Z : bool
        Keep Z at every record (memory K^2 per record).
    tail_mass, max_terms
        Exact count sums: probability mass that may be dropped, and the size limit.
    torch_threads : int or None
        torch intra-op threads during a monte-carlo run (restored afterwards; None leaves the
        setting alone). The per-step tensors are small, so one thread is fastest, and much
        faster than several on a loaded machine.
    """

    features: FeatureConfig
    eta: float = 1.0
    method: Method = "exact"
    steps: int | None = None
    max_time: float | None = None
    stop_loss: float | None = None
    include_query_in_softmax: bool = False
    init: Init = "zero"
    init_scale: float = 0.01
    batch_size: int = 1024
    resample: bool = True
    seed: int = 0
    record_resolution: int = 1000
    store_Z: bool = False
    tail_mass: float = DEFAULT_TAIL_MASS
    max_terms: int = DEFAULT_MAX_TERMS
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureConfig):
            raise ParameterError(f"features must be a FeatureConfig, got {self.features!r}")
        check_int(self.features.N, "N", maximum=MAX_N)
        eta = check_positive(self.eta, "eta")
        check_choice(self.method, "method", METHODS)
        check_choice(self.init, "init", ("zero", "random"))
        for flag in ("include_query_in_softmax", "resample", "store_Z"):
            check_bool(getattr(self, flag), flag)
        if self.steps is not None and self.max_time is not None:
            raise ParameterError("steps and max_time: give at most one of them")
        if self.stop_loss is not None:
            check_positive(self.stop_loss, "stop_loss")
        max_time = self.max_time
        if max_time is None and self.steps is None and self.stop_loss is not None:
            max_time = default_horizon(float(self.features.probabilities.min()), self.stop_loss)
        if max_time is not None:
            mt = check_positive(max_time, "max_time")
            object.__setattr__(self, "steps", max(1, math.ceil(mt / eta - _CEIL_SLACK)))
        elif self.steps is None:
            object.__setattr__(self, "steps", DEFAULT_STEPS)
        # counts are stored as Python ints (3.0 and np.int64(3) become 3)
        object.__setattr__(
            self, "steps", check_int(self.steps, "steps", minimum=1, maximum=MAX_STEPS)
        )
        check_real(self.init_scale, "init_scale", minimum=0.0)
        check_seed(self.seed, "seed")
        for name, minimum in (("batch_size", 2), ("record_resolution", 1), ("max_terms", 1)):
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum=minimum))
        check_real(self.tail_mass, "tail_mass", minimum=0.0, maximum=1e-6)
        if self.method == "monte-carlo":
            fc = self.features
            need = MC_COPIES * 8 * self.batch_size * (fc.N + 1) * (int(fc.d or fc.K) + 2)
            name = "batch_size" if self.batch_size >= fc.N else "N"
            check_memory(
                float(need), name, f"{self.batch_size} prompts of N + 1 = {fc.N + 1} tokens"
            )
        if self.torch_threads is not None:
            object.__setattr__(
                self,
                "torch_threads",
                check_int(self.torch_threads, "torch_threads", minimum=1, maximum=MAX_THREADS),
            )

    @property
    def horizon(self) -> float:
        """Planned horizon in units of eta * t."""
        return float(self.eta) * int(self.steps or 0)
