"""Training-step time of iclkit's GPT-2-style decoder vs Hugging Face ``transformers``' GPT2Model.

Both models get the same size (D, layers, heads), the same batch of interleaved MoR prompts
(2n + 1 tokens), the same linear read-in/read-out, no dropout, and the same AdamW step; the
script prints the median step time of each and the ratio ours / HF (target: <= 1, ours not
slower). It also prints the ReLU-attention encoder's step time for reference.

Needs the ``benchmark`` extra:  pip install 'iclkit[benchmark]'   (or: pip install transformers)

Run:  python benchmarks/bench_train_step.py [--D 64] [--layers 3] [--heads 4] [--n 20]
      [--batch-size 64] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from iclkit.experiments.models import ModelConfig, build_model
from iclkit.theory.mor import MoRConfig, fresh_batch

#: Untimed steps before timing (allocator and kernel caches warm up).
WARMUP_STEPS = 5
#: Timed rounds per model, interleaved; the best of their medians is reported.
ROUNDS = 3
#: Learning rate of the timed AdamW steps (any small value: only the time is measured).
LR = 1e-4


def _time_steps(step: object, steps: int, warmup: int = WARMUP_STEPS) -> float:
    for _ in range(warmup):
        step()  # type: ignore[operator]
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _HFWrapped(nn.Module):
    """HF GPT2Model with the same read-in / read-out as iclkit's decoder."""

    def __init__(self, d: int, n: int, D: int, layers: int, heads: int) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        cfg = GPT2Config(
            vocab_size=1,  # inputs_embeds only: no unused 50257-row token table
            bos_token_id=None,
            eos_token_id=None,
            n_positions=2 * n + 1,
            n_embd=D,
            n_layer=layers,
            n_head=heads,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
        )
        self.read_in = nn.Linear(d + 1, D)
        self.gpt2 = GPT2Model(cfg)
        self.read_out = nn.Linear(D, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.gpt2(inputs_embeds=self.read_in(tokens)).last_hidden_state
        return self.read_out(h[:, 0::2])[..., 0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--D", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", "--batch", dest="batch_size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    try:
        import transformers
    except ImportError:
        print(
            "bench_train_step needs Hugging Face transformers, which is not installed.\n"
            "Install the benchmark extra:  pip install 'iclkit[benchmark]'\n"
            "(or just:  pip install transformers)",
            file=sys.stderr,
        )
        return 1
    torch.set_num_threads(a.threads)
    batch = fresh_batch(
        MoRConfig(d=a.d, K=2, n=a.n), a.batch_size, seed=0, step=0, dtype=torch.float32
    )
    X, y = batch.X, batch.y
    N = a.n + 1
    tokens = torch.zeros(a.batch_size, 2 * N - 1, a.d + 1)
    tokens[:, 0::2, : a.d] = X
    tokens[:, 1::2, a.d] = y[:, : N - 1]

    ours = build_model(ModelConfig(d=a.d, max_n=a.n, D=a.D, layers=a.layers, heads=a.heads))
    hf = _HFWrapped(a.d, a.n, a.D, a.layers, a.heads)
    enc = build_model(
        ModelConfig(d=a.d, max_n=a.n, D=a.D, layers=a.layers, heads=a.heads, arch="relu_encoder")
    )

    def stepper(model: nn.Module, call: object) -> object:
        opt = torch.optim.AdamW(model.parameters(), lr=LR)

        def step() -> None:
            pred = call()  # type: ignore[operator]
            loss = ((pred[:, 1:] - y[:, 1:]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    n_ours = sum(p.numel() for p in ours.parameters())
    n_hf = sum(p.numel() for p in hf.parameters())
    # interleave the measurements so that load from other processes hits both alike
    t_ours, t_hf = [], []
    for _ in range(ROUNDS):
        t_ours.append(_time_steps(stepper(ours, lambda: ours(X, y)), a.steps))
        t_hf.append(_time_steps(stepper(hf, lambda: hf(tokens)), a.steps))
    t_enc = _time_steps(stepper(enc, lambda: enc(X, y)), a.steps)
    mo, mh = min(t_ours), min(t_hf)
    attn = getattr(hf.gpt2.config, "_attn_implementation", "?")
    print(
        f"size: D={a.D} layers={a.layers} heads={a.heads}, batch {a.batch_size} prompts x "
        f"{2 * N - 1} tokens (n={a.n}, d={a.d}), torch threads {a.threads}, torch "
        f"{torch.__version__}, transformers {transformers.__version__} (attention: {attn})"
    )
    print(f"parameters: iclkit {n_ours}, HF {n_hf} (HF: vocab_size=1, the token table is unused)")
    print(f"iclkit GPT-2 decoder : {1e3 * mo:8.2f} ms/step (best of {ROUNDS} medians)")
    print(f"HF GPT2Model         : {1e3 * mh:8.2f} ms/step")
    print(f"ratio iclkit / HF    : {mo / mh:8.3f}  (target <= 1: ours not slower)")
    print(f"iclkit ReLU encoder  : {1e3 * t_enc:8.2f} ms/step (2n+1 tokens as well)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
