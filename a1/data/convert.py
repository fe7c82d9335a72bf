"""Convert a dataset folder (LeRobot v3.0 / v2.1, or human video) into webdataset episode shards.

    python -m a1.data.convert SRC OUT [--name NAME] [--kind lerobot|human_video]
        [--views head,left_wrist,right_wrist]
        [--cameras head=observation.images.cam_high,left_wrist=...,right_wrist=none]
        [--state-key K] [--action-key K] [--stats FILE] [--episodes-per-shard 16] [--image-size N]
        [--geometry letterbox|stretch] [--action-mode absolute|delta] [--absolute-dims 6,13]
        [--chunk-size K] [--overwrite] [--no-progress]

There is one path from a dataset folder to samples: convert reads the folder through
`a1.data.sources.open_source` with a `DatasetConfig` (built from the flags, or given by the
caller), exactly as training from the folder does. So the shards' records name the *model's*
views (a view whose camera is ``none``/``null`` is absent from the records and masked in
training), a dataset whose cameras do not give the model its views is refused (exit 2, naming the
dataset, its camera keys and the ``--cameras`` to pass), and the statistics in the manifest are
those `a1.data.stats.dataset_stats` gives training from the folder — for the dataset's
``action_mode`` (delta: ``--absolute-dims`` and the model's ``--chunk-size`` too), recorded next to
them in ``stats`` (``action_mode``, ``absolute_dims``, ``chunk_size``) so training refuses
statistics made for other settings. The records hold the raw state and actions either way, so a
re-run with other action settings keeps complete shards and rewrites only the manifest. A dataset
with NaN/inf state or action is refused, naming the dataset, file, episode and feature. The
dataset folder is only read.

Writes ``OUT/{name}-{shard:05d}.tar`` (one record per episode, see `a1.data.shards`) and
``OUT/manifest.json`` (keys: `a1.data.shards.MANIFEST_KEYS`). Shard ``s`` always holds episodes
``[s*E, (s+1)*E)`` (E = episodes per shard), so a re-run keeps a shard only when it reads back
completely (every expected record present and decodable: `a1.data.shards.check_shard`), rewrites
missing, truncated or corrupt ones (saying so), and rewrites the manifest; ``--overwrite`` redoes
everything. A re-run with another layout (views, cameras, columns, episodes per shard, image
size, geometry) than the existing manifest needs ``--overwrite``.

``--image-size N`` stores frames as N² squares made by `a1.data.sample.resize` with ``--geometry``
(the training rule; the manifest records it next to ``image_size``, and training with another
``data.options.geometry`` is refused); without it frames are kept as recorded (``geometry: null``)
and training makes them square.
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

from a1.data.lerobot import DatasetError
from a1.data.sample import DEFAULT_GEOMETRY, GEOMETRIES, Geometry, resize
from a1.data.shards import (
    MANIFEST,
    EpisodeRecord,
    ShardError,
    check_shard,
    manifest_geometry,
    record_key,
    safe_name,
    write_shard,
)
from a1.data.sources import DatasetConfig, ViewError, open_source, suggest_cameras
from a1.data.stats import add_action_flags, dataset_record, dataset_stats

DEFAULT_VIEWS = ["head", "left_wrist", "right_wrist"]
NO_CAMERA = ("none", "null")
LAYOUT_KEYS = ("name", "kind", "views", "cameras", "state_key", "action_key", "episodes", "image_size",
               "geometry", "episodes_per_shard")


class ConvertError(ValueError):
    """The source cannot be converted (format, options, or a layout clash with existing output)."""


def parse_cameras(spec: str | None) -> dict[str, str | None] | None:
    """``"head=observation.images.cam_high,right_wrist=none"`` -> ordered {view: camera key or None}."""
    if not spec:
        return None
    out: dict[str, str | None] = {}
    for part in spec.split(","):
        view, sep, key = (s.strip() for s in part.partition("="))
        if not sep or not view or not key:
            raise ConvertError(f"--cameras: expected VIEW=KEY (KEY 'none' for no camera), got {part!r}")
        if view in out:
            raise ConvertError(f"--cameras: view {view!r} given twice")
        out[view] = None if key.lower() in NO_CAMERA else key
    return out


def parse_views(spec: str) -> list[str]:
    views = [v.strip() for v in spec.split(",") if v.strip()]
    if not views or len(set(views)) != len(views):
        raise ConvertError(f"--views: expected distinct comma-separated view names, got {spec!r}")
    return views


def detect(src: Path) -> str:
    """"lerobot" (meta/info.json) or "human_video" (annotations.jsonl)."""
    if (src / "meta" / "info.json").is_file():
        return "lerobot"
    if (src / "annotations.jsonl").is_file():
        return "human_video"
    raise ConvertError(f"{src}: neither a LeRobot dataset (meta/info.json) nor a human-video folder "
                       f"(annotations.jsonl)")


def cameras_flag(views: Sequence[str], camera_keys: Sequence[str]) -> str:
    """The ``--cameras`` value guessed from camera names (one match: that camera; none: ``none``;
    several: a placeholder listing them) — the fix printed when a dataset's cameras do not fit."""
    guess = suggest_cameras(list(views), list(camera_keys))
    return ",".join(f"{v}={k or 'none'}" for v, k in guess.items())


def _record(name: str, index: int, ep, cameras: dict[str, str | None], image_size: int | None,
            geometry: Geometry) -> EpisodeRecord:
    """One source episode (the `EpisodeData` protocol) as a whole-episode record."""
    n = ep.length
    vectors = ep.vectors()
    texts = [ep.instruction(t) for t in range(n)]
    strings = list(dict.fromkeys(texts))
    position = {s: i for i, s in enumerate(strings)}
    tasks = strings[0] if vectors is None and len(strings) == 1 else [position[s] for s in texts]
    views = {}
    for view, key in cameras.items():
        frames = None if key is None else ep.frames(view, np.arange(n))
        if frames is not None:
            views[view] = frames if image_size is None else resize(frames, image_size, geometry)
    state, action = (None, None) if vectors is None else vectors
    return EpisodeRecord(name, index, n, strings, tasks, views, state, action)


def _open(cfg: DatasetConfig, views: list[str]):
    """(source, view -> camera key or None, record views, (state_dim, action_dim) or (None, None))."""
    source = open_source(cfg, views)
    if cfg.kind == "lerobot":
        try:
            source.reader.validate(cfg.state_key, cfg.action_key)
        except DatasetError as err:
            raise ConvertError(f"dataset {cfg.name!r}: {err}; refusing to convert it") from err
    cameras = source.cameras
    cfg.check_action_dims(*source.dims(), str(cfg.path))
    return source, cameras, [v for v in views if cameras[v] is not None], source.dims()


def _stats(cfg: DatasetConfig, chunk_size: int | None) -> tuple[dict, str | None]:
    """The manifest's ``stats`` (state, action and the action settings they are for) and their origin."""
    if cfg.kind != "lerobot":
        return {}, None
    state, action, origin = dataset_stats(cfg, chunk_size)
    return {"state": state.to_dict(), "action": action.to_dict(), **dataset_record(cfg, chunk_size)}, origin


def _check_layout(manifest_path: Path, layout: dict, overwrite: bool) -> None:
    """An existing manifest with another layout needs ``overwrite`` (unreadable: no constraint)."""
    if overwrite or not manifest_path.is_file():
        return
    try:
        old = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if not isinstance(old, dict):
        return
    old = {**old, "geometry": manifest_geometry(old)}  # older manifests: stretch
    clash = {k: (old[k], layout[k]) for k in LAYOUT_KEYS if k in old and old[k] != layout[k]}
    if clash:
        raise ConvertError(f"{manifest_path.parent}: existing shards were written with a different layout "
                           f"({', '.join(f'{k}: {a!r} != {b!r}' for k, (a, b) in clash.items())}); "
                           f"pass --overwrite (overwrite=True) to redo them")


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _validate_args(cfg: DatasetConfig, out: Path, views: list[str], episodes_per_shard: int,
                   image_size: int | None, geometry: str) -> None:
    if cfg.path is None:
        raise ConvertError(f"dataset {cfg.name!r}: 'path' (the folder to convert) is required")
    if episodes_per_shard < 1:
        raise ConvertError(f"episodes_per_shard must be >= 1, got {episodes_per_shard}")
    if image_size is not None and image_size < 1:
        raise ConvertError(f"image_size must be positive, got {image_size}")
    if geometry not in GEOMETRIES:
        raise ConvertError(f"geometry must be one of {list(GEOMETRIES)}, got {geometry!r}")
    if not views:
        raise ConvertError("views: at least one model view is required")
    src = Path(cfg.path).resolve()
    if out.resolve() == src or src in out.resolve().parents:
        raise ConvertError(f"{out}: the output folder is inside the dataset {src}; a1 never writes into "
                           f"dataset folders")


def convert(cfg: DatasetConfig, out: str | Path, views: list[str], episodes_per_shard: int = 16,
            image_size: int | None = None, overwrite: bool = False, progress: bool = True,
            geometry: Geometry = DEFAULT_GEOMETRY, chunk_size: int | None = None) -> dict:
    """Convert the folder of ``cfg`` into shards of the model ``views`` under ``out``; returns the
    manifest (also written to ``out/manifest.json``). ``geometry``: how frames are made
    ``image_size``² (ignored, and recorded null, without ``image_size``). ``chunk_size`` (the model's
    k) is needed for the statistics of a delta-action dataset. See the module docstring."""
    out, views = Path(out), list(views)
    _validate_args(cfg, out, views, episodes_per_shard, image_size, geometry)
    if cfg.kind == "lerobot":
        dataset_record(cfg, chunk_size)  # delta without a chunk size fails before any work
    geometry = geometry if image_size is not None else None
    source, cameras, record_views, (state_dim, action_dim) = _open(cfg, views)
    lengths = [int(e.length) for e in source.episodes]
    if not lengths:
        raise ConvertError(f"dataset {cfg.name!r} ({cfg.path}): no episodes")
    human = cfg.kind != "lerobot"
    layout = {"name": cfg.name, "kind": cfg.kind, "views": views, "cameras": cameras,
              "state_key": None if human else cfg.state_key, "action_key": None if human else cfg.action_key,
              "episodes": len(lengths), "image_size": image_size, "geometry": geometry,
              "episodes_per_shard": episodes_per_shard}
    out.mkdir(parents=True, exist_ok=True)
    _check_layout(out / MANIFEST, layout, overwrite)
    stats, origin = _stats(cfg, chunk_size)  # before any shard: statistics that cannot be used fail fast

    t0 = time.perf_counter()
    shards, counts = _write_all(cfg, out, source, cameras, record_views, lengths, episodes_per_shard,
                                image_size, geometry, overwrite, progress)
    manifest = {**layout, "state_dim": state_dim, "action_dim": action_dim, "frames": int(sum(lengths)),
                "shards": shards, "stats": stats, "stats_origin": origin, "has_action": not human,
                "source": str(Path(cfg.path).resolve()), "bytes": int(sum(s["bytes"] for s in shards))}
    _write_json_atomic(out / MANIFEST, manifest)
    print(f"{out}: {counts['written']} shard(s) written, {counts['rewritten']} rewritten (incomplete), "
          f"{counts['skipped']} skipped (complete), {len(lengths)} episodes, {time.perf_counter() - t0:.2f}s",
          file=sys.stderr)
    return manifest


def _write_all(cfg, out: Path, source, cameras, record_views, lengths, per_shard, image_size, geometry, overwrite,
               progress) -> tuple[list[dict], dict[str, int]]:
    """Write (or keep, when complete) every shard; returns the manifest's shard list and counts."""
    prefix, n_eps = safe_name(cfg.name), len(lengths)
    counts = {"written": 0, "rewritten": 0, "skipped": 0}
    shards = []
    bar = tqdm(total=n_eps, unit="ep", desc=f"convert {cfg.name}", file=sys.stderr, disable=not progress,
               mininterval=0.2)
    try:
        for s in range(-(-n_eps // per_shard)):
            eps = list(range(s * per_shard, min(n_eps, (s + 1) * per_shard)))
            path = out / f"{prefix}-{s:05d}.tar"
            span = f"episodes {eps[0]}..{eps[-1]}"
            if path.is_file() and not overwrite:
                try:
                    check_shard(path, {record_key(cfg.name, i): lengths[i] for i in eps}, record_views)
                    bar.write(f"{path.name} is complete, skipping {span}", file=sys.stderr)
                    bar.update(len(eps))
                    counts["skipped"] += 1
                    shards.append(_shard_entry(path, eps, lengths))
                    continue
                except ShardError as err:
                    bar.write(f"{path.name} is incomplete or unreadable ({err}); rewriting {span}", file=sys.stderr)
                    counts["rewritten"] += 1
            else:
                counts["written"] += 1
            records = (_record(cfg.name, i, source.episodes[i], cameras, image_size, geometry) for i in eps)
            write_shard(path, records, on_record=lambda _r: bar.update(1))
            shards.append(_shard_entry(path, eps, lengths))
    finally:
        bar.close()
    return shards, counts


def _shard_entry(path: Path, eps: list[int], lengths: list[int]) -> dict:
    return {"url": path.name, "episodes": eps, "frames": int(sum(lengths[i] for i in eps)),
            "bytes": path.stat().st_size}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m a1.data.convert", description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="LeRobot folder (meta/info.json) or human-video folder (annotations.jsonl)")
    ap.add_argument("out", type=Path, help="output folder for NAME-NNNNN.tar and manifest.json")
    ap.add_argument("--name", default=None, help="dataset name (default: SRC's folder name)")
    ap.add_argument("--kind", choices=("lerobot", "human_video"), default=None, help="default: detected")
    ap.add_argument("--views", default=",".join(DEFAULT_VIEWS), help="the model's views, in order")
    ap.add_argument("--cameras", default=None,
                    help="VIEW=KEY,... camera key of each model view, KEY 'none' when the robot has no such "
                         "camera (default: view V reads observation.images.V)")
    ap.add_argument("--state-key", default="observation.state")
    ap.add_argument("--action-key", default="action")
    ap.add_argument("--stats", default=None, help="statistics file (python -m a1.data.stats --out FILE); "
                                                  "default: a1's cache, LeRobot's meta/stats.json, or computed")
    ap.add_argument("--episodes-per-shard", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=None, help="resize frames to N x N (default: keep)")
    ap.add_argument("--geometry", choices=GEOMETRIES, default=DEFAULT_GEOMETRY,
                    help="how --image-size makes frames square: letterbox (keep the aspect ratio, pad; what the "
                         "released weights saw) or stretch; must equal the training data.options.geometry")
    add_action_flags(ap)
    ap.add_argument("--overwrite", action="store_true", help="rewrite existing shards")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _one_line(err: BaseException) -> str:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(msg).split())


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    views = None
    try:
        views = parse_views(a.views)
        cfg = DatasetConfig(name=a.name or a.src.resolve().name, weight=1.0, kind=a.kind or detect(a.src),
                            path=str(a.src), cameras=parse_cameras(a.cameras), state_key=a.state_key,
                            action_key=a.action_key, stats=a.stats, action_mode=a.action_mode,
                            absolute_dims=a.absolute_dims)
        m = convert(cfg, a.out, views, a.episodes_per_shard, a.image_size, a.overwrite, progress=not a.no_progress,
                    geometry=a.geometry, chunk_size=a.chunk_size)
    except ViewError as err:
        hint = ""
        if (a.src / "meta" / "info.json").is_file() and views:
            from a1.data.lerobot import LeRobotReader

            hint = f" For this command: --cameras {cameras_flag(views, LeRobotReader(a.src).camera_keys)}"
        print(f"error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as err:  # ConvertError, DatasetError, StatsError, ShardError, VideoError
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(json.dumps({"manifest": str(a.out / MANIFEST), "episodes": m["episodes"], "frames": m["frames"],
                      "shards": len(m["shards"]), "bytes": m["bytes"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
