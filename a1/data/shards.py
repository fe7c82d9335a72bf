"""Webdataset tar shards holding whole episodes, one record per episode.

Streaming readers cannot random-access the t±m frames around a sample, so a record carries a
whole episode and samples are cut from it afterwards (`a1.data.sample.make_sample` works on an
`EpisodeRecord` directly). A record is keyed ``{dataset}/{episode:06d}`` (the dataset name made
tar/webdataset-safe: no dots) and has the members

- ``meta.json``: ``{"dataset", "episode", "length", "tasks", "task_strings", "views", "has_action"}``
  where ``tasks`` is the per-frame index list into ``task_strings`` or one instruction string;
- ``state.npy`` / ``action.npy``: float32 (length, dim), only when the source has actions;
- ``{view}.npz``: uint8 frames (length, 3, H, W) under the name ``frames``, deflate-compressed
  (lossless: batches from shards equal batches read from the source exactly).

Shards are written to ``NAME.tmp`` and renamed when complete, so a killed writer never leaves a
truncated ``.tar`` behind. Member timestamps are fixed, so the same episodes give byte-identical
shards. Reading: `read_episodes` (a `ShardReader`) streams the records of the shards the caller
owns (no node/worker splitting here) in order or in a seeded shuffled shard order. A corrupt tar,
an undecodable member or a missing member raises `ShardError` naming shard and key, or with
``on_error="skip"`` is logged and counted (`ShardReader.skipped`) while reading goes on.
`check_shard` verifies that a finished shard reads back completely (convert's resume check).

A shard folder's ``manifest.json`` (written by ``python -m a1.data.convert``) is read only through
`read_manifest`, which checks every key (`MANIFEST_KEYS`), the shard list against the files on
disk and the statistics (finite, with spread, the recorded dims); any problem is a `ShardError`
naming the file and key. ``geometry`` (how frames were made ``image_size``², next to it; null when
frames were kept as recorded) is filled in by `manifest_geometry` for manifests written before it
existed (`a1.data.sample.LEGACY_GEOMETRY`, ``stretch``); `check_geometry` refuses reading shards with
another geometry.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import webdataset as wds

from a1.data.normalize import FeatureStats, StatsError
from a1.data.sample import GEOMETRIES, LEGACY_GEOMETRY

log = logging.getLogger(__name__)

RESERVED_MEMBERS = ("meta", "state", "action")
MANIFEST = "manifest.json"
MANIFEST_KEYS = ("name", "kind", "views", "cameras", "state_key", "action_key", "state_dim", "action_dim",
                 "episodes", "frames", "image_size", "episodes_per_shard", "shards", "stats", "has_action",
                 "source")
SHARD_KEYS = ("url", "episodes", "frames", "bytes")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ShardError(ValueError):
    """A shard or one of its records is unreadable; the message names the shard (and key)."""

    def __init__(self, message: str, url: str = "", key: str = ""):
        super().__init__(message)
        self.message, self.url, self.key = message, url, key

    def __str__(self) -> str:  # webdataset appends context to ``args``; keep the message clean
        return self.message


def safe_name(name: str) -> str:
    """``name`` with every character outside [A-Za-z0-9_-] replaced by ``_`` (key/file-name safe)."""
    out = re.sub(r"[^A-Za-z0-9_-]", "_", str(name))
    if not out:
        raise ValueError(f"dataset name {name!r} is empty")
    return out


def record_key(dataset: str, episode: int) -> str:
    return f"{safe_name(dataset)}/{int(episode):06d}"


@dataclass(eq=False)
class EpisodeRecord:
    """One whole episode in memory; implements the `a1.data.sample.EpisodeData` protocol."""

    dataset: str
    episode: int
    length: int
    task_strings: list[str]
    tasks: list[int] | str
    """Per-frame indices into ``task_strings``, or one instruction for the whole episode."""
    views: dict[str, np.ndarray]
    """view name -> (length, 3, H, W) uint8 frames."""
    state: np.ndarray | None = None
    action: np.ndarray | None = None
    url: str = field(default="", compare=False)
    """The shard it was read from ("" when built in memory)."""

    def __post_init__(self) -> None:
        where = f"{self.key}"
        if self.length <= 0:
            raise ValueError(f"{where}: episode length must be positive, got {self.length}")
        if (self.state is None) != (self.action is None):
            raise ValueError(f"{where}: state and action must both be given or both be None")
        for name in ("state", "action"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v)
                if v.ndim == 1:
                    v = v[:, None]
                if v.ndim != 2 or v.shape[0] != self.length:
                    raise ValueError(f"{where}: {name} must be ({self.length}, dim), got {v.shape}")
                setattr(self, name, np.ascontiguousarray(v, dtype=np.float32))
        for view, frames in self.views.items():
            if view in RESERVED_MEMBERS or not re.fullmatch(r"[A-Za-z0-9_-]+", view):
                raise ValueError(f"{where}: invalid view name {view!r}")
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[:2] != (self.length, 3):
                raise ValueError(f"{where}: view {view!r} frames must be ({self.length}, 3, H, W) uint8, "
                                 f"got {frames.shape} {frames.dtype}")
        if isinstance(self.tasks, str):
            if not self.task_strings:
                self.task_strings = [self.tasks]
        else:
            self.tasks = [int(i) for i in self.tasks]
            if len(self.tasks) != self.length:
                raise ValueError(f"{where}: {len(self.tasks)} task indices for {self.length} frames")
            if self.tasks and not 0 <= min(self.tasks) <= max(self.tasks) < len(self.task_strings):
                raise ValueError(f"{where}: task index outside task_strings ({len(self.task_strings)})")

    # ------------------------------------------------------------------ EpisodeData
    def instruction(self, t: int) -> str:
        if not 0 <= t < self.length:
            raise IndexError(f"{self.key}: frame {t} outside an episode of {self.length} frames")
        return self.tasks if isinstance(self.tasks, str) else self.task_strings[self.tasks[t]]

    def vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.state is None else (self.state, self.action)

    def frames(self, view: str, indices: np.ndarray) -> np.ndarray | None:
        frames = self.views.get(view)
        if frames is None:
            return None
        return frames[np.asarray(indices, dtype=np.int64)]

    # ------------------------------------------------------------------ misc
    def __eq__(self, other: object) -> bool:
        """Exact equality of everything but ``url`` (arrays: same dtype, shape and values)."""
        if not isinstance(other, EpisodeRecord):
            return NotImplemented

        def same(a, b) -> bool:
            if a is None or b is None:
                return a is None and b is None
            return a.dtype == b.dtype and np.array_equal(a, b)

        return (self.meta() == other.meta() and same(self.state, other.state)
                and same(self.action, other.action)
                and all(same(self.views[v], other.views[v]) for v in self.views))

    __hash__ = None  # mutable, array-valued

    @property
    def key(self) -> str:
        return record_key(self.dataset, self.episode)

    @property
    def has_action(self) -> bool:
        return self.state is not None

    def meta(self) -> dict:
        return {"dataset": self.dataset, "episode": int(self.episode), "length": int(self.length),
                "tasks": self.tasks, "task_strings": list(self.task_strings), "views": list(self.views),
                "has_action": self.has_action}

    def to_sample(self) -> dict[str, bytes | str]:
        """The webdataset sample dict (``__key__`` plus member suffix -> bytes)."""
        out: dict[str, bytes | str] = {"__key__": self.key,
                                       "meta.json": json.dumps(self.meta(), sort_keys=True).encode()}
        if self.has_action:
            out["state.npy"] = _npy_bytes(self.state)
            out["action.npy"] = _npy_bytes(self.action)
        for view, frames in self.views.items():
            out[f"{view}.npz"] = _npz_bytes(frames)
        return out

    @classmethod
    def from_sample(cls, sample: dict, url: str = "") -> EpisodeRecord:
        """Decode a webdataset sample dict; any problem raises `ShardError` naming shard and key."""
        key = sample.get("__key__", "?")
        where = f"{url}: record {key!r}"

        def member(name: str) -> bytes:
            if name not in sample:
                present = sorted(k for k in sample if not k.startswith("__"))
                raise ShardError(f"{where}: missing member {name!r} (members: {present})", url, key)
            return sample[name]

        try:
            meta = json.loads(member("meta.json"))
            if not isinstance(meta, dict):
                raise ValueError("meta.json is not an object")
            for k in ("dataset", "episode", "length", "tasks", "task_strings", "views", "has_action"):
                if k not in meta:
                    raise ValueError(f"meta.json lacks {k!r}")
            views = {v: _load_npz(member(f"{v}.npz")) for v in meta["views"]}
            state = action = None
            if meta["has_action"]:
                state, action = _load_npy(member("state.npy")), _load_npy(member("action.npy"))
            rec = cls(meta["dataset"], int(meta["episode"]), int(meta["length"]), list(meta["task_strings"]),
                      meta["tasks"], views, state, action, url=url)
        except ShardError:
            raise
        except Exception as e:  # json/zip/npy decoding, shape checks
            raise ShardError(f"{where}: cannot decode ({type(e).__name__}: {e})", url, key) from e
        if rec.key != key:
            raise ShardError(f"{where}: meta.json names {rec.key!r}", url, key)
        return rec


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _npz_bytes(frames: np.ndarray) -> bytes:
    """Like ``np.savez_compressed(buf, frames=...)`` but with a fixed zip timestamp (reproducible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("frames.npy", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, _npy_bytes(frames))
    return buf.getvalue()


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _load_npz(data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return z["frames"]


# ---------------------------------------------------------------------------- writing
def write_shard(path: str | Path, records: Iterable[EpisodeRecord],
                on_record: Callable[[EpisodeRecord], None] | None = None) -> dict:
    """Write ``records`` into one shard at ``path`` atomically (``path.tmp`` then rename).

    Returns ``{"url": file name, "keys", "episodes", "frames", "bytes"}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    keys, episodes, frames = [], [], 0
    try:
        with open(tmp, "wb") as f:
            writer = wds.TarWriter(f, mtime=0.0, user="a1", group="a1", encoder=False)
            try:
                for rec in records:
                    writer.write(rec.to_sample())
                    keys.append(rec.key)
                    episodes.append(int(rec.episode))
                    frames += int(rec.length)
                    if on_record is not None:
                        on_record(rec)
            finally:
                writer.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"url": path.name, "keys": keys, "episodes": episodes, "frames": frames,
            "bytes": path.stat().st_size}


def write_shards(
    episodes: Iterable[EpisodeRecord | tuple[str, EpisodeRecord]],
    out_dir: str | Path,
    shard_prefix: str,
    max_episodes_per_shard: int | None = 16,
    max_bytes: int | None = None,
    start_shard: int = 0,
) -> list[dict]:
    """Write records into ``out_dir/{shard_prefix}-{shard:05d}.tar``, a new shard after
    ``max_episodes_per_shard`` records or once a shard holds ``max_bytes`` (at least one record per
    shard). Items may be records or ``(name, record)`` pairs (the name is ignored: keys come from
    the record). Returns the `write_shard` summaries."""
    if not max_episodes_per_shard and not max_bytes:
        raise ValueError("give max_episodes_per_shard and/or max_bytes")
    prefix = safe_name(shard_prefix)
    out_dir = Path(out_dir)
    it = iter(episodes)
    pending: list[EpisodeRecord] = []
    summaries: list[dict] = []
    shard = start_shard

    def take() -> EpisodeRecord | None:
        if pending:
            return pending.pop()
        item = next(it, None)
        return item[1] if isinstance(item, tuple) else item

    while True:
        first = take()
        if first is None:
            return summaries

        def group(first=first, shard=shard):
            rec: EpisodeRecord | None = first
            n = 0
            while rec is not None:
                yield rec
                n += 1
                if max_episodes_per_shard and n >= max_episodes_per_shard:
                    return
                rec = take()
                if rec is not None and max_bytes and _written(out_dir, prefix, shard) >= max_bytes:
                    pending.append(rec)
                    return

        summaries.append(write_shard(out_dir / f"{prefix}-{shard:05d}.tar", group()))
        shard += 1


def _written(out_dir: Path, prefix: str, shard: int) -> int:
    tmp = out_dir / f"{prefix}-{shard:05d}.tar.tmp"
    try:
        return tmp.stat().st_size
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------- reading
class ShardReader:
    """Iterator over the `EpisodeRecord` s of ``urls`` (see `read_episodes`).

    ``skipped`` counts records lost to errors in ``on_error="skip"`` mode (a tar-level failure
    counts once, together with the partial record it cuts off); ``errors`` keeps their messages."""

    def __init__(self, urls: str | Sequence[str | Path], shuffle: bool = False, seed: int = 0,
                 on_error: str = "raise", log_skips: bool = True):
        """``log_skips=False``: skipped records are only counted (the caller logs at its own rate)."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.urls = [str(urls)] if isinstance(urls, (str, Path)) else [str(u) for u in urls]
        self.shuffle, self.seed, self.on_error, self.log_skips = shuffle, seed, on_error, log_skips
        self.skipped = 0
        self.errors: list[str] = []
        self._it: Iterator[EpisodeRecord] | None = None

    def shard_order(self) -> list[str]:
        if not self.shuffle:
            return list(self.urls)
        perm = np.random.default_rng(self.seed).permutation(len(self.urls))
        return [self.urls[i] for i in perm]

    def __iter__(self) -> Iterator[EpisodeRecord]:
        return self

    def __next__(self) -> EpisodeRecord:
        if self._it is None:
            self._it = self._generate()
        return next(self._it)

    def _skip(self, err: ShardError) -> None:
        self.skipped += 1
        self.errors.append(err.message)
        if self.log_skips:
            log.warning("skipping: %s (%d skipped so far)", err.message, self.skipped)

    def _generate(self) -> Iterator[EpisodeRecord]:
        for url in self.shard_order():
            tar_failed = [False]  # a tar-level error was counted; the next bad record is its victim

            def handler(exn: BaseException, url=url, tar_failed=tar_failed) -> bool:
                if isinstance(exn, ShardError):
                    raise exn
                msg = str(exn.args[0]) if exn.args else repr(exn)
                err = ShardError(f"{url}: unreadable shard ({type(exn).__name__}: {msg})", url)
                if self.on_error == "raise":
                    raise err from exn
                if tar_failed[0]:
                    if self.log_skips:
                        log.warning("skipping (same shard): %s", err.message)
                else:
                    tar_failed[0] = True
                    self._skip(err)
                return True

            ds = wds.WebDataset([url], handler=handler, shardshuffle=False, nodesplitter=None,
                                workersplitter=None, empty_check=False)
            for sample in ds:
                try:
                    rec = EpisodeRecord.from_sample(sample, url)
                except ShardError as err:
                    if self.on_error == "raise":
                        raise
                    if tar_failed[0]:
                        tar_failed[0] = False  # the partial record of the already counted failure
                        if self.log_skips:
                            log.warning("skipping (same shard failure): %s", err.message)
                    else:
                        self._skip(err)
                    continue
                yield rec


def read_episodes(urls: str | Sequence[str | Path], shuffle: bool = False, seed: int = 0,
                  on_error: str = "raise", log_skips: bool = True) -> ShardReader:
    """Stream the episodes of ``urls`` (the shards this caller owns: no node/worker splitting),
    shards in order or, with ``shuffle``, in an order drawn from ``seed``. Returns a `ShardReader`
    (an iterator of `EpisodeRecord`; its ``skipped`` counts records dropped with
    ``on_error="skip"``)."""
    return ShardReader(urls, shuffle=shuffle, seed=seed, on_error=on_error, log_skips=log_skips)


def check_shard(path: str | Path, expected: Mapping[str, int], views: Sequence[str] | None = None) -> None:
    """Raise `ShardError` unless the shard at ``path`` reads back completely: exactly the records
    ``expected`` (key -> episode length), in that order, every member decodable, and (when given)
    each record holding exactly ``views``."""
    path = str(path)
    got: list[str] = []
    for rec in ShardReader([path]):
        if rec.key not in expected:
            raise ShardError(f"{path}: unexpected record {rec.key!r}", path, rec.key)
        if rec.length != expected[rec.key]:
            raise ShardError(f"{path}: record {rec.key!r} has {rec.length} frames, the source episode "
                             f"{expected[rec.key]}", path, rec.key)
        if views is not None and list(rec.views) != list(views):
            raise ShardError(f"{path}: record {rec.key!r} holds views {list(rec.views)}, expected {list(views)}",
                             path, rec.key)
        got.append(rec.key)
    if got != list(expected):
        missing = [k for k in expected if k not in got]
        raise ShardError(f"{path}: holds {len(got)} of {len(expected)} records"
                         + (f" (missing {missing[:3]}{' ...' if len(missing) > 3 else ''})" if missing else
                            " (out of order)"), path)


def read_manifest(folder: str | Path) -> dict:
    """The checked ``manifest.json`` of a shard folder (see the module docstring)."""
    file = Path(folder) / MANIFEST
    if not file.is_file():
        raise ShardError(f"{file} not found: make the shards with `python -m a1.data.convert SRC {folder}`",
                         str(file))
    try:
        m = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShardError(f"{file}: invalid JSON ({err})", str(file)) from err
    if not isinstance(m, dict):
        raise ShardError(f"{file}: expected a JSON object, got {type(m).__name__}", str(file))
    for key in MANIFEST_KEYS:
        if key not in m:
            raise ShardError(f"{file}: missing key {key!r} (written by an older a1? re-convert with "
                             f"`python -m a1.data.convert SRC {folder} --overwrite`)", str(file), key)
    _check_layout(m, file)
    m["geometry"] = manifest_geometry(m)
    _check_shard_list(m, file)
    _check_manifest_stats(m, file)
    return m


def _bad(file: Path, key: str, why: str) -> ShardError:
    return ShardError(f"{file}: {key}: {why}", str(file), key)


def _check_layout(m: dict, file: Path) -> None:
    if m["kind"] not in ("lerobot", "human_video"):
        raise _bad(file, "kind", f"{m['kind']!r} is not 'lerobot' or 'human_video'")
    if m["has_action"] is not (m["kind"] == "lerobot"):
        raise _bad(file, "has_action", f"{m['has_action']!r} does not fit kind {m['kind']!r}")
    views, cameras = m["views"], m["cameras"]
    if not isinstance(views, list) or not views or not all(isinstance(v, str) for v in views):
        raise _bad(file, "views", f"expected a non-empty list of view names, got {views!r}")
    if not isinstance(cameras, dict) or list(cameras) != views:
        raise _bad(file, "cameras", f"expected a mapping of every view {views} to a camera key or null, "
                                    f"got {cameras!r}")
    if all(k is None for k in cameras.values()):
        raise _bad(file, "cameras", "every view maps to null: the shards hold no image")
    for key in ("episodes", "frames", "episodes_per_shard"):
        if not isinstance(m[key], int) or isinstance(m[key], bool) or m[key] < (1 if key != "frames" else 0):
            raise _bad(file, key, f"expected a positive integer, got {m[key]!r}")
    if m["image_size"] is not None and (not isinstance(m["image_size"], int) or m["image_size"] < 1):
        raise _bad(file, "image_size", f"expected null or a positive integer, got {m['image_size']!r}")
    if "geometry" in m and m["geometry"] not in ((None,) if m["image_size"] is None else GEOMETRIES):
        raise _bad(file, "geometry", f"{m['geometry']!r} does not fit image_size {m['image_size']!r} (expected "
                                     f"{'null' if m['image_size'] is None else ' or '.join(GEOMETRIES)})")
    for key in ("state_dim", "action_dim"):
        value = m[key]
        ok = value is None if not m["has_action"] else isinstance(value, int) and value >= 1
        if not ok:
            raise _bad(file, key, f"{value!r} does not fit kind {m['kind']!r}")


def _check_shard_list(m: dict, file: Path) -> None:
    shards = m["shards"]
    if not isinstance(shards, list) or not shards:
        raise _bad(file, "shards", "expected a non-empty list")
    episodes = frames = 0
    for i, sh in enumerate(shards):
        where = f"shards[{i}]"
        if not isinstance(sh, dict):
            raise _bad(file, where, f"expected a mapping with {list(SHARD_KEYS)}")
        for key in SHARD_KEYS:
            if key not in sh:
                raise _bad(file, f"{where}.{key}", "missing")
        if not isinstance(sh["episodes"], list) or not isinstance(sh["frames"], int):
            raise _bad(file, where, f"episodes must be a list and frames an integer, got {sh!r}")
        if not isinstance(sh["url"], str) or not (file.parent / sh["url"]).is_file():
            raise _bad(file, f"{where}.url", f"shard file {file.parent / str(sh['url'])} not found")
        episodes += len(sh["episodes"])
        frames += int(sh["frames"])
    if (episodes, frames) != (m["episodes"], m["frames"]):
        raise _bad(file, "shards", f"list {episodes} episodes / {frames} frames, the manifest says "
                                   f"{m['episodes']} / {m['frames']}")


def _check_manifest_stats(m: dict, file: Path) -> None:
    stats = m["stats"]
    if not m["has_action"]:
        if stats not in ({}, None):
            raise _bad(file, "stats", "a dataset without actions has no statistics")
        return
    if not isinstance(stats, dict):
        raise _bad(file, "stats", f"expected a mapping with 'state' and 'action', got {stats!r}")
    for feature in ("state", "action"):
        if feature not in stats:
            raise _bad(file, f"stats.{feature}", "missing")
        try:
            st = FeatureStats.from_dict(stats[feature], f"{file}: stats.{feature}")
        except (KeyError, StatsError) as err:
            raise ShardError(str(err.args[0]), str(file), f"stats.{feature}") from err
        if st.dims != m[f"{feature}_dim"]:
            raise _bad(file, f"stats.{feature}", f"{st.dims} dims, but {feature}_dim is {m[f'{feature}_dim']}")


def manifest_geometry(m: dict) -> str | None:
    """How a manifest's frames were made ``image_size``²: its ``geometry``; absent (written before a1
    recorded it), `a1.data.sample.LEGACY_GEOMETRY` — the only geometry there was — or None for frames
    kept as recorded."""
    return m.get("geometry", LEGACY_GEOMETRY if m.get("image_size") is not None else None)


def check_geometry(m: dict, geometry: str, folder: str | Path) -> None:
    """Refuse reading shards whose frames were resized with another geometry than ``geometry``
    (``data.options.geometry``): their squares would silently be the other kind."""
    stored = manifest_geometry(m)
    if stored is not None and stored != geometry:
        raise ShardError(f"{Path(folder) / MANIFEST}: frames were made {m['image_size']}² with geometry {stored!r}, "
                         f"but data.options.geometry is {geometry!r}; re-convert with `python -m a1.data.convert SRC "
                         f"{folder} --image-size {m['image_size']} --geometry {geometry} --overwrite` (or without "
                         f"--image-size), or set data.options.geometry: {stored}", str(Path(folder) / MANIFEST),
                         "geometry")


def manifest_urls(out_dir: str | Path) -> list[str]:
    """Absolute shard paths listed in ``out_dir/manifest.json`` (read with `read_manifest`), in shard order."""
    out_dir = Path(out_dir)
    return [str(out_dir / s["url"]) for s in read_manifest(out_dir)["shards"]]
