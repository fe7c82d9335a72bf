"""Synthetic bimanual data: a LeRobot v3.0 robot dataset plus EgoDex-style action-free human clips.

Everything is rendered procedurally with numpy (top-down 2.5-D scene, no simulator) and encoded
with PyAV, so a small dataset is written in seconds on a CPU:

    python -m a1.sim.synthetic OUT [--episodes N] [--seed S] [--human-clips M]
                                    [--image-size 64] [--fps 15] [--overwrite]

Layout written (LeRobot v3.0, one chunk / one file per kind)::

    OUT/robot/meta/info.json
    OUT/robot/meta/stats.json
    OUT/robot/meta/tasks.parquet
    OUT/robot/meta/episodes/chunk-000/file-000.parquet
    OUT/robot/data/chunk-000/file-000.parquet
    OUT/robot/videos/{key}/chunk-000/file-000.mp4      (all episodes concatenated)
    OUT/human/clips/NNNN.mp4
    OUT/human/annotations.jsonl

The world itself (scene, scripted expert, renderer) is `a1.sim.synthetic_world`; this module
writes it to disk. ``action[t] = state[t + 1]`` (the next commanded state), so actions are exactly consistent with
the rendered video.

The world's API is re-exported here: `make_episode` (scripted expert rollout), `render_frame`
(one camera view of one scene), `render_episode` (all cameras of an episode).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from a1.sim.lerobot_writer import Demo, write_lerobot, write_video
from a1.sim.synthetic_world import (  # noqa: F401 - re-exported: the world's public API
    CAMERAS,
    CONVEYOR_Y,
    HUMAN_INSTRUCTIONS,
    JOINT_NAMES,
    STATE_DIM,
    TASK_CONVEYOR,
    TASK_PICK,
    TASK_PUSH,
    TASKS,
    Episode,
    Obj,
    Scene,
    _step_toward,
    ee_to_state,
    joints_to_pose,
    make_episode,
    pose_to_joints,
    render_episode,
    render_frame,
    state_to_ee,
)

ROBOT_TYPE = "a1_synthetic_bimanual"


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite (overwrite=True) to replace it")
        for sub in ("robot", "human"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)


def _write_robot(root: Path, eps: list[Episode], size: int, fps: int) -> dict:
    demos = [Demo(e.task, e.states.astype(np.float32), e.actions.astype(np.float32), render_episode(e, size))
             for e in eps]
    return write_lerobot(root, demos, fps, ROBOT_TYPE, JOINT_NAMES, tasks=list(TASKS))


def make_human_clip(rng: np.random.Generator, frames: int, fps: int) -> tuple[str, list[Scene]]:
    """An action-free egocentric clip: a hand reaches an object and moves it; returns (instruction, scenes)."""
    k = int(rng.integers(len(HUMAN_INSTRUCTIONS)))
    instr = HUMAN_INSTRUCTIONS[k]
    color = ("red", "blue", "yellow", "green")[k]
    start = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6), 0.0])
    delta = {0: [0.25, 0, 0], 1: [0, 0.25, 0], 2: [-0.25, 0, 0], 3: [0, -0.2, 0]}[k]
    goal = start + np.array(delta)
    obj = Obj("obj", color, start.copy(), 0.045)
    distract = Obj("d", "green" if color != "green" else "red",
                   np.array([rng.uniform(0.1, 0.25), rng.uniform(0.15, 0.3), 0.0]), 0.03)
    hand = np.array([0.5, 1.05, 0.2])
    vmax = 0.8 / fps
    scenes, phase = [], 0
    for _ in range(frames):
        scenes.append(Scene([Obj(o.name, o.color, o.pos.copy(), o.half) for o in (obj, distract)],
                            None, None, hand=hand.copy()))
        if phase == 0:
            tgt = obj.pos + np.array([0, 0.02, 0.0])
            if np.linalg.norm(hand[:2] - tgt[:2]) < 0.02:
                phase = 1
        if phase == 1:
            tgt = goal + np.array([0, 0.02, 0.08 if k == 2 else 0.0])
            if np.linalg.norm(hand[:2] - tgt[:2]) < 0.01:
                phase = 2
        if phase == 2:
            tgt = np.array([0.5, 1.05, 0.2])
        hand = _step_toward(hand, tgt, vmax)
        if phase == 1:
            obj.pos = hand - np.array([0, 0.02, 0])
    return instr, scenes


def _write_human(root: Path, clips: int, seed: int, frames: int, size: int, fps: int) -> int:
    lines = []
    for i in range(clips):
        rng = np.random.default_rng([seed, 1_000_003, i])
        instr, scenes = make_human_clip(rng, frames, fps)
        rel = f"clips/{i:04d}.mp4"
        write_video(root / rel, (render_frame(s, "head", size) for s in scenes), fps)
        lines.append(json.dumps({"clip": rel, "instruction": instr, "fps": int(fps), "frames": len(scenes)}))
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.jsonl").write_text("".join(line + "\n" for line in lines))
    return clips


def episode_task(ep_index: int) -> str:
    """Tasks cycle pick / push / conveyor so every dataset of >= 3 episodes has all three."""
    return TASKS[ep_index % len(TASKS)]


def episode_rng(seed: int, ep_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, ep_index])


def generate(
    out: Path,
    episodes: int = 8,
    seed: int = 0,
    human_clips: int = 4,
    image_size: int = 64,
    fps: int = 15,
    frames_per_episode: int = 60,
    overwrite: bool = False,
) -> dict:
    """Write OUT/robot (LeRobot v3.0) and OUT/human (clips + annotations.jsonl); returns a summary."""
    if image_size % 2 or image_size < 16:
        raise ValueError("image_size must be even and >= 16 (yuv420p)")
    if episodes < 1 or frames_per_episode < 2:
        raise ValueError("need episodes >= 1 and frames_per_episode >= 2")
    out = Path(out)
    t0 = time.perf_counter()
    _prepare_out(out, overwrite)
    eps = [make_episode(episode_task(i), episode_rng(seed, i), frames_per_episode, fps) for i in range(episodes)]
    robot = _write_robot(out / "robot", eps, image_size, fps)
    n_h = _write_human(out / "human", human_clips, seed, frames_per_episode, image_size, fps)
    return {
        "robot": out / "robot",
        "human": out / "human",
        "episodes": robot["episodes"],
        "frames": robot["frames"],
        "tasks": robot["tasks"],
        "human_clips": n_h,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m a1.sim.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--human-clips", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--frames-per-episode", type=int, default=60)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    try:
        res = generate(a.out, a.episodes, a.seed, a.human_clips, a.image_size, a.fps,
                       a.frames_per_episode, a.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
