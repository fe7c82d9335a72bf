"""Print data-loading figures (issue #3): samples/s from shards vs mp4, and memory per worker.

    python scripts/benchmark_data.py [--out /tmp/a1_bench] [--datasets 20] [--workers 4]

1. Throughput: batches from the LeRobot folder (mp4 decoding) and from webdataset shards, with
   0 and 2 DataLoader workers.
2. Peak memory each worker adds (RSS over its start-up RSS) with the balanced assignment (each worker opens only its
   datasets) versus every worker opening every dataset (the naive LeRobot-style layout), over
   ``--datasets`` synthetic datasets and ``--workers`` workers.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from pathlib import Path

import numpy as np
from torch.utils.data import get_worker_info

from a1.data.convert import convert
from a1.data.datamodule import A1DataModule, DataOptions
from a1.data.streams import MixtureStream
from a1.data.sources import DatasetConfig
from a1.sim.synthetic import generate

OPTS = DataOptions(chunk_size=50, image_size=64, max_text_tokens=48)


def throughput(datasets: list[DatasetConfig], workers: int, batches: int, batch_size: int = 16) -> float:
    dm = A1DataModule(datasets, OPTS, batch_size=batch_size, num_workers=workers)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)  # start-up (worker spawn, first opens) not counted
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t0)


class OpenAll(MixtureStream):
    """Baseline: every worker opens every dataset and samples by the global weights."""

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        pools = {d: self._pool(d, worker) for d in range(len(self.datasets))}
        for d in pools.values():  # touch every dataset's columns, as an eager loader would
            for ep in getattr(d, "episodes", [])[:]:
                ep.vectors()
        rng = np.random.default_rng([self.seed, worker])
        w = self.mixture.weights
        o = self.opts
        while True:
            d = int(rng.choice(len(w), p=w))
            episode, t, index = pools[d].draw()
            from a1.data.sample import make_sample

            yield make_sample(episode, t, o.views, o.history, o.chunk_size, d, "bench", o.image_size)


def _rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_BASE: dict[str, float] = {}


def _remember_base(_worker_id: int) -> None:
    _BASE["rss"] = _rss_mb()


def worker_memory(datasets: list[DatasetConfig], workers: int, open_all: bool, batches: int) -> list[float]:
    """Memory (MB) each worker adds over its start-up RSS, peak over ``batches`` batches per worker."""
    dm = A1DataModule(datasets, OPTS, batch_size=4, num_workers=workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    if open_all:
        loader.dataset.__class__ = OpenAll
    collate = loader.collate_fn

    def collate_with_rss(samples):
        batch = collate(samples)
        batch.dataset_id[:] = int((_rss_mb() - _BASE.get("rss", 0.0)) * 1000)  # smuggle the figure out (kB)
        return batch

    loader.collate_fn = collate_with_rss
    loader.worker_init_fn = _remember_base
    peaks: dict[int, float] = {}
    for i, batch in enumerate(itertools.islice(iter(loader), batches * workers)):
        peaks[i % workers] = max(peaks.get(i % workers, 0.0), batch.dataset_id[0].item() / 1000)
    return [peaks[w] for w in sorted(peaks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/a1_bench_data")
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    if not (out / "main" / "robot").exists():
        generate(out / "main", episodes=16, human_clips=0, image_size=64, frames_per_episode=60, overwrite=True)
        convert(DatasetConfig(name="robot", weight=1.0, path=str(out / "main" / "robot")), out / "main" / "shards",
                OPTS.views, progress=False)
    folder = [DatasetConfig(name="robot", weight=1.0, path=str(out / "main" / "robot"))]
    shards = [DatasetConfig(name="robot", weight=1.0, shards=str(out / "main" / "shards"))]
    for workers in (0, 2):
        f = throughput(folder, workers, args.batches)
        s = throughput(shards, workers, args.batches)
        print(f"samples/s with {workers} workers: mp4 folder {f:.1f}, shards {s:.1f} (×{s / f:.1f})")

    many = []
    for i in range(args.datasets):
        root = out / f"ds{i:02d}"
        if not (root / "robot").exists():
            generate(root, episodes=4, human_clips=0, image_size=64, frames_per_episode=60, seed=i, overwrite=True)
        many.append(DatasetConfig(name=f"ds{i:02d}", weight=1.0 + i % 3, path=str(root / "robot")))
    for open_all in (False, True):
        peaks = worker_memory(many, args.workers, open_all, batches=5)
        label = "every worker opens all" if open_all else "balanced assignment   "
        print(f"{label}: memory added per worker {', '.join(f'{p:.0f}' for p in peaks)} MB "
              f"(mean {np.mean(peaks):.0f} MB) over {args.datasets} datasets, {args.workers} workers")


if __name__ == "__main__":
    main()
