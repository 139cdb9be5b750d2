"""Measurement: the Bayes-optimal predictor's excess risk over the oracle vs the prompt length,
and the agreement of collapsed Gibbs with exact enumeration.

Setting: K = 2, d = 3, fixed sigma (the model in which the predictor is exactly Bayes-optimal),
``beta_k ~ N(0, I)``, uniform pi; the same held-out prompts at every prompt length m
(predictions at position m use the first m examples). Ridge (``lam = sigma^2``, the posterior
mean of a single Gaussian component) and OLS are printed beside it for scale.

Run: ``python benchmarks/bench_bayes_optimal.py [--prompts 500] [--sigma 0.3]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from iclkit.constructions.bayes_optimal import (
    BayesOptimalPredictor,
    enumerate_posterior_mean,
    gibbs_posterior_mean,
)
from iclkit.constructions.predictors import OLSPredictor, OraclePredictor, RidgePredictor
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import make_generator


def risk_table(prompts: int, sigma: float, positions: list[int]) -> None:
    data = MoRConfig(d=3, K=2, n=max(positions), sigma=sigma)
    batch = sample_mor(data, prompts, seed=0)
    oracle = OraclePredictor()(batch, positions)
    bayes = BayesOptimalPredictor.for_data(data, max_assignments=4096, seed=1)
    t0 = time.perf_counter()
    pred, mc_se = bayes.with_error(batch, positions)
    seconds = time.perf_counter() - t0
    others = {"ridge": RidgePredictor()(batch, positions), "ols": OLSPredictor()(batch, positions)}
    print(f"K=2 d=3 sigma={sigma} prompts={prompts} ({seconds:.1f} s for the Bayes column)")
    print("| m | method | Bayes-optimal excess risk | se | ridge | ols |")
    print("| --- | --- | --- | --- | --- | --- |")
    for j, m in enumerate(positions):
        gap = (pred[:, j] - oracle[:, j]) ** 2
        se = float(gap.std() / prompts**0.5)
        method = "enumerate" if 2**m <= 4096 else "gibbs"
        cells = [f"{float(((v[:, j] - oracle[:, j]) ** 2).mean()):.4f}" for v in others.values()]
        extra = f" (max MC se {float(mc_se[:, j].max()):.1e})" if method == "gibbs" else ""
        print(
            f"| {m} | {method}{extra} | {float(gap.mean()):.4f} | {se:.4f} | {' | '.join(cells)} |"
        )


def agreement(prompts: int, sigma: float, m: int) -> None:
    batch = sample_mor(MoRConfig(d=3, K=2, n=m, sigma=sigma), prompts, seed=2)
    args = (batch.X[:, :m], batch.y[:, :m], batch.sigma, batch.pi)
    t0 = time.perf_counter()
    exact = enumerate_posterior_mean(*args).predict(batch.X[:, m])[0]
    t_enum = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = gibbs_posterior_mean(*args, sweeps=200, burn_in=50, chains=8, generator=make_generator(3))
    t_gibbs = time.perf_counter() - t0
    mean, se = g.predict(batch.X[:, m])
    z = (mean - exact) / se
    print(
        f"sigma={sigma} m={m} prompts={prompts}: max |gibbs - exact| {float((mean - exact).abs().max()):.2e}, "
        f"median se {float(se.median()):.2e}, mean z^2 {float((z**2).mean()):.2f}, "
        f"max |z| {float(z.abs().max()):.2f}; enumeration {t_enum:.2f} s, Gibbs {t_gibbs:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=500)
    ap.add_argument("--sigma", type=float, default=0.3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    risk_table(args.prompts, args.sigma, [1, 2, 4, 8, 12, 20, 40])
    for s in (0.5, 0.3, 0.15):
        agreement(64, s, 12)


if __name__ == "__main__":
    main()
