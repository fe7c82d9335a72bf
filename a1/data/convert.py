"""Convert a LeRobot folder (v3.0 / v2.1) or a human-video folder into webdataset episode shards.

    python -m a1.data.convert SRC OUT [--name NAME] [--episodes-per-shard 16] [--image-size N]
        [--cameras head=observation.images.head,left_wrist=...,right_wrist=...] [--overwrite]

Writes ``OUT/{name}-{shard:05d}.tar`` (one record per episode, see `a1.data.shards`) and
``OUT/manifest.json``. Shard ``s`` always holds episodes ``[s*E, (s+1)*E)`` (E = episodes per
shard), so a re-run skips shards whose final ``.tar`` exists, rewrites the missing ones (stale
``.tmp`` files of a killed run are overwritten) and rewrites the manifest; ``--overwrite`` redoes
everything. A re-run with a different layout (episodes per shard, views, image size) than the
existing manifest needs ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from a1.data.lerobot import DatasetError, LeRobotReader
from a1.data.normalize import FeatureStats
from a1.data.sample import resize
from a1.data.shards import EpisodeRecord, safe_name, write_shard
from a1.data.video import decode_frames, video_info

STATE_KEY, ACTION_KEY = "observation.state", "action"
DEFAULT_CAMERAS = {
    "head": "observation.images.head",
    "left_wrist": "observation.images.left_wrist",
    "right_wrist": "observation.images.right_wrist",
}
_CAMERA_PREFIX = "observation.images."


class ConvertError(ValueError):
    """The source cannot be converted (format, options, or a layout clash with existing output)."""


def parse_cameras(spec: str | None) -> dict[str, str] | None:
    """``"head=observation.images.head,left_wrist=..."`` -> ordered {view: camera key}."""
    if not spec:
        return None
    out: dict[str, str] = {}
    for part in spec.split(","):
        view, sep, key = part.strip().partition("=")
        if not sep or not view or not key:
            raise ConvertError(f"--cameras: expected VIEW=KEY, got {part!r}")
        if view in out:
            raise ConvertError(f"--cameras: view {view!r} given twice")
        out[view] = key
    return out


def _frames_chw(hwc: np.ndarray, image_size: int | None) -> np.ndarray:
    chw = np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))
    return chw if image_size is None else resize(chw, image_size)


class _LeRobotSource:
    kind = "lerobot"

    def __init__(self, root: Path, name: str, cameras: dict[str, str] | None, image_size: int | None):
        self.reader = LeRobotReader(root)
        self.name, self.image_size = name, image_size
        keys = self.reader.camera_keys
        if cameras is None:
            if all(k in keys for k in DEFAULT_CAMERAS.values()):
                cameras = dict(DEFAULT_CAMERAS)
            else:  # observation.images.X -> X, in info.json order
                cameras = {(k[len(_CAMERA_PREFIX):] if k.startswith(_CAMERA_PREFIX) else k): k for k in keys}
        for view, key in cameras.items():
            if key not in keys:
                raise ConvertError(f"{root}: camera key {key!r} (view {view!r}) not in the dataset "
                                   f"(cameras: {keys})")
        self.cameras = {safe_name(v): k for v, k in cameras.items()}
        self.views = list(self.cameras)
        for k in (STATE_KEY, ACTION_KEY):
            if k not in self.reader.features:
                raise ConvertError(f"{root}: no feature {k!r} (features: {list(self.reader.features)})")
        self.lengths = [e.length for e in self.reader.episodes]

    def vectors(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        cols = self.reader.columns(i, [STATE_KEY, ACTION_KEY])
        return (cols[STATE_KEY].reshape(self.lengths[i], -1).astype(np.float32),
                cols[ACTION_KEY].reshape(self.lengths[i], -1).astype(np.float32))

    def record(self, i: int) -> EpisodeRecord:
        n = self.lengths[i]
        cols = self.reader.columns(i, [STATE_KEY, ACTION_KEY, "task_index"])
        task_idx = cols["task_index"].astype(np.int64).reshape(-1)
        unique = sorted(set(task_idx.tolist()))
        for ti in unique:
            if ti not in self.reader.tasks:
                raise DatasetError(f"{self.reader.root}: episode {i} has task_index {ti} not in the task table")
        local = {ti: j for j, ti in enumerate(unique)}
        views = {v: resize_if(self.reader.images(k, i, range(n)), self.image_size) for v, k in self.cameras.items()}
        return EpisodeRecord(
            self.name, i, n, [self.reader.tasks[ti] for ti in unique], [local[ti] for ti in task_idx.tolist()],
            views, cols[STATE_KEY].reshape(n, -1), cols[ACTION_KEY].reshape(n, -1))


def resize_if(chw: np.ndarray, image_size: int | None) -> np.ndarray:
    return chw if image_size is None else resize(chw, image_size)


class _HumanSource:
    kind = "human"
    views = ["head"]

    def __init__(self, root: Path, name: str, image_size: int | None):
        self.root, self.name, self.image_size = root, name, image_size
        path = root / "annotations.jsonl"
        self.clips: list[dict] = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConvertError(f"{path}:{n}: invalid JSON ({e})") from e
            for k in ("clip", "instruction"):
                if k not in d:
                    raise ConvertError(f"{path}:{n}: annotation without {k!r}: {d}")
            if "frames" not in d or "fps" not in d:
                frames, fps, _, _ = video_info(root / d["clip"])
                d = {"frames": frames, "fps": fps} | d
            self.clips.append(d)
        if not self.clips:
            raise ConvertError(f"{path}: no clips")
        self.lengths = [int(d["frames"]) for d in self.clips]

    def record(self, i: int) -> EpisodeRecord:
        d = self.clips[i]
        n, fps = int(d["frames"]), float(d["fps"])
        hwc = decode_frames(self.root / d["clip"], np.arange(n) / fps)
        return EpisodeRecord(self.name, i, n, [d["instruction"]], d["instruction"],
                             {"head": _frames_chw(hwc, self.image_size)})


def detect(src: Path) -> str:
    """"lerobot" (meta/info.json) or "human" (annotations.jsonl)."""
    if (src / "meta" / "info.json").is_file():
        return "lerobot"
    if (src / "annotations.jsonl").is_file():
        return "human"
    raise ConvertError(f"{src}: neither a LeRobot dataset (meta/info.json) nor a human-video folder "
                       f"(annotations.jsonl)")


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def convert(
    src: str | Path,
    out: str | Path,
    name: str | None = None,
    episodes_per_shard: int = 16,
    cameras: dict[str, str] | str | None = None,
    image_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Convert ``src`` into shards under ``out``; returns the manifest (also written to
    ``out/manifest.json``). See the module docstring."""
    src, out = Path(src), Path(out)
    if episodes_per_shard < 1:
        raise ConvertError(f"episodes_per_shard must be >= 1, got {episodes_per_shard}")
    if image_size is not None and image_size < 1:
        raise ConvertError(f"image_size must be positive, got {image_size}")
    if isinstance(cameras, str):
        cameras = parse_cameras(cameras)
    kind = detect(src)
    name = name or src.resolve().name
    prefix = safe_name(name)
    if kind == "lerobot":
        source = _LeRobotSource(src, name, cameras, image_size)
    else:
        if cameras:
            raise ConvertError(f"{src}: --cameras applies to LeRobot datasets only")
        source = _HumanSource(src, name, image_size)
    lengths = source.lengths
    n_eps = len(lengths)
    n_shards = -(-n_eps // episodes_per_shard)
    layout = {"name": name, "kind": kind, "episodes_per_shard": episodes_per_shard, "views": source.views,
              "image_size": image_size, "episodes": n_eps}

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file() and not overwrite:
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            old = {}
        clash = {k: (old.get(k), v) for k, v in layout.items() if k in old and old.get(k) != v}
        if clash:
            raise ConvertError(f"{out}: existing shards were written with a different layout "
                               f"({', '.join(f'{k}: {a!r} != {b!r}' for k, (a, b) in clash.items())}); "
                               f"pass --overwrite (overwrite=True) to redo them")

    t0 = time.perf_counter()
    written = skipped = 0
    shards = []
    bar = tqdm(total=n_eps, unit="ep", desc=f"convert {name}", file=sys.stderr, disable=not progress,
               mininterval=0.2)
    try:
        for s in range(n_shards):
            eps = list(range(s * episodes_per_shard, min(n_eps, (s + 1) * episodes_per_shard)))
            path = out / f"{prefix}-{s:05d}.tar"
            if path.is_file() and not overwrite:
                bar.write(f"{path.name} exists, skipping episodes {eps[0]}..{eps[-1]}", file=sys.stderr)
                bar.update(len(eps))
                skipped += 1
            else:
                write_shard(path, (source.record(i) for i in eps), on_record=lambda _r: bar.update(1))
                written += 1
            shards.append({"url": path.name, "episodes": eps, "frames": int(sum(lengths[i] for i in eps)),
                           "bytes": path.stat().st_size})
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    stats: dict = {}
    if kind == "lerobot":
        states, actions = zip(*(source.vectors(i) for i in range(n_eps)))
        stats = {"state": FeatureStats.compute(np.concatenate(states)).to_dict(),
                 "action": FeatureStats.compute(np.concatenate(actions)).to_dict()}
    manifest = {
        **layout,
        "source": str(src.resolve()),
        "frames": int(sum(lengths)),
        "has_action": kind == "lerobot",
        "shards": shards,
        "stats": stats,
        "bytes": int(sum(s["bytes"] for s in shards)),
    }
    if kind == "lerobot":
        manifest["cameras"] = source.cameras
    _write_json_atomic(manifest_path, manifest)
    print(f"{out}: {written} shard(s) written, {skipped} skipped (already there), {n_eps} episodes, "
          f"{seconds:.2f}s", file=sys.stderr)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m a1.data.convert", description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="LeRobot folder (meta/info.json) or human-video folder "
                                           "(annotations.jsonl)")
    ap.add_argument("out", type=Path, help="output folder for NAME-NNNNN.tar and manifest.json")
    ap.add_argument("--name", default=None, help="dataset name (default: SRC's folder name)")
    ap.add_argument("--episodes-per-shard", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=None, help="resize frames to N x N (default: keep)")
    ap.add_argument("--cameras", default=None,
                    help="VIEW=KEY,... camera keys in view order (default: head/left_wrist/right_wrist "
                         "= observation.images.*)")
    ap.add_argument("--overwrite", action="store_true", help="rewrite existing shards")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        m = convert(a.src, a.out, a.name, a.episodes_per_shard, parse_cameras(a.cameras), a.image_size,
                    a.overwrite, progress=not a.no_progress)
    except (ValueError, FileNotFoundError) as e:  # ConvertError, DatasetError, VideoError, ShardError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"manifest": str(a.out / "manifest.json"), "episodes": m["episodes"], "frames": m["frames"],
                      "shards": len(m["shards"]), "bytes": m["bytes"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
