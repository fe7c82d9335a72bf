"""Writing LeRobot v3.0 datasets: what the simulated worlds record their demonstrations as, laid
out as the lerobot library writes them (one chunk, one data file, one video file per camera), so
a1's data pipeline — and lerobot itself — read them unchanged::

    ROOT/meta/info.json, meta/stats.json, meta/tasks.parquet, meta/episodes/chunk-000/file-000.parquet
    ROOT/data/chunk-000/file-000.parquet
    ROOT/videos/{camera}/chunk-000/file-000.mp4      (all episodes of a camera, concatenated)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
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


#: Frames the image statistics are estimated from (evenly spaced over the dataset), as LeRobot
#: samples frames for them: the exact figures over every pixel of 20K frames would need ~15 GB.
IMAGE_STATS_FRAMES = 400


def image_stats(episodes: list[np.ndarray]) -> dict[str, list]:
    """Per-channel stats in [0, 1], shaped (3, 1, 1) like LeRobot, of one camera's uint8 (T, H, W, 3)
    frames over ``episodes`` — estimated from at most `IMAGE_STATS_FRAMES` evenly spaced frames;
    ``count`` is the number of frames."""
    total = sum(len(e) for e in episodes)
    picks = np.unique(np.linspace(0, total - 1, min(total, IMAGE_STATS_FRAMES)).round().astype(np.int64))
    starts = np.cumsum([0] + [len(e) for e in episodes])
    owner = np.searchsorted(starts, picks, side="right") - 1
    sample = np.stack([episodes[e][i - starts[e]] for e, i in zip(owner, picks)])
    s = feature_stats(sample.reshape(-1, 3).astype(np.float64) / 255.0)
    return {k: (v if k == "count" else [[[c]] for c in v]) for k, v in s.items()} | {"count": [int(total)]}


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




# --------------------------------------------------------------------------- datasets


@dataclass
class Demo:
    """One recorded episode."""

    task: str
    """The language instruction."""
    states: np.ndarray
    """(T, D) float32 robot state per frame."""
    actions: np.ndarray
    """(T, D) float32 commanded action per frame."""
    frames: dict[str, np.ndarray]
    """Camera feature key (e.g. ``observation.images.cam_high``) → (T, H, W, 3) uint8 frames."""

    @property
    def length(self) -> int:
        return len(self.states)


def _check(demos: list[Demo]) -> list[str]:
    """The camera keys all demos share; a clear error for inconsistent demos."""
    if not demos:
        raise ValueError("no demos to write")
    cams = list(demos[0].frames)
    for i, d in enumerate(demos):
        if set(d.frames) != set(cams):
            raise ValueError(f"demo {i}: cameras {sorted(d.frames)}, demo 0 has {sorted(cams)}")
        if d.states.shape != d.actions.shape or d.states.ndim != 2:
            raise ValueError(f"demo {i}: states {d.states.shape} and actions {d.actions.shape} must be (T, D) alike")
        for cam, f in d.frames.items():
            if f.shape[0] != d.length or f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
                raise ValueError(f"demo {i}: {cam} frames must be ({d.length}, H, W, 3) uint8, got {f.shape} {f.dtype}")
    return cams


def write_lerobot(root: Path, demos: list[Demo], fps: int, robot_type: str, joint_names: list[str],
                  tasks: list[str] | None = None) -> dict:
    """Write ``demos`` as a LeRobot v3.0 dataset at ``root``; ``tasks``: the task table's order (default:
    order of first appearance). Returns ``{"episodes", "frames", "tasks"}``."""
    cams = _check(demos)
    order = tasks if tasks is not None else list(dict.fromkeys(d.task for d in demos))
    tasks = [t for t in order if any(d.task == t for d in demos)]
    lengths = [d.length for d in demos]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    video_info, img_stats = {}, {}
    for cam in cams:  # one file per camera, every episode in turn (never all frames in one array)
        episodes = [d.frames[cam] for d in demos]
        frames = (image for e in episodes for image in e)
        video_info[cam] = write_video(root / VIDEO_PATH.format(video_key=cam, chunk_index=0, file_index=0), frames, fps)
        img_stats[cam] = image_stats(episodes)
    scalar = _write_data(root, demos, fps, {t: i for i, t in enumerate(tasks)})
    (root / "meta").mkdir(parents=True, exist_ok=True)
    pq.write_table(_tasks_table(tasks), root / "meta/tasks.parquet")
    state = np.concatenate([d.states for d in demos])
    action = np.concatenate([d.actions for d in demos])
    stats = {"observation.state": feature_stats(state), "action": feature_stats(action)}
    stats |= {k: feature_stats(v[:, None]) for k, v in scalar.items()} | img_stats
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=2))
    _write_episodes(root, demos, cams, starts, fps, scalar)
    first = demos[0]
    info = _info(robot_type, len(demos), int(sum(lengths)), len(tasks), fps, joint_names, first.states.shape[1],
                 {cam: (list(first.frames[cam].shape[1:]), video_info[cam]) for cam in cams})
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return {"episodes": len(demos), "frames": int(sum(lengths)), "tasks": tasks}


def _write_data(root: Path, demos: list[Demo], fps: int, task_index: dict[str, int]) -> dict[str, np.ndarray]:
    """data/chunk-000/file-000.parquet; returns its scalar columns (for the statistics)."""
    lengths = [d.length for d in demos]
    frame_index = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
    scalar = {
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.concatenate([np.full(n, i) for i, n in enumerate(lengths)]).astype(np.int64),
        "index": np.arange(int(sum(lengths)), dtype=np.int64),
        "task_index": np.concatenate([np.full(d.length, task_index[d.task]) for d in demos]).astype(np.int64),
    }
    data = pa.table({
        "observation.state": _vec(np.concatenate([d.states for d in demos]).astype(np.float32)),
        "action": _vec(np.concatenate([d.actions for d in demos]).astype(np.float32)),
        "timestamp": pa.array(scalar["timestamp"], pa.float32()),
        **{k: pa.array(scalar[k]) for k in ("frame_index", "episode_index", "index", "task_index")},
    })
    path = root / DATA_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path)
    return scalar


def _write_episodes(root: Path, demos: list[Demo], cams: list[str], starts: np.ndarray, fps: int,
                    scalar: dict[str, np.ndarray]) -> None:
    """meta/episodes/chunk-000/file-000.parquet: per episode its files, ranges and statistics."""
    n = len(demos)
    lengths = [d.length for d in demos]
    cols: dict[str, list] = {
        "episode_index": list(range(n)), "tasks": [[d.task] for d in demos], "length": lengths,
        "data/chunk_index": [0] * n, "data/file_index": [0] * n,
        "dataset_from_index": starts.tolist(), "dataset_to_index": (starts + np.array(lengths)).tolist(),
    }
    for cam in cams:
        cols[f"videos/{cam}/chunk_index"] = [0] * n
        cols[f"videos/{cam}/file_index"] = [0] * n
        cols[f"videos/{cam}/from_timestamp"] = [float(s / fps) for s in starts]
        cols[f"videos/{cam}/to_timestamp"] = [float((s + m) / fps) for s, m in zip(starts, lengths)]
    for i, d in enumerate(demos):
        sl = slice(int(starts[i]), int(starts[i] + lengths[i]))
        ep_stats = {"observation.state": feature_stats(d.states), "action": feature_stats(d.actions)}
        ep_stats |= {k: feature_stats(v[sl][:, None]) for k, v in scalar.items()}
        for feat, st in ep_stats.items():
            for name, val in st.items():
                cols.setdefault(f"stats/{feat}/{name}", []).append([float(v) for v in val])
    cols["meta/episodes/chunk_index"] = [0] * n
    cols["meta/episodes/file_index"] = [0] * n
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
    path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)


def _info(robot_type: str, episodes: int, frames: int, tasks: int, fps: int, joint_names: list[str], dims: int,
          cams: dict[str, tuple[list[int], dict]]) -> dict:
    """meta/info.json."""
    def scalar_feat(dtype):
        return {"dtype": dtype, "shape": [1], "names": None}

    features = {cam: {"dtype": "video", "shape": shape, "names": ["height", "width", "channels"], "info": info}
                for cam, (shape, info) in cams.items()}
    features |= {
        "observation.state": {"dtype": "float32", "shape": [dims], "names": joint_names},
        "action": {"dtype": "float32", "shape": [dims], "names": joint_names},
        "timestamp": scalar_feat("float32"),
        **{k: scalar_feat("int64") for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    return {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": episodes,
        "total_frames": frames, "total_tasks": tasks, "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB, "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": int(fps), "splits": {"train": f"0:{episodes}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
        "features": features,
    }
