"""Test helper: rewrite a LeRobot v3.0 folder into the v2.1 layout (one parquet + one mp4 per
episode, videos re-encoded with PyAV) so the v3.0 and v2.1 readers can be compared.

Reads the v3.0 files directly with pyarrow/PyAV (not through `a1.data.lerobot`), so the reader
under test does not check itself.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

V21_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _decode_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N, H, W, 3), times (N,)) of a whole mp4."""
    with av.open(str(path)) as c:
        frames, times = [], []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(f.time)
    return np.stack(frames), np.asarray(times)


def _encode(path: Path, frames: np.ndarray, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=fps)
        s.pix_fmt = "yuv420p"
        s.height, s.width = frames.shape[1:3]
        s.time_base = Fraction(1, fps)
        s.options = {"crf": "10", "g": "2", "bf": "0"} if codec == "libx264" else {"qscale": "1", "g": "2"}
        for n, img in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            fr.pts, fr.time_base = n, Fraction(1, fps)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def convert_v30_to_v21(src: Path, dst: Path) -> Path:
    src, dst = Path(src), Path(dst)
    info = json.loads((src / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0", info["codebase_version"]
    fps = int(info["fps"])
    chunks = int(info.get("chunks_size", 1000))
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]

    ep_files = sorted((src / "meta/episodes").glob("chunk-*/file-*.parquet"))
    eps = pa.concat_tables([pq.read_table(f) for f in ep_files]).to_pylist()
    eps.sort(key=lambda r: r["episode_index"])
    tasks = pq.read_table(src / "meta/tasks.parquet").to_pylist()

    data_cache: dict[Path, pa.Table] = {}
    video_cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    (dst / "meta").mkdir(parents=True, exist_ok=True)
    ep_lines, stat_lines = [], []
    for r in eps:
        i = r["episode_index"]
        fmt = {"episode_chunk": i // chunks, "episode_index": i}
        dpath = src / info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        if dpath not in data_cache:
            data_cache[dpath] = pq.read_table(dpath)
        table = data_cache[dpath]
        first = table.column("index")[0].as_py()
        rows = table.slice(r["dataset_from_index"] - first, r["length"])
        out = dst / V21_DATA.format(**fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, out)
        for k in video_keys:
            vpath = src / info["video_path"].format(video_key=k, chunk_index=r[f"videos/{k}/chunk_index"],
                                                    file_index=r[f"videos/{k}/file_index"])
            if vpath not in video_cache:
                video_cache[vpath] = _decode_all(vpath)
            frames, times = video_cache[vpath]
            t0 = r[f"videos/{k}/from_timestamp"]
            start = int(np.argmin(np.abs(times - t0)))
            _encode(dst / V21_VIDEO.format(video_key=k, **fmt), frames[start:start + r["length"]], fps)
        ep_lines.append({"episode_index": i, "tasks": list(r["tasks"]), "length": r["length"]})
        stats: dict[str, dict] = {}
        for col, val in r.items():
            if col.startswith("stats/"):
                feat, name = col[len("stats/"):].rsplit("/", 1)
                stats.setdefault(feat, {})[name] = val
        stat_lines.append({"episode_index": i, "stats": stats})

    def jsonl(name: str, rows: list[dict]) -> None:
        (dst / "meta" / name).write_text("".join(json.dumps(x) + "\n" for x in rows))

    jsonl("episodes.jsonl", ep_lines)
    jsonl("tasks.jsonl", [{"task_index": t["task_index"], "task": t["task"]} for t in tasks])
    jsonl("episodes_stats.jsonl", stat_lines)
    if (src / "meta/stats.json").is_file():
        shutil.copy(src / "meta/stats.json", dst / "meta/stats.json")
    n_chunks = (len(eps) + chunks - 1) // chunks
    info21 = {k: v for k, v in info.items() if k not in ("data_files_size_in_mb", "video_files_size_in_mb")}
    info21 |= {
        "codebase_version": "v2.1",
        "total_chunks": n_chunks,
        "total_videos": len(eps) * len(video_keys),
        "data_path": V21_DATA,
        "video_path": V21_VIDEO,
    }
    (dst / "meta/info.json").write_text(json.dumps(info21, indent=4))
    return dst
