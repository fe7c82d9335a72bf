"""``python -m a1.data.stats PATH``: normalisation statistics of a LeRobot dataset.

Mean and std of state and action are exact (accumulated over every frame in float64); the 1st
and 99th percentiles come from a seeded uniform subsample of at most ``--max-samples`` frames
(exact when the dataset is smaller). The result is written beside the data as
``PATH/a1_stats.json`` ({"state": {...}, "action": {...}, "frames", "episodes"}) in LeRobot's
per-feature layout, and travels with exported policies so deployment can un-normalise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from a1.data.lerobot import LeRobotReader
from a1.data.normalize import FeatureStats

STATS_FILE = "a1_stats.json"


class _Accumulator:
    """Exact running mean/std plus a bounded uniform subsample for quantiles."""

    def __init__(self, max_samples: int, rng: np.random.Generator) -> None:
        self.n, self.sum, self.sumsq = 0, None, None
        self.max_samples, self.rng = max_samples, rng
        self.kept: list[np.ndarray] = []
        self.seen = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self.sum is None:
            self.sum, self.sumsq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.sumsq += (x**2).sum(0)
        self.kept.append(x)
        self.seen += x.shape[0]
        if sum(k.shape[0] for k in self.kept) > 2 * self.max_samples:
            self._shrink()

    def _shrink(self) -> None:
        pool = np.concatenate(self.kept)
        keep = self.rng.choice(pool.shape[0], self.max_samples, replace=False)
        self.kept = [pool[np.sort(keep)]]

    def result(self) -> FeatureStats:
        if self.n == 0:
            raise ValueError("no frames to compute statistics from")
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sumsq / self.n - mean**2, 0.0))
        pool = np.concatenate(self.kept)
        if pool.shape[0] > self.max_samples:
            pool = pool[self.rng.choice(pool.shape[0], self.max_samples, replace=False)]
        q01, q99 = np.quantile(pool, [0.01, 0.99], axis=0)
        return FeatureStats(mean, std, q01, q99)


def compute_stats(path: str | Path, state_key: str = "observation.state", action_key: str = "action",
                  max_samples: int = 1_000_000, seed: int = 0, progress: bool = False) -> dict:
    """Statistics of ``state_key`` and ``action_key`` over every episode of a LeRobot folder."""
    reader = LeRobotReader(path)
    rng = np.random.default_rng(seed)
    acc = {"state": _Accumulator(max_samples, rng), "action": _Accumulator(max_samples, rng)}
    for ep in tqdm(reader.episodes, desc=f"stats {Path(path).name}", disable=not progress, file=sys.stderr):
        cols = reader.columns(ep, [state_key, action_key])
        for name, key in (("state", state_key), ("action", action_key)):
            values = cols[key]
            if not np.isfinite(values).all():
                raise ValueError(f"{path}: episode {ep.index}: {key} contains NaN or inf")
            acc[name].add(values)
    return {"state": acc["state"].result().to_dict(), "action": acc["action"].result().to_dict(),
            "frames": reader.num_frames, "episodes": reader.num_episodes,
            "keys": {"state": state_key, "action": action_key}}


def load_stats(path: str | Path) -> tuple[FeatureStats, FeatureStats]:
    """(state, action) statistics from ``PATH/a1_stats.json``; a clear error when absent."""
    file = Path(path) / STATS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: run `python -m a1.data.stats {path}`")
    data = json.loads(file.read_text())
    return (FeatureStats.from_dict(data.get("state", {}), f"{file}:state"),
            FeatureStats.from_dict(data.get("action", {}), f"{file}:action"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.data.stats", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="LeRobot dataset folder (v3.0 or v2.1)")
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--max-samples", type=int, default=1_000_000, help="frames kept for the percentiles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        stats = compute_stats(args.path, args.state_key, args.action_key, args.max_samples, args.seed, progress=True)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.path) / STATS_FILE
    out.write_text(json.dumps(stats, indent=1))
    print(f"wrote {out}: {stats['frames']} frames, {stats['episodes']} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
