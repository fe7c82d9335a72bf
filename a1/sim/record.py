"""Record scripted-expert demonstrations of the MuJoCo ALOHA tasks as a LeRobot v3.0 dataset, which
the a1 data pipeline (and lerobot) reads unchanged:

    MUJOCO_GL=egl python -m a1.sim.record OUT --task conveyor_transfer_cube --episodes 50 \\
        [--seed 0] [--belt-speed 0.03] [--height 96] [--width 128] [--static] [--keep-failures] [--overwrite]

Seeds are tried from ``--seed`` upward; failed replays are skipped (``--keep-failures`` keeps them)
until ``--episodes`` are recorded (at most 3× as many tries). Cameras are written as
``observation.images.{head,left_wrist,right_wrist}`` (a1's default camera keys), state and action as
ALOHA's 14 joints (6 + gripper per arm, left first), at the control rate (50 fps), each episode with its
task's instruction (`a1.sim.aloha.TASK_PROMPTS`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from a1.sim.lerobot_writer import Demo, write_lerobot

ROBOT_TYPE = "aloha"
FPS = 50


def joint_names() -> list[str]:
    """ALOHA's 14 state/action names: per arm 6 joints and the gripper, left first."""
    from a1.sim.aloha_scene import ARM_JOINTS

    return [f"{side}_{j}" for side in ("left", "right") for j in (*ARM_JOINTS, "gripper")]


def record(out: Path, options, episodes: int, seed: int = 0, anticipate: bool = True,
           keep_failures: bool = False, overwrite: bool = False) -> dict:
    """Write ``episodes`` expert demonstrations of ``options`` (an `AlohaOptions`) to ``out``."""
    from a1.sim.aloha import TASK_PROMPTS
    from a1.sim.experts import demonstrate

    out = Path(out)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    demos, seeds, tried = [], [], 0
    for s in range(seed, seed + 3 * episodes):
        if len(demos) == episodes:
            break
        tried += 1
        d = demonstrate(options, s, anticipate)
        if d.success or keep_failures:
            frames = {f"observation.images.{view}": images for view, images in d.images.items()}
            demos.append(Demo(TASK_PROMPTS[options.task], d.states.astype(np.float32),
                              d.actions.astype(np.float32), frames))
            seeds.append({"seed": s, "success": bool(d.success)})
    if len(demos) < episodes:
        raise RuntimeError(f"only {len(demos)} of {tried} expert demonstrations succeeded; wanted {episodes}")
    summary = write_lerobot(out, demos, FPS, ROBOT_TYPE, joint_names())
    (out / "meta" / "a1_record.json").write_text(json.dumps({"task": options.task, "tried": tried,
                                                             "episodes": seeds}, indent=2) + "\n")
    return summary | {"tried": tried, "successes": sum(e["success"] for e in seeds)}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless by default (set before mujoco is imported)
    p = argparse.ArgumentParser(prog="python -m a1.sim.record", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    from a1.sim.aloha import TASKS

    p.add_argument("--task", default="transfer_cube", choices=TASKS)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--belt-speed", type=float, default=0.03, help="conveyor belt velocity, m/s (sign: direction)")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--episode-steps", type=int, default=400, help="control steps per episode (50 Hz)")
    p.add_argument("--static", action="store_true", help="the static expert (aims where the cube was at reset)")
    p.add_argument("--keep-failures", action="store_true", help="also record demonstrations that fail")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    from a1.sim.aloha import AlohaOptions

    try:
        options = AlohaOptions(task=a.task, belt_speed=a.belt_speed, height=a.height, width=a.width,
                               episode_steps=a.episode_steps)
        res = record(a.out, options, a.episodes, a.seed, not a.static, a.keep_failures, a.overwrite)
    except (ValueError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
