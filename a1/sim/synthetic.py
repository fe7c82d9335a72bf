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
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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

CODEBASE_VERSION = "v3.0"
ROBOT_TYPE = "a1_synthetic_bimanual"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


# --------------------------------------------------------------------------- video


def _codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: Path, frames, fps: int) -> dict:
    """Encode an iterable of (H, W, 3) uint8 frames (yuv420p); returns LeRobot video info."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = _codec()
    n = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast", "g": "2", "bf": "0"}
        else:
            stream.options = {"qscale": "2", "g": "2"}
            stream.bit_rate = 4_000_000
        for img in frames:
            if n == 0:
                stream.height, stream.width = img.shape[:2]
                h, w = img.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = n
            frame.time_base = Fraction(1, fps)
            for pkt in stream.encode(frame):
                container.mux(pkt)
            n += 1
        for pkt in stream.encode():
            container.mux(pkt)
    return {
        "video.height": int(h),
        "video.width": int(w),
        "video.codec": "h264" if codec == "libx264" else "mpeg4",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": int(fps),
        "video.channels": 3,
        "has_audio": False,
    }


def read_video(path: Path) -> np.ndarray:
    """Decode every frame of an mp4 to (N, H, W, 3) uint8 (PyAV)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


# --------------------------------------------------------------------------- stats


def feature_stats(x: np.ndarray) -> dict[str, list]:
    """LeRobot-style stats over axis 0 of (N, D) data: min/max/mean/std/count/q01..q99."""
    x = np.asarray(x, np.float64)
    out = {
        "min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
        "count": np.array([x.shape[0]]),
    }
    for q in (1, 10, 50, 90, 99):
        out[f"q{q:02d}"] = np.quantile(x, q / 100, axis=0)
    return {k: np.asarray(v).tolist() for k, v in out.items()}


def image_stats(frames: np.ndarray) -> dict[str, list]:
    """Per-channel stats of uint8 frames in [0, 1], shaped (3, 1, 1) like LeRobot."""
    flat = frames.reshape(-1, 3).astype(np.float64) / 255.0
    s = feature_stats(flat)
    return {k: (v if k == "count" else [[[c]] for c in v]) for k, v in s.items()} | {
        "count": [int(frames.shape[0])]
    }


# --------------------------------------------------------------------------- writers


def _tasks_table(tasks: list[str]) -> pa.Table:
    """tasks.parquet as pandas writes `DataFrame({"task_index": ...}, index=Index(tasks, name="task"))`."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _vec(rows: np.ndarray, dtype=pa.float32()) -> pa.Array:
    n, d = rows.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1), dtype), d)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite (overwrite=True) to replace it")
        for sub in ("robot", "human"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)


def _write_robot(root: Path, eps: list[Episode], size: int, fps: int) -> dict:
    tasks = [t for t in TASKS if any(e.task == t for e in eps)]
    task_index = {t: i for i, t in enumerate(tasks)}
    lengths = [e.length for e in eps]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(sum(lengths))

    # ---- videos (all episodes of a camera in one file)
    video_info, img_stats = {}, {}
    per_ep_frames = [render_episode(e, size) for e in eps]
    for cam in CAMERAS:
        frames = np.concatenate([f[cam] for f in per_ep_frames])
        path = root / VIDEO_PATH.format(video_key=cam, chunk_index=0, file_index=0)
        video_info[cam] = write_video(path, frames, fps)
        img_stats[cam] = image_stats(frames)

    # ---- data parquet
    state = np.concatenate([e.states for e in eps]).astype(np.float32)
    action = np.concatenate([e.actions for e in eps]).astype(np.float32)
    frame_index = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
    episode_index = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)]).astype(np.int64)
    timestamp = (frame_index / fps).astype(np.float32)
    task_idx = np.concatenate([np.full(e.length, task_index[e.task]) for e in eps]).astype(np.int64)
    index = np.arange(total, dtype=np.int64)
    data = pa.table({
        "observation.state": _vec(state),
        "action": _vec(action),
        "timestamp": pa.array(timestamp, pa.float32()),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(episode_index),
        "index": pa.array(index),
        "task_index": pa.array(task_idx),
    })
    data_path = root / DATA_PATH.format(chunk_index=0, file_index=0)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, data_path)

    # ---- tasks
    (root / "meta").mkdir(parents=True, exist_ok=True)
    pq.write_table(_tasks_table(tasks), root / "meta/tasks.parquet")

    # ---- stats
    scalar = {"timestamp": timestamp, "frame_index": frame_index, "episode_index": episode_index,
              "index": index, "task_index": task_idx}
    stats = {"observation.state": feature_stats(state), "action": feature_stats(action)}
    stats |= {k: feature_stats(v[:, None]) for k, v in scalar.items()}
    stats |= img_stats
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=2))

    # ---- episodes metadata
    cols: dict[str, list] = {
        "episode_index": list(range(len(eps))),
        "tasks": [[e.task] for e in eps],
        "length": lengths,
        "data/chunk_index": [0] * len(eps),
        "data/file_index": [0] * len(eps),
        "dataset_from_index": starts.tolist(),
        "dataset_to_index": (starts + np.array(lengths)).tolist(),
    }
    for cam in CAMERAS:
        cols[f"videos/{cam}/chunk_index"] = [0] * len(eps)
        cols[f"videos/{cam}/file_index"] = [0] * len(eps)
        cols[f"videos/{cam}/from_timestamp"] = [float(s / fps) for s in starts]
        cols[f"videos/{cam}/to_timestamp"] = [float((s + n) / fps) for s, n in zip(starts, lengths)]
    per_ep_arrays = {"observation.state": lambda i: eps[i].states, "action": lambda i: eps[i].actions}
    for i in range(len(eps)):
        sl = slice(int(starts[i]), int(starts[i] + lengths[i]))
        ep_stats = {k: feature_stats(f(i)) for k, f in per_ep_arrays.items()}
        ep_stats |= {k: feature_stats(v[sl][:, None]) for k, v in scalar.items()}
        for feat, st in ep_stats.items():
            for name, val in st.items():
                cols.setdefault(f"stats/{feat}/{name}", []).append([float(v) for v in val])
    cols["meta/episodes/chunk_index"] = [0] * len(eps)
    cols["meta/episodes/file_index"] = [0] * len(eps)
    arrays = {}
    for k, v in cols.items():
        if k == "tasks":
            arrays[k] = pa.array(v, pa.list_(pa.string()))
        elif k.startswith("stats/"):
            arrays[k] = pa.array(v, pa.list_(pa.int64() if k.endswith("/count") else pa.float64()))
        elif k.endswith("_timestamp"):
            arrays[k] = pa.array(v, pa.float64())
        else:
            arrays[k] = pa.array(v, pa.int64())
    ep_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), ep_path)

    # ---- info.json
    def scalar_feat(dtype):
        return {"dtype": dtype, "shape": [1], "names": None}

    features = {
        cam: {"dtype": "video", "shape": [size, size, 3], "names": ["height", "width", "channels"],
              "info": video_info[cam]}
        for cam in CAMERAS
    }
    features |= {
        "observation.state": {"dtype": "float32", "shape": [STATE_DIM], "names": JOINT_NAMES},
        "action": {"dtype": "float32", "shape": [STATE_DIM], "names": JOINT_NAMES},
        "timestamp": scalar_feat("float32"),
        "frame_index": scalar_feat("int64"),
        "episode_index": scalar_feat("int64"),
        "index": scalar_feat("int64"),
        "task_index": scalar_feat("int64"),
    }
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": ROBOT_TYPE,
        "total_episodes": len(eps),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": int(fps),
        "splits": {"train": f"0:{len(eps)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return {"episodes": len(eps), "frames": total, "tasks": tasks}


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
