"""Success rate of gradient EM from the in-context spectral initialisation (docs/construction.md,
"Initialising in context").

For each (snr, n/d) of a grid, B prompts of the symmetric two-component model (d = 5), of the
general K = 2 model (the first-moment-corrected start next to the old span-only start ``s u_k``;
pi uniform and (0.7, 0.3)) and, at the end, of K = 3: the surrogate the in-context construction equals to round-off (spectral init with
the construction's ReLU sums, then surrogate gradient EM) is run next to the same surrogate EM
from the true parameters (oracle start). A prompt succeeds when its error is within 2x of the
oracle-start error (symmetric: parameter error up to sign; general K = 2: parameter error up
to the label permutation; K = 3: prediction error
``||sum_k pi_k (beta_hat_k - beta_k)||``, what the read-out predicts with).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/spectral_init_success.py
"""

from __future__ import annotations

import torch

from iclkit.constructions.gradient_em_transformer.nonlinearities import general_relu_sums
from iclkit.constructions.relu_approx import tanh_relu_sum
from iclkit.constructions.spectral_init import (
    spectral_functions,
    spectral_init,
    spectral_init_k2,
    spectral_relu_sums,
)
from iclkit.constructions.surrogate_em import (
    EStepFunctions,
    general_surrogate_iterates,
    symmetric_surrogate_iterates,
)
from iclkit.theory.metrics import parameter_error
from iclkit.theory.mor import MoRConfig, sample_mor

D, B, T_POWER, M = 5, 64, 8, 32


def symmetric(snr: float, ratio: int, T_outer: int, seed: int = 0) -> tuple[float, float, float]:
    b = sample_mor(MoRConfig(d=D, K=2, n=ratio * D, snr=snr, symmetric=True), B, seed=seed)
    X, y = b.X_train, b.y_train
    fns = spectral_functions(spectral_relu_sums())
    init = spectral_init(X, y, b.sigma, 1, fns, T_power=T_POWER).init[:, 0]
    f = tanh_relu_sum(M)

    def em(start: torch.Tensor) -> torch.Tensor:
        it = symmetric_surrogate_iterates(
            X, y, start, b.sigma, f, T_outer=T_outer, T_inner=1, alpha=1.0
        )[-1][-1]
        return torch.stack([it, -it], 1)

    e = parameter_error(em(init), b.betas)
    e0 = parameter_error(em(b.betas[:, 0]), b.betas)
    return float((e <= 2 * e0).double().mean()), float(e.median()), float(e0.median())


def general(K: int, snr: float, n: int, T_outer: int, seed: int = 0) -> tuple[float, float, float]:
    b = sample_mor(MoRConfig(d=D, K=K, n=n, snr=snr), B, seed=seed)
    X, y = b.X_train, b.y_train
    init = spectral_init(
        X, y, b.sigma, K, spectral_functions(spectral_relu_sums()), T_power=T_POWER
    ).init
    s = general_relu_sums(M)
    fns = EStepFunctions(s["psi"], s["softplus"], s["exp"])
    pi = tuple(float(p) for p in b.pi[0])

    def w_err(start: torch.Tensor) -> torch.Tensor:
        it = general_surrogate_iterates(
            X, y, start, b.sigma, pi, fns, T_outer=T_outer, T_inner=1, alpha=1.0
        )[-1][-1]
        return torch.linalg.vector_norm(torch.einsum("bk,bkd->bd", b.pi, it - b.betas), dim=-1)

    e, e0 = w_err(init), w_err(b.betas)
    return float((e <= 2 * e0).double().mean()), float(e.median()), float(e0.median())


def general_k2(
    snr: float, ratio: int, T_outer: int, pi: tuple[float, float], seed: int = 0
) -> dict[str, float]:
    """General K = 2: success of the corrected start and of the old ``s u_k`` start, their
    median start / final errors, and the fraction of prompts whose start has
    ``<beta_1^(0) - beta_2^(0), delta> < 0`` (mislabelled when pi_1 != pi_2, a label swap else)."""
    b = sample_mor(MoRConfig(d=D, K=2, n=ratio * D, snr=snr, pi=pi), B, seed=seed)
    X, y = b.X_train, b.y_train
    sfn = spectral_functions(spectral_relu_sums())
    new = spectral_init_k2(X, y, b.sigma, pi, sfn, T_power=T_POWER)
    old = spectral_init(X, y, b.sigma, 2, sfn, T_power=T_POWER).init
    s = general_relu_sums(M)
    fns = EStepFunctions(s["psi"], s["softplus"], s["exp"])

    def em(start: torch.Tensor) -> torch.Tensor:
        it = general_surrogate_iterates(
            X, y, start, b.sigma, pi, fns, T_outer=T_outer, T_inner=1, alpha=1.0
        )[-1][-1]
        return parameter_error(it, b.betas)

    e0 = em(b.betas)
    e_new, e_old = em(new.init), em(old)
    delta = b.betas[:, 0] - b.betas[:, 1]
    flipped = ((new.init[:, 0] - new.init[:, 1]) * delta).sum(-1) < 0
    return {
        "success": float((e_new <= 2 * e0).double().mean()),
        "success_old": float((e_old <= 2 * e0).double().mean()),
        "start_err": float(parameter_error(new.init, b.betas).median()),
        "start_err_old": float(parameter_error(old, b.betas).median()),
        "err": float(e_new.median()),
        "err_old": float(e_old.median()),
        "err_oracle": float(e0.median()),
        "flipped": float(flipped.double().mean()),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("symmetric K = 2, d = 5, B = 64, T_power = 8, M = 32, T_outer = 10, alpha = 1")
    print("snr  n/d  success  median_err  median_oracle_start_err")
    for snr in (1.0, 2.0, 4.0, 10.0):
        for ratio in (4, 10, 40, 400):
            s, e, e0 = symmetric(snr, ratio, 10)
            print(f"{snr:4g} {ratio:4d} {s:8.3f} {e:11.4f} {e0:11.4f}")
    print("general K = 2, d = 5, B = 64, T_power = 8, M = 32, T_outer = 10, alpha = 1")
    print("pi        snr  n/d  success (old)  med start err (old)  med err (old)  oracle  flipped")
    for pi in ((0.5, 0.5), (0.7, 0.3)):
        for snr in (2.0, 10.0):
            for ratio in (10, 40, 400):
                r = general_k2(snr, ratio, 10, pi)
                print(
                    f"{pi[0]:.1f}/{pi[1]:.1f} {snr:4g} {ratio:4d} {r['success']:6.3f} "
                    f"({r['success_old']:.3f}) {r['start_err']:8.4f} ({r['start_err_old']:.4f}) "
                    f"{r['err']:8.4f} ({r['err_old']:.4f}) {r['err_oracle']:7.4f} {r['flipped']:5.2f}"
                )
    print("general K = 3, d = 5, n = 2000, B = 64, pi uniform, T_power = 8, M = 32, alpha = 1")
    print("snr  T_outer  success  median_err  median_oracle_start_err")
    for snr in (4.0, 10.0):
        for T in (4, 20, 60):
            s, e, e0 = general(3, snr, 2000, T)
            print(f"{snr:4g} {T:8d} {s:8.3f} {e:11.4f} {e0:11.4f}")
