"""Benchmark: forward pass of the Theorem 3.1 transformer at B=16, n=1024, d=32, K=2.

Prints the achieved FLOP/s of the constructed forward (counting the score and value products
of every head with its own rank, ``AttentionLayer.flops``; ``ratio_performed`` also counts the
zero padding the stacked evaluation multiplies) as a ratio of the float64 matmul FLOP/s that torch
reaches on this machine in the same run (target >= 40%). Run:

    /work/venv/bin/python benchmarks/bench_construction.py [--B 16 --n 1024 --d 32 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from iclkit.constructions.gradient_em_transformer import build_gradient_em_transformer
from iclkit.theory.mor import MoRConfig, sample_mor


def matmul_flops_per_s(size: int = 1536, repeats: int = 5) -> float:
    """Best-of-``repeats`` float64 square matmul FLOP/s (2 size^3 per product)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g, dtype=torch.float64)
    b = torch.randn(size, size, generator=g, dtype=torch.float64)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--T-outer", type=int, default=2)
    p.add_argument("--T-inner", type=int, default=1)
    p.add_argument("--relu-terms", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    cfg = MoRConfig(d=args.d, K=2, n=args.n, sigma=0.1, symmetric=True, prior="sphere")
    batch = sample_mor(cfg, args.B, seed=0)
    init = batch.betas + 0.1 * torch.randn(batch.betas.shape, dtype=torch.float64)
    tf = build_gradient_em_transformer(
        args.d, 2, args.n, 0.1, args.T_outer, args.T_inner, 1.0, args.relu_terms
    )
    H = tf.embed(batch.X_train, batch.y_train, init, batch.x_query)
    N = args.n + 1
    flops = tf.model.flops(args.B, N)  # each head's own score and value products
    flops_performed = tf.model.flops(args.B, N, performed=True)  # incl. zero padding
    peak = matmul_flops_per_s()
    tf.model(H)  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tf.model(H)
        best = min(best, time.perf_counter() - t0)
    achieved = flops / best
    peak_after = matmul_flops_per_s()
    peak = max(peak, peak_after)
    print(
        json.dumps(
            {
                "B": args.B,
                "n": args.n,
                "d": args.d,
                "K": 2,
                "layers": tf.report.L,
                "heads_per_layer": sorted(set(tf.report.heads_per_layer)),
                "max_heads_per_layer": tf.report.max_heads_per_layer,
                "total_heads": sum(tf.report.heads_per_layer),
                "flops": flops,
                "flops_performed": flops_performed,
                "forward_seconds": best,
                "achieved_gflops": achieved / 1e9,
                "matmul_gflops": peak / 1e9,
                "ratio": achieved / peak,
                "ratio_performed": flops_performed / best / peak,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
