"""Inference latency of the deployed policy, batch 1: p50/p99 and Hz.

    python deploy/benchmark.py                      # tiny model on this machine (CPU here)
    python deploy/benchmark.py --models tiny 3b 2b  # + the 3B and 2B architectures (GPU: bf16)

For every model (random weights of the real architecture; numbers do not depend on the weights):

- ``model``: the policy's inference alone on a prepared `Observation` — prefix (understanding +
  generation, incl. the vision tower and the Cosmos encoder) then K Euler steps — in four variants:
  eager / compiled (``torch.compile`` of the step) × cached prefix (the prefix runs once, each step
  runs only the action expert against its keys/values) / uncached (each step reruns the whole
  sequence; the image embeddings are still computed once). K = 4 and 10.
- ``end to end``: `a1.deploy.runtime.Episode.request` on a raw observation (camera frames at
  ``--camera`` size, raw state, prompt) → raw actions: checks, frame history, the processor
  (resize, tokenise, normalise), the compiled cached path, un-normalisation — what a robot waits for.
- peak GPU memory (CUDA only).

Run from the repository root. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
from a1.model import flow
from a1.testing import random_batch, random_policy

CONFIGS = {"tiny": "configs/tiny.yaml", "3b": "configs/pretrain_3b.yaml", "2b": "configs/pretrain_2b.yaml"}
DATA_SIZE = {"tiny": 64, "3b": 224, "2b": 448}  # the configs' data.options.image_size


def timings(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[float, float]:
    """(p50, p99) milliseconds of ``fn`` over ``repeats`` runs after two warm-up runs."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), float(np.percentile(times, 99))


def row(name: str, p50: float, p99: float, base: float | None = None) -> str:
    ratio = f"  ×{base / p50:.2f} vs uncached eager" if base else ""
    return f"  {name:<34} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  {1e3 / p50:7.1f} Hz{ratio}"


def model_variants(policy, obs, steps: int, compiled_step, compiled_velocity,
                   compiled_latents, compiled_prefix) -> dict[str, Callable[[], object]]:
    """The four inference variants of one observation with K = ``steps`` (compiled: what
    `PolicyRuntime` compiles — the denoising step, the prefix's MoT pass and the Cosmos encoder)."""
    cfg = policy.cfg.action
    noise = torch.randn(1, cfg.chunk_size, cfg.max_dim, device=obs.state.device)

    def cached(step, latents, run_prefix):
        def run():
            ctx = policy.prepare(obs, input_latents=latents(obs.images) if latents else None, run_prefix=run_prefix)
            inputs = ctx.step_inputs()
            return flow.euler_steps(lambda a, tau, dt: step(a, tau, dt, *inputs), noise, steps)
        return run

    def uncached(velocity, latents):
        return lambda: flow.euler(policy._full_velocity(obs, latents(obs.images) if latents else None, velocity),
                                  noise, steps)

    return {"eager, uncached": uncached(None, None), "eager, cached": cached(policy.denoise_step, None, None),
            "compiled, uncached": uncached(compiled_velocity, compiled_latents),
            "compiled, cached": cached(compiled_step, compiled_latents, compiled_prefix)}


def bench_model(name: str, device: torch.device, dtype: torch.dtype, args) -> None:
    t0 = time.perf_counter()
    loaded = random_policy(CONFIGS[name], image_size=DATA_SIZE[name], device=device)
    policy = loaded.policy.to(dtype)
    params = sum(p.numel() for p in policy.parameters())
    size = f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.1f}M"
    print(f"\n{name}: {CONFIGS[name]}, {size} parameters, {device} {str(dtype).removeprefix('torch.')} "
          f"(built in {time.perf_counter() - t0:.0f} s)")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    step = torch.compile(policy.denoise_step, mode=mode, dynamic=False)
    velocity = torch.compile(policy.full_velocity, mode=mode, dynamic=False)
    latents = torch.compile(policy.foresight.latents, mode=mode, dynamic=False) if policy.foresight else None
    run_prefix = torch.compile(policy.run_prefix, mode=mode, dynamic=False)
    obs = random_batch(loaded.config, 1, image_size=DATA_SIZE[name]).observation.to(device)
    with torch.inference_mode():
        for steps in args.steps:
            print(f" model, K = {steps}")
            base = None
            for variant, fn in model_variants(policy, obs, steps, step, velocity, latents, run_prefix).items():
                if variant == "compiled, uncached" and not args.compile_uncached:
                    continue
                p50, p99 = timings(fn, args.repeats, sync)
                base = p50 if variant == "eager, uncached" else base
                print(row(variant, p50, p99, base if variant != "eager, uncached" else None), flush=True)
    end_to_end(loaded, args, sync)
    if device.type == "cuda":
        print(f" peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
        torch.cuda.reset_peak_memory_stats(device)


def end_to_end(loaded, args, sync) -> None:
    runtime = PolicyRuntime(loaded, loaded.processor(), RuntimeOptions(compile=True, warmup=2))
    runtime.warmup()
    rng = np.random.default_rng(0)
    h, w = args.camera
    raw = {"images": {v: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for v in runtime.processor.views},
           "state": rng.normal(size=runtime.processor.state_dim), "prompt": "fold the towel"}
    episode = runtime.episode()
    print(f" end to end (raw {h}×{w} frames → raw actions: Episode.request, what a server request costs), "
          f"compiled, cached, K = {runtime.num_steps}; warm-up {', '.join(f'{t:.0f}' for t in runtime.warmup_ms)} ms")
    p50, p99 = timings(lambda: episode.request(raw), args.repeats, sync)
    print(row("Episode.request", p50, p99))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/benchmark.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=None,
                        help="default: tiny, plus 3b and 2b when a CUDA GPU is present")
    parser.add_argument("--steps", nargs="+", type=int, default=[4, 10], help="K Euler steps to time")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--camera", nargs=2, type=int, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--no-compile-uncached", dest="compile_uncached", action="store_false",
                        help="skip compiling the uncached reference path (saves a compile per K)")
    args = parser.parse_args(argv)
    if not Path("configs/tiny.yaml").is_file():
        print("error: run from the repository root (configs/ not found)", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    models = args.models or (["tiny", "3b", "2b"] if device.type == "cuda" else ["tiny"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    for name in models:
        if name != "tiny" and device.type != "cuda":
            print(f"\n{name}: skipped — the 3B/2B architectures are timed on a CUDA GPU (bf16)")
            continue
        bench_model(name, device, dtype, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
