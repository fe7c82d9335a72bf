"""Normalisation statistics of LeRobot datasets, and where a dataset's statistics come from.

    python -m a1.data.stats DATASET [--out FILE] [--state-key K] [--action-key K]
        [--action-mode absolute|delta] [--absolute-dims 6,13] [--chunk-size K]

computes mean/std/q01/q99 of the state and action columns and writes them to FILE, by default
the cache file `stats_cache_path` ``$A1_CACHE/stats/<folder>-<hash>.json`` (``A1_CACHE``
defaults to ``.cache/a1``; the hash covers the resolved folder, the two column names, the
content of ``meta/info.json`` and, for delta actions, the action settings, so a changed dataset
gets a new file). a1 never writes into a dataset folder. Mean and std are exact (float64 over
every value); the percentiles come from a seeded uniform subsample of at most ``--max-samples``
values (exact when the dataset is smaller). The file holds ``{"state": {...}, "action": {...},
"keys", "frames", "episodes", "dataset", "action_mode", "absolute_dims", "chunk_size"}`` in
LeRobot's per-feature layout.

**Statistics of what the model predicts.** With ``action_mode: delta`` the model predicts, for
the sample at frame t, a_{t+i} − q_t for i = 0 … k−1 (k = the chunk size) on every dim not in
``absolute_dims``; the action statistics are computed over exactly these values — every
(t, i) with t + i inside the episode, as the training loss sees them (padded steps are masked) —
which is why delta statistics depend on k. The state statistics are always of the raw state. A
statistics record says what it was computed for (``action_mode``, ``absolute_dims``,
``chunk_size``; records without these keys, written before delta actions existed, are absolute),
and `check_stats_record` refuses a record made for other settings than the dataset's.

`dataset_stats` is the one place that decides the statistics a dataset trains with (and that
convert writes into a shard manifest), in this order:

1. the file of the dataset's ``stats`` entry, when set (missing: ``FileNotFoundError``);
2. the cache file (an unreadable one is recomputed, with a warning);
3. LeRobot's ``meta/stats.json``, when it has mean/std/q01/q99 for both columns and the actions
   are absolute (its action statistics are of the action column, never of deltas; unusable
   values there: a warning, then 4.);
4. computed from the data, then written to the cache file (the log says where).

Every statistic passes `a1.data.normalize.FeatureStats`' checks (finite, some spread) and must
have the column's dims from ``meta/info.json``; errors name the file, dataset and feature.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from a1.data.lerobot import DatasetError, LeRobotReader
from a1.data.normalize import ACTION_MODES, FeatureStats, StatsError, delta_dims, to_delta
from a1.data.sources import DatasetConfig

log = logging.getLogger(__name__)

DEFAULT_CACHE = ".cache/a1"
STATE_KEY, ACTION_KEY = "observation.state", "action"


def cache_root() -> Path:
    """``$A1_CACHE`` (default ``.cache/a1``, relative to the working directory)."""
    return Path(os.environ.get("A1_CACHE") or DEFAULT_CACHE)


def stats_cache_path(path: str | Path, state_key: str = STATE_KEY, action_key: str = ACTION_KEY,
                     record: dict | None = None) -> Path:
    """``$A1_CACHE/stats/<folder name>-<12 hex of sha1(resolved path, keys, meta/info.json)>.json``;
    a delta `stats_record` (``None``: absolute) is part of the hash, so each setting has its file."""
    root = Path(path).resolve()
    info = root / "meta" / "info.json"
    try:
        content = info.read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f"not a LeRobot dataset: missing {info}") from err
    digest = hashlib.sha1()
    parts = [str(root).encode(), state_key.encode(), action_key.encode(), content]
    if record is not None and record["action_mode"] != "absolute":
        parts.append(json.dumps(record, sort_keys=True).encode())
    for part in parts:
        digest.update(part + b"\0")
    return cache_root() / "stats" / f"{root.name}-{digest.hexdigest()[:12]}.json"


ABSOLUTE = {"action_mode": "absolute", "absolute_dims": [], "chunk_size": None}
"""The `stats_record` of absolute actions (and of records written before delta actions existed)."""


def stats_record(action_mode: str, absolute_dims: Sequence[int], chunk_size: int | None, where: str) -> dict:
    """What action statistics are computed on: ``{"action_mode", "absolute_dims", "chunk_size"}``.
    Absolute actions: `ABSOLUTE` (the chunk size does not matter); delta actions need the model's
    chunk size k >= 1 (the targets are a_{t+i} − q_t for i < k). Errors name ``where``."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"{where}: action_mode must be one of {list(ACTION_MODES)}, got {action_mode!r}")
    if action_mode == "absolute":
        return dict(ABSOLUTE)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{where}: statistics of delta actions depend on the chunk size (the model predicts "
                         f"a_(t+i) - q_t for i < k): give model.policy.action.chunk_size (--chunk-size), got "
                         f"{chunk_size!r}")
    return {"action_mode": "delta", "absolute_dims": sorted(int(d) for d in absolute_dims), "chunk_size": chunk_size}


def dataset_record(cfg: DatasetConfig, chunk_size: int | None) -> dict:
    """The `stats_record` a dataset trains with (``chunk_size``: the model's k, needed for delta)."""
    return stats_record(cfg.action_mode, cfg.absolute_dims, chunk_size, f"dataset {cfg.name!r}")


def _describe(record: dict) -> str:
    if record.get("action_mode") == "absolute":
        return "absolute actions"
    return (f"action_mode {record.get('action_mode')!r} (absolute_dims {record.get('absolute_dims')}, "
            f"chunk_size {record.get('chunk_size')})")


def check_stats_record(data: dict, want: dict, where: str) -> None:
    """The action settings recorded in a statistics dict (a stats file, a shard manifest's ``stats``)
    equal ``want`` (a `stats_record`); missing keys mean absolute (older files). Else a
    `StatsError` naming ``where``: absolute statistics are never used for delta actions."""
    got = {k: data.get(k, ABSOLUTE[k]) for k in ABSOLUTE}
    if got["action_mode"] == "absolute":
        got = dict(ABSOLUTE)
    elif isinstance(got["absolute_dims"], list) and all(isinstance(d, int) for d in got["absolute_dims"]):
        got["absolute_dims"] = sorted(got["absolute_dims"])
    if got != want:
        flags = "" if want["action_mode"] == "absolute" else (
            f" --action-mode delta --absolute-dims {','.join(map(str, want['absolute_dims']))} "
            f"--chunk-size {want['chunk_size']}")
        raise StatsError(f"{where}: action statistics computed for {_describe(got)}, but the dataset trains with "
                         f"{_describe(want)}; recompute them for its settings (python -m a1.data.stats or "
                         f"python -m a1.data.convert with{flags or ' --action-mode absolute'})")


def chunk_deltas(states: np.ndarray, actions: np.ndarray, dims: np.ndarray, chunk_size: int) -> np.ndarray:
    """The delta-action targets of one episode, (Σ_i (L − i), Da) float64: a_{t+i} − q_t on ``dims``
    (a_{t+i} on the others) for every t and i < ``chunk_size`` with t + i inside the episode."""
    n = len(actions)
    return np.concatenate([to_delta(actions[i:], states[: n - i], dims) for i in range(min(chunk_size, n))])


class _Accumulator:
    """Exact running mean/std plus a bounded uniform subsample for quantiles."""

    def __init__(self, max_samples: int, rng: np.random.Generator) -> None:
        self.n, self.sum, self.sumsq = 0, None, None
        self.max_samples, self.rng = max_samples, rng
        self.kept: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self.sum is None:
            self.sum, self.sumsq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.sumsq += (x**2).sum(0)
        self.kept.append(x)
        if sum(k.shape[0] for k in self.kept) > 2 * self.max_samples:
            self._shrink()

    def _shrink(self) -> None:
        pool = np.concatenate(self.kept)
        keep = self.rng.choice(pool.shape[0], self.max_samples, replace=False)
        self.kept = [pool[np.sort(keep)]]

    def result(self, where: str) -> FeatureStats:
        if self.n == 0:
            raise StatsError(f"{where}: no frames to compute statistics from")
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sumsq / self.n - mean**2, 0.0))
        pool = np.concatenate(self.kept)
        if pool.shape[0] > self.max_samples:
            pool = pool[self.rng.choice(pool.shape[0], self.max_samples, replace=False)]
        q01, q99 = np.quantile(pool, [0.01, 0.99], axis=0)
        return FeatureStats(mean, std, q01, q99, where=where)


def _finite(values: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(values).reshape(len(values), -1)
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise StatsError(f"{where}: non-finite value {a[r, c]} at frame {r}, dim {c}")
    return a


def compute_stats(path: str | Path, state_key: str = STATE_KEY, action_key: str = ACTION_KEY,
                  max_samples: int = 1_000_000, seed: int = 0, progress: bool = False,
                  name: str | None = None, record: dict | None = None) -> dict:
    """Statistics of ``state_key`` and ``action_key`` over every episode of a LeRobot folder, as
    the stats-file dict; the actions as ``record`` (a `stats_record`; None: absolute) says — for
    delta, the targets of `chunk_deltas`. NaN/inf in the data, or a feature without spread, is a
    `StatsError` naming the dataset, the feature (and episode, frame and dim)."""
    record = dict(ABSOLUTE) if record is None else record
    reader = LeRobotReader(path)
    label = f"dataset {name!r} ({path})" if name else str(path)
    rng = np.random.default_rng(seed)
    acc = {"state": _Accumulator(max_samples, rng), "action": _Accumulator(max_samples, rng)}
    dims = None
    for ep in tqdm(reader.episodes, desc=f"stats {Path(path).name}", disable=not progress, file=sys.stderr):
        cols = reader.columns(ep, [state_key, action_key])
        state, action = (_finite(cols[k], f"{label}: episode {ep.index}: {k}") for k in (state_key, action_key))
        acc["state"].add(state)
        if record["action_mode"] == "delta":
            if dims is None:
                dims = delta_dims(action.shape[1], state.shape[1], record["absolute_dims"], label)
            action = chunk_deltas(state, action, dims, record["chunk_size"])
        acc["action"].add(action)
    return {"state": acc["state"].result(f"{label}: {state_key}").to_dict(),
            "action": acc["action"].result(f"{label}: {action_key}").to_dict(),
            "keys": {"state": state_key, "action": action_key},
            "frames": reader.num_frames, "episodes": reader.num_episodes,
            "dataset": str(Path(path).resolve()), **record}


def read_stats_file(file: str | Path, state_key: str = STATE_KEY, action_key: str = ACTION_KEY,
                    record: dict | None = None) -> tuple[FeatureStats, FeatureStats]:
    """(state, action) statistics of a file written by `compute_stats` / this CLI, checked: valid
    JSON, both features present and sound, computed for the same columns and the same action
    settings (``record``, a `stats_record`; None: absolute — `check_stats_record`)."""
    file = Path(file)
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise StatsError(f"{file}: invalid JSON ({err})") from err
    if not isinstance(data, dict):
        raise StatsError(f"{file}: expected a JSON object with 'state' and 'action' statistics")
    keys = data.get("keys")
    if isinstance(keys, dict) and (keys.get("state"), keys.get("action")) != (state_key, action_key):
        raise StatsError(f"{file}: statistics of columns state={keys.get('state')!r}, action={keys.get('action')!r}, "
                         f"but the dataset uses state_key={state_key!r}, action_key={action_key!r}")
    check_stats_record(data, dict(ABSOLUTE) if record is None else record, str(file))
    out = []
    for feature in ("state", "action"):
        if feature not in data:
            raise StatsError(f"{file}: missing key {feature!r}")
        try:
            out.append(FeatureStats.from_dict(data[feature], f"{file}: {feature}"))
        except KeyError as err:
            raise StatsError(err.args[0]) from err
    return out[0], out[1]


def write_stats_file(file: str | Path, stats: dict) -> Path:
    """Write a stats dict atomically (a reader never sees half a file); returns the path."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=file.name + ".", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(stats, f, indent=1)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def _lerobot_meta(root: Path, state_key: str, action_key: str) -> tuple[FeatureStats, FeatureStats] | None:
    """LeRobot's ``meta/stats.json`` statistics when complete; ``None`` (with a warning when the
    file is there but unusable) otherwise."""
    meta = root / "meta" / "stats.json"
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
        entries = [data.get(k) if isinstance(data, dict) else None for k in (state_key, action_key)]
        if not all(isinstance(e, dict) and {"mean", "std", "q01", "q99"} <= set(e) for e in entries):
            return None  # older LeRobot stats without percentiles: compute our own
        return (FeatureStats.from_dict(entries[0], f"{meta}: {state_key}"),
                FeatureStats.from_dict(entries[1], f"{meta}: {action_key}"))
    except (json.JSONDecodeError, StatsError) as err:
        log.warning("%s is unusable (%s); computing the statistics from the data instead", meta, err)
        return None


def _check_dims(cfg: DatasetConfig, stats: tuple[FeatureStats, FeatureStats], origin: str) -> None:
    """Each feature's statistics have the dims ``meta/info.json`` gives its column."""
    info = Path(cfg.path) / "meta" / "info.json"
    try:
        features = json.loads(info.read_text())["features"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"dataset {cfg.name!r}: cannot read the features of {info} ({err!r})") from err
    for st, key in zip(stats, (cfg.state_key, cfg.action_key)):
        if key not in features:
            raise DatasetError(f"dataset {cfg.name!r}: no feature {key!r} in {info} (features: {sorted(features)})")
        want = int(np.prod(features[key].get("shape") or [1]))
        if st.dims != want:
            raise StatsError(f"dataset {cfg.name!r}: statistics from {origin} have {st.dims} dims for {key!r}, "
                             f"its meta/info.json says {want}")


def dataset_stats(cfg: DatasetConfig, chunk_size: int | None = None) -> tuple[FeatureStats, FeatureStats, str]:
    """(state, action, origin) statistics of a ``kind: lerobot`` folder dataset, found in the order
    of the module docstring, for its action settings (``chunk_size``: the model's k, needed when
    ``cfg.action_mode`` is delta); ``origin`` says where they came from."""
    if cfg.kind != "lerobot" or cfg.path is None:
        raise ValueError(f"dataset {cfg.name!r}: statistics are computed from LeRobot folders "
                         f"(kind=lerobot with a path); got kind={cfg.kind!r}, path={cfg.path!r}")
    root, keys, record = Path(cfg.path), (cfg.state_key, cfg.action_key), dataset_record(cfg, chunk_size)
    if cfg.stats is not None:
        file = Path(cfg.stats)
        if not file.is_file():
            raise FileNotFoundError(f"dataset {cfg.name!r}: stats file {file} not found (write it with "
                                    f"`python -m a1.data.stats {root} --out {file}`, or remove 'stats')")
        stats, origin = read_stats_file(file, *keys, record), f"file {file}"
    else:
        stats, origin = _found_or_computed(cfg, root, record)
    _check_dims(cfg, stats, origin)
    cfg.check_action_dims(stats[0].dims, stats[1].dims, f"statistics from {origin}")
    return stats[0], stats[1], origin


def _found_or_computed(cfg: DatasetConfig, root: Path, record: dict) -> tuple[tuple[FeatureStats, FeatureStats], str]:
    keys = (cfg.state_key, cfg.action_key)
    cache = stats_cache_path(root, *keys, record)
    if cache.is_file():
        try:
            return read_stats_file(cache, *keys, record), f"cache {cache}"
        except StatsError as err:
            log.warning("dataset %r: ignoring the unusable cache file (%s); recomputing", cfg.name, err)
    if record["action_mode"] == "absolute":
        meta = _lerobot_meta(root, *keys)
        if meta is not None:
            return meta, "lerobot meta/stats.json"
    else:
        log.info("dataset %r: delta actions: LeRobot's meta/stats.json (if any) describes the absolute action "
                 "column, so the statistics of the deltas are computed from the data", cfg.name)
    data = compute_stats(root, *keys, name=cfg.name, record=record)
    stats = (FeatureStats.from_dict(data["state"], f"dataset {cfg.name!r}: {keys[0]}"),
             FeatureStats.from_dict(data["action"], f"dataset {cfg.name!r}: {keys[1]}"))
    try:
        write_stats_file(cache, data)
    except OSError as err:
        log.warning("dataset %r: computed statistics from %d frames; cannot cache them to %s (%s)",
                    cfg.name, data["frames"], cache, err)
        return stats, f"computed (not cached: {err})"
    log.warning("dataset %r: no statistics found; computed them from %d frames and cached them to %s",
                cfg.name, data["frames"], cache)
    return stats, f"computed (cached to {cache})"


def parse_dims(spec: str) -> list[int]:
    """``"6,13"`` → ``[6, 13]`` (the ``--absolute-dims`` flag; empty: none)."""
    try:
        return [int(d) for d in spec.split(",") if d.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated dims such as 6,13, got {spec!r}") from err


def add_action_flags(parser: argparse.ArgumentParser) -> None:
    """``--action-mode``, ``--absolute-dims``, ``--chunk-size`` (this CLI and ``python -m a1.data.convert``)."""
    parser.add_argument("--action-mode", choices=ACTION_MODES, default="absolute",
                        help="statistics of the action column (absolute) or of the deltas to the state the model "
                             "predicts (delta); the dataset's action_mode")
    parser.add_argument("--absolute-dims", type=parse_dims, default=[],
                        help="with delta: action dims that stay absolute, e.g. 6,13 (the dataset's absolute_dims)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="with delta: the model's chunk size k (model.policy.action.chunk_size)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.data.stats", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="LeRobot dataset folder (v3.0 or v2.1); never written to")
    parser.add_argument("--out", default=None, help="statistics file to write (default: the cache file "
                                                    "$A1_CACHE/stats/<folder>-<hash>.json that training reads)")
    parser.add_argument("--state-key", default=STATE_KEY)
    parser.add_argument("--action-key", default=ACTION_KEY)
    parser.add_argument("--max-samples", type=int, default=1_000_000, help="frames kept for the percentiles")
    parser.add_argument("--seed", type=int, default=0)
    add_action_flags(parser)
    args = parser.parse_args(argv)
    try:
        record = stats_record(args.action_mode, args.absolute_dims, args.chunk_size, str(args.path))
        out = Path(args.out) if args.out else stats_cache_path(args.path, args.state_key, args.action_key, record)
        stats = compute_stats(args.path, args.state_key, args.action_key, args.max_samples, args.seed,
                              progress=True, record=record)
        write_stats_file(out, stats)
    except (ValueError, FileNotFoundError, OSError) as err:  # DatasetError, StatsError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyError as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {stats['frames']} frames, {stats['episodes']} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
