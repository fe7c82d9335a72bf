"""Print CPU figures for the model (issue #2): training step time and sizes (inference latency:
``python deploy/benchmark.py``).

    python scripts/benchmark_model.py [--config configs/tiny.yaml] [--batch 8] [--repeats 10]

Timings are medians over ``--repeats`` runs after one warm-up, on whatever device is free
(CPU here). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from a1.config import policy_config
from a1.model.policy import InternVLAA1, joint_loss
from a1.model.summary import summarize
from a1.testing import random_batch


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = policy_config(args.config)
    model = InternVLAA1(cfg)
    print(f"config {args.config}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"{torch.get_num_threads()} CPU threads")

    batch = random_batch(cfg, args.batch)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        joint_loss(model(batch), 0.01).backward()

    ms = median_ms(train_step, args.repeats)
    print(f"forward+backward, batch {args.batch}: {ms:.1f} ms ({args.batch / ms * 1e3:.1f} samples/s)")

    for name in ("configs/pretrain_3b.yaml", "configs/pretrain_2b.yaml"):
        s = summarize(policy_config(name))
        parts = ", ".join(f"{k} {s[k] / 1e9:.3f}B" for k in ("understanding", "generation", "action", "other"))
        print(f"{name}: total {s['total'] / 1e9:.3f}B ({parts}); tokens {s['tokens']}")


if __name__ == "__main__":
    main()
