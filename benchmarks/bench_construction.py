"""Benchmark: forward pass of the Theorem 3.1 transformer, structured (auto) vs dense attention.

Setting: B = 16 prompts, d = 8, K = 2 (symmetric construction), 4 gradient-EM iterations of one
step, M = 64 ReLU terms (73 layers, 4 heads each but the read-out's 2). Measured in one run:

- auto vs dense on the first ``--dense-layers`` layers at n = 1,000 and 4,000 (the speed-up;
  the dense path costs O(n^2) per head, so the whole dense forward at n = 4,000 would take
  minutes on 2 cores: every layer of this construction costs about the same, so the first
  layers are representative);
- the whole auto forward at n = 1,000, 4,000, 10^4 and 10^5 (seconds, and seconds per token:
  flat when the cost grows linearly in n);
- the attention + MLP architecture (``architecture="attention-mlp"``, the same surrogate in
  9 blocks instead of 73 layers) at the same n, auto path (seconds, and the ratio to the
  attention-only forward measured just before);
- the dense path's FLOP/s (score and value products of every head with its own rank,
  ``AttentionLayer.flops``; ``performed=True``: values over the layer's written coordinates)
  against the bare batched score product ``torch.bmm((B, n+1, d+1), (B, d+1, n+1))`` at the same n (the
  heads' score products have this shape, rank d + 1, but for a few rank-1 heads), written into
  one reused (B, n+1, n+1) buffer: ``dense_over_bare_bmm``. Since that product is bound by
  writing its n^2 outputs to memory, the same product is also timed written block by block
  into a reused buffer of the dense path's block size (it stays in cache):
  ``dense_over_blocked_bmm``, the stricter reference.

Run (single-threaded by default: on a loaded 2-core machine two OpenMP threads were 2-4x slower):

    python benchmarks/bench_construction.py [--threads 1 --repeats 2 --dense-layers 6]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from iclkit.constructions.attention import DEFAULT_CHUNK_BYTES, AttentionTransformer, _ranks
from iclkit.constructions.gradient_em_transformer import (
    Architecture,
    AttentionMLPTransformer,
    build_gradient_em_transformer,
)
from iclkit.theory.mor import MoRConfig, sample_mor

B, D_X, T_OUTER, M, SIGMA = 16, 8, 4, 64, 0.1
COMPARED_NS = (1_000, 4_000)
AUTO_NS = (1_000, 4_000, 10_000, 100_000)


Clock = Callable[[], float]


def best_seconds(f: Callable[[], object], repeats: int, clock: Clock) -> float:
    """Best time of ``repeats`` calls (after one warm-up call) on ``clock``."""
    f()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        f()
        best = min(best, clock() - t0)
    return best


def bmm_flops_per_s(n: int, repeats: int, clock: Clock) -> float:
    """FLOP/s of the bare score product (B, n+1, d+1) x (B, d+1, n+1), into a reused buffer."""
    g = torch.Generator().manual_seed(0)
    N = n + 1
    a = torch.randn(B, N, D_X + 1, generator=g, dtype=torch.float64)
    b = torch.randn(B, D_X + 1, N, generator=g, dtype=torch.float64)
    out = torch.empty(B, N, N, dtype=torch.float64)
    sec = best_seconds(lambda: torch.bmm(a, b, out=out), repeats, clock)
    return 2 * B * N * N * (D_X + 1) / sec


def blocked_bmm_flops_per_s(n: int, repeats: int, clock: Clock) -> float:
    """FLOP/s of the same product, one prompt and ``DEFAULT_CHUNK_BYTES`` of rows at a time."""
    g = torch.Generator().manual_seed(0)
    N = n + 1
    a = torch.randn(B, N, D_X + 1, generator=g, dtype=torch.float64)
    b = torch.randn(B, D_X + 1, N, generator=g, dtype=torch.float64)
    rows = max(1, min(N, DEFAULT_CHUNK_BYTES // (N * 8)))
    buf = torch.empty(rows * N, dtype=torch.float64)

    def run() -> None:
        for p in range(B):
            for s0 in range(0, N, rows):
                s1 = min(N, s0 + rows)
                torch.mm(a[p, s0:s1], b[p], out=buf[: (s1 - s0) * N].view(s1 - s0, N))

    sec = best_seconds(run, repeats, clock)
    return 2 * B * N * N * (D_X + 1) / sec


def score_product_seconds(n: int, rank: int, repeats: int, clock: Clock) -> float:
    """Best time of one head's bare score product ``(B, n+1, rank) x (B, rank, n+1)`` into a
    reused ``(B, n+1, n+1)`` buffer: bmm, or for rank 1 the faster of bmm and the broadcast
    outer product (the achievable limit for that shape)."""
    g = torch.Generator().manual_seed(0)
    N = n + 1
    a = torch.randn(B, N, rank, generator=g, dtype=torch.float64)
    b = torch.randn(B, rank, N, generator=g, dtype=torch.float64)
    out = torch.empty(B, N, N, dtype=torch.float64)
    sec = best_seconds(lambda: torch.bmm(a, b, out=out), repeats, clock)
    if rank == 1:
        sec = min(sec, best_seconds(lambda: torch.mul(a, b, out=out), repeats, clock))
    return sec


def dense_per_layer(
    model: AttentionTransformer, H: torch.Tensor, n: int, layers: int, repeats: int, clock: Clock
) -> list[dict[str, object]]:
    """Each of the first ``layers`` layers alone on its own input, dense path, against the bare
    score products of the same shapes (every head at its own rank) measured in the same loop:
    ``dense_over_same_shape`` = (dense FLOP/s) / (reference FLOP/s)."""
    states = AttentionTransformer(list(model.attention_layers[:layers]), t_slot=model.t_slot)
    inputs = states.hidden_states(H)[:layers]
    key_mask = H[..., model.t_slot]
    N = n + 1
    best: dict[str, float] = {}
    ranks: list[list[int]] = []
    for layer in model.attention_layers[:layers]:
        ranks.append([int(r) for r in _ranks(layer.packed)])
    for _ in range(repeats):  # interleaved, so that a load spike hits both sides alike
        for i, layer in enumerate(model.attention_layers[:layers]):
            t0 = clock()
            layer(inputs[i], key_mask, path="dense")
            best[f"dense{i}"] = min(best.get(f"dense{i}", float("inf")), clock() - t0)
        for rank in sorted({r for rs in ranks for r in rs}):
            sec = score_product_seconds(n, rank, 1, clock)
            best[f"bmm{rank}"] = min(best.get(f"bmm{rank}", float("inf")), sec)
    rows = []
    for i, layer in enumerate(model.attention_layers[:layers]):
        flops = layer.flops(B, N)
        ref_flops = sum(2 * B * N * N * r for r in ranks[i])
        ref_sec = sum(best[f"bmm{r}"] for r in ranks[i])
        dense = best[f"dense{i}"]
        rows.append({
            "layer": i, "ranks": ranks[i], "dense_seconds": dense, "reference_seconds": ref_sec,
            "dense_gflops": flops / dense / 1e9, "reference_gflops": ref_flops / ref_sec / 1e9,
            "dense_over_same_shape": (flops / dense) / (ref_flops / ref_sec),
            "ns_per_score_entry": dense / (B * N * N * len(ranks[i])) * 1e9,
        })  # fmt: skip
    return rows


def tokens(
    n: int, architecture: Architecture = "attention-only"
) -> tuple[AttentionTransformer | AttentionMLPTransformer, torch.Tensor]:
    """The construction and its input tokens (B, n + 1, D) on sampled prompts."""
    cfg = MoRConfig(d=D_X, K=2, n=n, sigma=SIGMA, symmetric=True, prior="sphere")
    batch = sample_mor(cfg, B, seed=0)
    g = torch.Generator().manual_seed(1)
    init = batch.betas + 0.1 * torch.randn(batch.betas.shape, generator=g, dtype=torch.float64)
    tf = build_gradient_em_transformer(
        D_X, 2, n, SIGMA, T_OUTER, 1, 1.0, M, symmetric=True, architecture=architecture
    )
    return tf.model, tf.embed(batch.X_train, batch.y_train, init, batch.x_query)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dense-layers", type=int, default=6)
    p.add_argument("--max-n", type=int, default=AUTO_NS[-1])
    p.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu",
        help="cpu: this process's CPU time (single-threaded, so a shared, loaded machine does "
        "not inflate it by descheduling); wall: elapsed time",
    )  # fmt: skip
    args = p.parse_args()
    clock: Clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    rows = []
    for n in sorted(set(COMPARED_NS) | set(AUTO_NS)):
        if n > args.max_n:
            continue
        model, H = tokens(n)
        row: dict[str, object] = {"n": n, "layers": model.L}
        reps = args.repeats if n <= 10_000 else 1
        row["auto_seconds"] = best_seconds(lambda m=model, h=H: m(h, path="auto"), reps, clock)
        row["auto_microseconds_per_token"] = row["auto_seconds"] / (B * (n + 1)) * 1e6
        mlp, H_mlp = tokens(n, "attention-mlp")
        row["mlp_blocks"] = mlp.L
        row["mlp_auto_seconds"] = best_seconds(
            lambda m=mlp, h=H_mlp: m(h, path="auto"), reps, clock
        )
        row["mlp_over_attention_only"] = row["mlp_auto_seconds"] / row["auto_seconds"]
        if n in COMPARED_NS:
            assert isinstance(model, AttentionTransformer)
            k = args.dense_layers
            head = AttentionTransformer(list(model.attention_layers[:k]), t_slot=model.t_slot)
            dense = best_seconds(lambda m=head, h=H: m(h, path="dense"), 1, clock)
            auto = best_seconds(lambda m=head, h=H: m(h, path="auto"), args.repeats, clock)
            flops = head.flops(B, n + 1)
            limit = bmm_flops_per_s(n, args.repeats, clock)
            blocked = blocked_bmm_flops_per_s(n, args.repeats, clock)
            row |= {
                "first_layers": k,
                "first_layers_dense_seconds": dense,
                "first_layers_auto_seconds": auto,
                "speedup": dense / auto,
                "dense_gflops": flops / dense / 1e9,
                "bare_bmm_gflops": limit / 1e9,
                "dense_over_bare_bmm": flops / dense / limit,
                "dense_performed_gflops": head.flops(B, n + 1, performed=True) / dense / 1e9,
                "blocked_bmm_gflops": blocked / 1e9,
                "dense_over_blocked_bmm": flops / dense / blocked,
            }
            per_layer = dense_per_layer(model, H, n, k, args.repeats + 1, clock)
            full_rank = [r for r in per_layer if set(r["ranks"]) == {D_X + 1}]  # type: ignore[arg-type]
            row["per_layer"] = per_layer
            row["dense_over_same_shape_all"] = sum(
                float(r["dense_over_same_shape"])
                for r in per_layer  # type: ignore[arg-type]
            ) / len(per_layer)
            if full_rank:
                row["dense_over_bmm_rank_d_plus_1_layers"] = sum(
                    float(r["dense_over_same_shape"])
                    for r in full_rank  # type: ignore[arg-type]
                ) / len(full_rank)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"B": B, "d": D_X, "K": 2, "T_outer": T_OUTER, "M": M,
                      "threads": torch.get_num_threads(), "clock": args.clock, "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
