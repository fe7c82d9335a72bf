"""Reader for LeRobot datasets on disk, codebase versions v3.0 and v2.1 (v2.0 read like v2.1).

v3.0: ``meta/episodes/chunk-*/file-*.parquet`` rows give, per episode, its data file
(``data/chunk_index``, ``data/file_index``), its global row range ``[dataset_from_index,
dataset_to_index)`` and, per video key, its mp4 (``videos/{key}/chunk_index|file_index``) and
``from_timestamp`` inside that (multi-episode) file. Tasks: ``meta/tasks.parquet`` (task strings
are the pandas index, stored as a ``task`` column).

v2.1: ``meta/episodes.jsonl`` (episode_index, tasks, length), ``meta/tasks.jsonl`` (task_index,
task), one parquet and one mp4 per episode at the ``data_path`` / ``video_path`` templates of
``meta/info.json`` with ``episode_chunk = episode_index // chunks_size``. Global row ranges are
the cumulative episode lengths in episode order.

Frame ``f`` of an episode is at ``from_timestamp + f / fps`` in its v3.0 video, ``f / fps`` in its
v2.1 video. Opened parquet tables are cached per file (a data-loader worker reads many samples).
All format problems raise `DatasetError` (a ValueError) naming the file and key.
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from a1.data.video import DEFAULT_TOLERANCE_S, decode_frames

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
CAMERA_DTYPES = ("video", "image")


class DatasetError(ValueError):
    """A LeRobot dataset is malformed or a request does not fit it; the message names file/key."""


class EpisodeIndexError(DatasetError, IndexError):
    """Episode (or frame) index out of range."""


@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    tasks: tuple[str, ...]
    from_index: int  # global row index of the first frame (inclusive)
    to_index: int  # global row index past the last frame (exclusive)
    data_path: str = ""  # parquet holding the rows, relative to the dataset root
    videos: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (mp4, from_timestamp)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DatasetError(f"missing {path}") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: invalid JSON ({e})") from e


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: invalid JSON ({e})") from e
    return out


def _col(table: pa.Table, name: str, path: Path) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise DatasetError(f"{path}: missing column {name!r} (columns: {table.column_names})")
    return table.column(name)


def _to_numpy(arr: pa.ChunkedArray | pa.Array, name: str, path: Path) -> np.ndarray:
    """Arrow column -> numpy: list/fixed-size-list columns to (rows, dim), scalars to (rows,)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        n = len(arr)
        if arr.null_count:
            raise DatasetError(f"{path}: column {name!r} has null rows")
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        if n == 0:
            dim = t.list_size if pa.types.is_fixed_size_list(t) else 0
            return flat.reshape(0, dim)
        if flat.size % n:
            raise DatasetError(f"{path}: column {name!r} has ragged rows")
        if not pa.types.is_fixed_size_list(t):
            lens = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            if (lens != lens[0]).any():
                raise DatasetError(f"{path}: column {name!r} has ragged rows")
        out = flat.reshape(n, flat.size // n)
    else:
        out = arr.to_numpy(zero_copy_only=False)
    if out.dtype.kind == "f" and out.dtype != np.float32:
        out = out.astype(np.float32)
    return out


class LeRobotReader:
    """Random access to a LeRobot v3.0 / v2.1 dataset folder (see module docstring)."""

    def __init__(self, root: str | Path, video_backend: str = "auto",
                 tolerance_s: float = DEFAULT_TOLERANCE_S, max_open_tables: int = 16):
        self.root = Path(root)
        self.video_backend = video_backend
        self.tolerance_s = tolerance_s
        self._max_tables = max_open_tables
        self._tables: OrderedDict[Path, pa.Table] = OrderedDict()
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(f"not a LeRobot dataset: missing {info_path}")
        self.info = _read_json(info_path)
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"{info_path}: unsupported codebase_version {self.version!r} (supported: {SUPPORTED_VERSIONS})"
            )
        for k in ("fps", "features"):
            if k not in self.info:
                raise DatasetError(f"{info_path}: missing key {k!r}")
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict] = dict(self.info["features"])
        self.camera_keys = [k for k, f in self.features.items() if f.get("dtype") in CAMERA_DTYPES]
        self.video_keys = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        if self.version == "v3.0":
            self.tasks, self.episodes = self._load_v3()
        else:
            self.tasks, self.episodes = self._load_v2()
        self.num_episodes = len(self.episodes)
        self.num_frames = sum(e.length for e in self.episodes)

    # ------------------------------------------------------------------ metadata
    def _load_v3(self) -> tuple[dict[int, str], list[Episode]]:
        tpath = self.root / "meta" / "tasks.parquet"
        if not tpath.is_file():
            raise DatasetError(f"missing {tpath}")
        tt = pq.read_table(tpath)
        name = "task" if "task" in tt.column_names else "__index_level_0__"
        tasks = dict(zip(_col(tt, "task_index", tpath).to_pylist(), _col(tt, name, tpath).to_pylist()))

        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"missing {self.root / 'meta/episodes'}/chunk-*/file-*.parquet")
        data_tpl = self.info.get("data_path", "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")
        video_tpl = self.info.get("video_path",
                                  "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
        episodes: list[Episode] = []
        for f in files:
            t = pq.read_table(f)
            cols = {c: _col(t, c, f).to_pylist() for c in (
                "episode_index", "length", "tasks", "data/chunk_index", "data/file_index",
                "dataset_from_index", "dataset_to_index")}
            for k in self.video_keys:
                for c in ("chunk_index", "file_index", "from_timestamp"):
                    cols[f"videos/{k}/{c}"] = _col(t, f"videos/{k}/{c}", f).to_pylist()
            for r in range(t.num_rows):
                videos = {
                    k: (video_tpl.format(video_key=k, chunk_index=cols[f"videos/{k}/chunk_index"][r],
                                         file_index=cols[f"videos/{k}/file_index"][r]),
                        float(cols[f"videos/{k}/from_timestamp"][r]))
                    for k in self.video_keys
                }
                episodes.append(Episode(
                    index=int(cols["episode_index"][r]), length=int(cols["length"][r]),
                    tasks=tuple(cols["tasks"][r] or ()),
                    from_index=int(cols["dataset_from_index"][r]), to_index=int(cols["dataset_to_index"][r]),
                    data_path=data_tpl.format(chunk_index=cols["data/chunk_index"][r],
                                              file_index=cols["data/file_index"][r]),
                    videos=videos,
                ))
        episodes.sort(key=lambda e: e.index)
        self._check_episodes(episodes, files[0].parent.parent)
        return tasks, episodes

    def _load_v2(self) -> tuple[dict[int, str], list[Episode]]:
        meta = self.root / "meta"
        tasks = {int(d["task_index"]): d["task"] for d in _read_jsonl(meta / "tasks.jsonl")}
        rows = sorted(_read_jsonl(meta / "episodes.jsonl"), key=lambda d: d["episode_index"])
        chunks = int(self.info.get("chunks_size", 1000))
        data_tpl = self.info.get("data_path", "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")
        video_tpl = self.info.get("video_path",
                                  "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
        episodes, start = [], 0
        for d in rows:
            for k in ("episode_index", "length"):
                if k not in d:
                    raise DatasetError(f"{meta / 'episodes.jsonl'}: episode entry without {k!r}: {d}")
            i, n = int(d["episode_index"]), int(d["length"])
            fmt = {"episode_chunk": i // chunks, "episode_index": i}
            episodes.append(Episode(
                index=i, length=n, tasks=tuple(d.get("tasks", ())), from_index=start, to_index=start + n,
                data_path=data_tpl.format(**fmt),
                videos={k: (video_tpl.format(video_key=k, **fmt), 0.0) for k in self.video_keys},
            ))
            start += n
        self._check_episodes(episodes, meta / "episodes.jsonl")
        return tasks, episodes

    def _check_episodes(self, episodes: list[Episode], where: Path) -> None:
        for pos, e in enumerate(episodes):
            if e.index != pos:
                raise DatasetError(f"{where}: episode indices are not 0..N-1 (position {pos} has {e.index})")
            if e.to_index - e.from_index != e.length or e.length <= 0:
                raise DatasetError(
                    f"{where}: episode {e.index} has length {e.length} but rows [{e.from_index}, {e.to_index})"
                )
        total = self.info.get("total_episodes")
        if total is not None and int(total) != len(episodes):
            raise DatasetError(f"{self.root / 'meta/info.json'}: total_episodes={total} but {where} "
                               f"lists {len(episodes)} episodes")

    # ------------------------------------------------------------------ access
    def episode(self, episode: int | Episode) -> Episode:
        if isinstance(episode, Episode):
            return episode
        i = int(episode)
        if not 0 <= i < len(self.episodes):
            raise EpisodeIndexError(f"{self.root}: episode index {i} out of range (0..{len(self.episodes) - 1})")
        return self.episodes[i]

    def _table(self, rel: str) -> tuple[Path, pa.Table]:
        path = self.root / rel
        t = self._tables.get(path)
        if t is None:
            if not path.is_file():
                raise DatasetError(f"missing data file {path}")
            try:
                t = pq.read_table(path, memory_map=True)
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(f"cannot read parquet {path}: {e}") from e
            self._tables[path] = t
            while len(self._tables) > self._max_tables:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(path)
        return path, t

    def _rows(self, ep: Episode) -> tuple[Path, pa.Table]:
        """(file, the episode's rows of it)."""
        path, t = self._table(ep.data_path)
        if self.version == "v3.0":
            if "index" in t.column_names and t.num_rows:
                first = int(t.column("index")[0].as_py())
            else:  # rows of a file are a contiguous global range starting at its first episode
                first = min(e.from_index for e in self.episodes if e.data_path == ep.data_path)
            start = ep.from_index - first
        else:
            start = 0
        if start < 0 or start + ep.length > t.num_rows:
            raise DatasetError(f"{path}: episode {ep.index} rows [{start}, {start + ep.length}) outside the "
                               f"file's {t.num_rows} rows")
        return path, t.slice(start, ep.length)

    def columns(self, episode: int | Episode, names: Iterable[str]) -> dict[str, np.ndarray]:
        """All rows of the episode for the named parquet columns: vector features as (length, dim)
        (float32 for float features), scalar columns as (length,)."""
        ep = self.episode(episode)
        path, rows = self._rows(ep)
        return {n: _to_numpy(_col(rows, n, path), n, path) for n in names}

    def instruction(self, episode: int | Episode, frame: int) -> str:
        """Task string of one frame (its `task_index` row looked up in the task table)."""
        ep = self.episode(episode)
        self._check_frames(ep, [frame])
        path, rows = self._rows(ep)
        ti = int(_col(rows, "task_index", path)[int(frame)].as_py())
        if ti not in self.tasks:
            raise DatasetError(f"{path}: episode {ep.index} frame {frame} has task_index {ti} not in the task table")
        return self.tasks[ti]

    def _check_frames(self, ep: Episode, frames: Sequence[int]) -> np.ndarray:
        f = np.asarray(frames, dtype=np.int64).reshape(-1)
        if f.size and (f.min() < 0 or f.max() >= ep.length):
            raise EpisodeIndexError(
                f"{self.root}: frame index {int(f.min() if f.min() < 0 else f.max())} out of range for episode "
                f"{ep.index} of length {ep.length}"
            )
        return f

    def images(self, key: str, episode: int | Episode, frame_indices: Sequence[int]) -> np.ndarray:
        """(N, 3, H, W) uint8 frames of camera `key` at the episode's frame indices."""
        if key not in self.camera_keys:
            raise DatasetError(f"{self.root}: unknown camera key {key!r} (available: {self.camera_keys})")
        ep = self.episode(episode)
        f = self._check_frames(ep, frame_indices)
        if self.features[key]["dtype"] == "video":
            rel, t0 = ep.videos[key]
            ts = t0 + f / self.fps
            hwc = decode_frames(self.root / rel, ts, self.tolerance_s, self.video_backend)
        else:  # "image": PNG/JPEG bytes in the parquet column
            from PIL import Image

            path, rows = self._rows(ep)
            col = _col(rows, key, path)
            hwc = np.stack([
                np.asarray(Image.open(io.BytesIO(col[int(i)].as_py()["bytes"])).convert("RGB")) for i in f
            ])
        return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))

    # ------------------------------------------------------------------ validation
    def validate(self, state_key: str = "observation.state", action_key: str = "action") -> dict:
        """Scan every episode's state/action once: columns present, (length, dim) with dim from
        info.json, all finite. Raises `DatasetError` naming file, episode and column."""
        dims = {}
        for k in (state_key, action_key):
            if k not in self.features:
                raise DatasetError(f"{self.root / 'meta/info.json'}: no feature {k!r} "
                                   f"(features: {list(self.features)})")
            dims[k] = int(np.prod(self.features[k].get("shape", [1])))
        for ep in self.episodes:
            path, rows = self._rows(ep)
            for k, arr in self.columns(ep, [state_key, action_key]).items():
                a = arr.reshape(len(arr), -1)
                if a.shape != (ep.length, dims[k]):
                    raise DatasetError(f"{path}: episode {ep.index} column {k!r} has shape {arr.shape}, "
                                       f"expected ({ep.length}, {dims[k]}) from info.json")
                if a.dtype.kind == "f":
                    bad = ~np.isfinite(a)
                    if bad.any():
                        r, c = np.argwhere(bad)[0]
                        raise DatasetError(f"{path}: episode {ep.index} column {k!r} has non-finite value "
                                           f"{a[r, c]} at frame {r}, dim {c}")
        return {"episodes": self.num_episodes, "frames": self.num_frames}

    def __repr__(self) -> str:
        return (f"LeRobotReader({str(self.root)!r}, version={self.version}, episodes={self.num_episodes}, "
                f"frames={self.num_frames}, fps={self.fps:g}, cameras={self.camera_keys})")
