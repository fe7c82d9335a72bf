"""Closed-loop evaluation of a policy folder in the MuJoCo ALOHA scenes, through the deploy runtime —
the code path of a real robot (processor, frame history, chunk queue, compiled model):

    MUJOCO_GL=egl python -m a1.eval.sim --policy FOLDER --task conveyor_transfer_cube --episodes 50 \\
        [--belt-speed 0.03] [--seed 0] [--execute 25 | --ensemble 0.01] [--out results.json] \\
        [--videos 2] [--workers 1] [--prompt TEXT] [--normalization NAME] [--no-compile]

``--expert anticipating|static`` instead of ``--policy`` scores the scripted expert (its joint-space
replay, as recorded by ``python -m a1.sim.record``) on the same seeds: the upper bound (anticipating)
and, on the conveyor, the lower bound (static: aims where the cube was at reset).

Episode i uses seed ``seed + i`` (the cube's start). Writes a JSON report: success rate with its 95%
Wilson interval, mean best reward (gym-aloha's 4 transfer stages), per-episode outcome and seed, the
execution mode, and timings; with ``--videos K`` the head view of the first K episodes as mp4.
``--workers N`` runs episodes in N processes (each loads the policy; on a 2-core machine 1 is best).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

#: The scripted experts ``--expert`` scores: aiming where the cube will be, or where it was at reset.
EXPERTS = ("anticipating", "static")

@dataclass
class EvalOptions:
    """One evaluation (the command line's flags)."""

    policy: str | None = None
    """Exported policy folder (``python -m a1.export`` / ``a1.import_official``)."""
    expert: str | None = None
    """Instead of a policy, the scripted expert: ``anticipating`` or ``static`` (see `a1.sim.experts`)."""
    task: str = "transfer_cube"
    """One of `a1.sim.aloha.TASKS`."""
    episodes: int = 50
    """Episodes to run (seeds ``seed`` … ``seed + episodes − 1``)."""
    seed: int = 0
    """First seed."""
    belt_speed: float = 0.03
    """Conveyor belt velocity (m/s; the sign is the direction)."""
    execute: int | None = None
    """Actions executed per chunk (None: the whole chunk)."""
    ensemble: float | None = None
    """ACT-style temporal ensembling weight m (None: off)."""
    prompt: str | None = None
    """Instruction (None: the task's own, as its demonstrations are recorded)."""
    normalization: str | None = None
    """The policy's statistics to use (None: those named after the task, as `configs/sim_aloha.yaml`
    names its datasets, else the policy's only one with action statistics)."""
    compile: bool = True
    """torch.compile the runtime."""
    videos: int = 0
    """Record the head view of this many first episodes."""
    workers: int = 1
    """Processes running episodes."""
    episode_steps: int = 400
    """Control steps per episode (50 Hz)."""
    height: int = 96
    """Rendered camera height (pixels); render at the size the demonstrations were recorded at."""
    width: int = 128
    """Rendered camera width (pixels)."""
    out: str | None = None
    """JSON report path (None: not written)."""
    seeds: list[int] = field(default_factory=list, repr=False)
    """Explicit seeds (set by the workers; empty: from ``seed`` and ``episodes``)."""


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% (by default) Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_episode(runtime, env, seed: int, opts: EvalOptions, prompt: str, video: Path | None) -> dict:
    """One closed-loop rollout: the env's observation → the runtime's episode → the env's action."""
    obs = env.reset(seed)
    episode = runtime.episode(execute=opts.execute, ensemble=opts.ensemble)
    frames, done, reward, t0 = [], False, 0, time.perf_counter()
    try:
        while not done:
            if video is not None:
                frames.append(obs["images"]["head"])
            action = episode.step({"images": obs["images"], "state": obs["state"], "prompt": prompt})
            obs, reward, done = env.step(action)
    finally:
        episode.close()
    if video is not None:
        from a1.sim.lerobot_writer import write_video

        write_video(video, frames, fps=50)
    return {"seed": seed, "success": bool(env.success), "max_reward": int(env.max_reward), "steps": env.steps,
            "seconds": round(time.perf_counter() - t0, 3)}


def run_expert_episode(options, seed: int, anticipate: bool, video: Path | None) -> dict:
    """The scripted expert's episode for ``seed`` (`AlohaOptions` ``options``): its joint-space replay,
    rendered only when a video is asked for. Steps count up to the first success, as a rollout stops."""
    from dataclasses import replace

    from a1.sim.aloha import MAX_REWARD
    from a1.sim.experts import demonstrate

    t0 = time.perf_counter()
    demo = demonstrate(replace(options, render=video is not None), seed, anticipate)
    if video is not None:
        from a1.sim.lerobot_writer import write_video

        write_video(video, list(demo.images["head"]), fps=50)
    reached = np.flatnonzero(demo.rewards >= MAX_REWARD)
    return {"seed": seed, "success": bool(demo.success), "max_reward": int(demo.rewards.max()),
            "steps": int(reached[0]) + 1 if len(reached) else len(demo.rewards),
            "seconds": round(time.perf_counter() - t0, 3)}


def env_options(opts: EvalOptions):
    """The `a1.sim.aloha.AlohaOptions` of an evaluation."""
    from a1.sim.aloha import AlohaOptions

    return AlohaOptions(task=opts.task, belt_speed=opts.belt_speed, episode_steps=opts.episode_steps,
                        height=opts.height, width=opts.width)


def load_runtime(opts: EvalOptions):
    """The `a1.deploy.runtime.PolicyRuntime` of ``opts.policy``: with ``opts.normalization``, else the
    statistics named after the task when the folder has them, else its only ones; compiled when
    ``opts.compile``."""
    from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
    from a1.policy_folder import normalization_names

    normalization = opts.normalization
    if normalization is None and opts.task in normalization_names(opts.policy):
        normalization = opts.task
    return PolicyRuntime.load(opts.policy, normalization=normalization, options=RuntimeOptions(compile=opts.compile))


def _episode_runner(opts: EvalOptions):
    """``run(seed, video) -> result`` for the policy (loaded once) or the scripted expert of ``opts``."""
    from a1.sim.aloha import TASK_PROMPTS, AlohaEnv

    if opts.expert is not None:
        options = env_options(opts)
        return lambda seed, video: run_expert_episode(options, seed, opts.expert == "anticipating", video)
    runtime = load_runtime(opts)
    env = AlohaEnv(env_options(opts))
    prompt = opts.prompt or TASK_PROMPTS[opts.task]
    return lambda seed, video: run_episode(runtime, env, seed, opts, prompt, video)


def _run_seeds(opts: EvalOptions, progress: bool) -> list[dict]:
    """Episodes of ``opts.seeds`` in this process (one of ``opts.workers``: it takes its share of the
    cores for torch's threads — more threads than cores make OpenMP spin, several times slower)."""
    if opts.workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // opts.workers))
    run = _episode_runner(opts)
    out = []
    bar = _bar(len(opts.seeds), progress)
    for i, seed in enumerate(opts.seeds):
        video = Path(opts.out or "eval").with_suffix("") / f"episode_{seed}.mp4" if i < opts.videos else None
        out.append(run(seed, video))
        bar.update(1)
        bar.set_postfix(success=f"{sum(r['success'] for r in out)}/{len(out)}")
    bar.close()
    return out


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="episodes", disable=not enabled, file=sys.stderr)


def evaluate(opts: EvalOptions, progress: bool = True) -> dict:
    """Run the evaluation; returns (and with ``opts.out`` writes) the report."""
    if opts.episodes < 1 or opts.workers < 1:
        raise ValueError(f"episodes and workers must be >= 1, got {opts.episodes} and {opts.workers}")
    if (opts.policy is None) == (opts.expert is None):
        raise ValueError("give exactly one of policy (a folder) and expert (anticipating or static)")
    if opts.expert not in (None, *EXPERTS):
        raise ValueError(f"expert must be one of {list(EXPERTS)}, got {opts.expert!r}")
    if opts.expert is not None:  # the experts replay a plan: the policy's flags would be silently ignored
        policy_only = {k: getattr(opts, k) for k in ("execute", "ensemble", "prompt", "normalization")}
        if given := [k for k, v in policy_only.items() if v is not None]:
            raise ValueError(f"{', '.join(given)} apply to a policy, not to the scripted expert")
        if opts.expert == "static" and not opts.task.startswith("conveyor"):
            raise ValueError(f"the static expert differs from the anticipating one only on the conveyor, not on "
                             f"{opts.task!r}")
    seeds = list(range(opts.seed, opts.seed + opts.episodes))
    t0 = time.perf_counter()
    if opts.workers == 1:
        results = _run_seeds(EvalOptions(**{**asdict(opts), "seeds": seeds}), progress)
    else:
        shares = [seeds[w::opts.workers] for w in range(opts.workers)]
        jobs = [EvalOptions(**{**asdict(opts), "seeds": s, "videos": opts.videos if w == 0 else 0})
                for w, s in enumerate(shares) if s]
        with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
            results = sorted((r for part in pool.map(_run_seeds, jobs, [False] * len(jobs)) for r in part),
                             key=lambda r: r["seed"])
    k, n = sum(r["success"] for r in results), len(results)
    lo, hi = wilson_interval(k, n)
    report = {
        "policy": opts.policy, "expert": opts.expert, "task": opts.task, "success_rate": k / n, "wilson95": [lo, hi],
        "mean_max_reward": float(np.mean([r["max_reward"] for r in results])),
        "episodes": results, "options": {k_: v for k_, v in asdict(opts).items() if k_ != "seeds"},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if opts.out:
        Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless by default (set before mujoco is imported)
    p = argparse.ArgumentParser(prog="python -m a1.eval.sim", description=__doc__.split("\n\n")[0])
    from a1.sim.aloha import TASKS

    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--policy", help="exported policy folder")
    who.add_argument("--expert", choices=EXPERTS, help="score the scripted expert instead (upper/lower bound)")
    p.add_argument("--task", default="transfer_cube", choices=TASKS)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--belt-speed", type=float, default=0.03, help="conveyor belt velocity, m/s (sign: direction)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--execute", type=int, default=None, help="actions executed per chunk (default: all)")
    mode.add_argument("--ensemble", type=float, default=None, help="temporal ensembling weight m (ACT)")
    p.add_argument("--prompt", default=None, help="instruction (default: the task's)")
    p.add_argument("--normalization", default=None,
                   help="the policy's statistics to use (default: those named after the task, else its only one)")
    p.add_argument("--no-compile", action="store_true", help="run eager PyTorch")
    p.add_argument("--videos", type=int, default=0, help="record the head view of the first N episodes")
    p.add_argument("--workers", type=int, default=1, help="processes running episodes")
    p.add_argument("--episode-steps", type=int, default=400, help="control steps per episode (50 Hz)")
    p.add_argument("--height", type=int, default=96, help="rendered camera height (as the demos were recorded)")
    p.add_argument("--width", type=int, default=128, help="rendered camera width")
    p.add_argument("--out", default=None, help="JSON report path")
    a = p.parse_args(argv)
    flags = vars(a)
    opts = EvalOptions(compile=not flags.pop("no_compile"), **flags)
    try:
        report = evaluate(opts)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lo, hi = report["wilson95"]
    n = len(report["episodes"])
    print(f"{opts.task}: success {report['success_rate']:.1%} (95% CI {lo:.1%}–{hi:.1%}) over {n} episodes, "
          f"mean best reward {report['mean_max_reward']:.2f}/4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
