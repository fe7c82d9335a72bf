"""The sample streams of ``A1DataModule``: endless weighted training samples, fixed validation samples.

``MixtureStream`` is the training ``IterableDataset`` of one rank: each DataLoader worker serves
its own (rank × worker) slot of the balanced assignment and draws datasets with that slot's
probabilities. ``FixedSamples`` is a deterministic list of validation samples.

Bad samples have a bound. A sample that cannot be cut (corrupt or missing frame, unreadable shard
record, NaN) is skipped and counted per dataset; the skips travel with the next sample a worker
yields (``Sample.skipped``) into ``Batch.skipped`` and the ``data/skipped/<dataset>`` metrics.
A dataset whose samples keep failing raises `BadDatasetError` naming it and its last error (which
names the file), per dataset and worker: after ``max_consecutive`` (50) failed attempts in a row,
or when after at least ``min_attempts`` (200) attempts more than ``max_fraction`` (10 %) failed;
counters never restart with a new pass. For shards, unreadable records count under the same rule
and one complete pass over a dataset's shards with no readable record is an error naming the
shard folder. Validation retries a bad sample with the next deterministic candidate of the same
dataset and applies the same rule (``min_attempts`` capped at the dataset's validation samples).
See `a1.data.pools.BadSampleLimit`. Skip lines are logged for the first few skips of a dataset,
then every ``log_every``-th.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from a1.data.lerobot import DatasetError
from a1.data.mixture import SlotMixture
from a1.data.pools import (
    BadDatasetError,
    BadSampleLimit,
    EpisodePool,
    ShardPasses,
    SkipBudget,
    StreamPool,
    split_episodes,
)
from a1.data.sample import DEFAULT_GEOMETRY, Geometry, Sample, make_sample
from a1.data.shards import check_geometry, read_manifest
from a1.data.sources import DatasetConfig, open_source
from a1.data.video import VideoError

__all__ = ["BadDatasetError", "BadSampleLimit", "DataOptions", "FixedSamples", "MixtureStream", "SAMPLE_ERRORS"]
SAMPLE_ERRORS = (ValueError, KeyError, IndexError, OSError, VideoError, DatasetError)


@dataclass
class DataOptions:
    """What every dataset's samples share (kept in step with the model's config)."""

    views: list[str] = field(default_factory=lambda: ["head", "left_wrist", "right_wrist"])
    """Model views, in order."""
    history: int = 15
    """m: frames between t−m, t and t+m (paper: 15)."""
    chunk_size: int = 50
    """k: actions per sample."""
    max_dim: int = 32
    """State/action vectors are padded to this many dims."""
    image_size: int = 224
    """Side of the square frames put in a batch (the model resizes again for its experts)."""
    geometry: Geometry = DEFAULT_GEOMETRY
    """How camera frames become ``image_size``² squares: ``letterbox`` (keep the aspect ratio, scale
    bilinearly without antialias, pad with zeros, centred: what the released InternVLA-A1 weights
    saw) or ``stretch`` (scale each axis on its own, antialiased). Training, shard conversion and
    deployment all use this one setting; shards converted with another geometry are refused."""
    max_text_tokens: int = 48
    """Instruction length in tokens."""
    tokenizer: str | None = None
    """Pretrained folder whose tokenizer to use; ``None``: the local byte tokenizer (tiny configs)."""


def _cut(episode, t: int, d: int, where: str, opts: DataOptions, budget: SkipBudget) -> Sample | None:
    """The sample at frame t, or None when it is bad (counted by ``budget``, which raises
    `BadDatasetError` once the dataset crosses its limit). `BadDatasetError` itself is never
    mistaken for a bad sample."""
    try:
        sample = make_sample(episode, t, opts.views, opts.history, opts.chunk_size, d, where, opts.image_size,
                             opts.geometry)
    except BadDatasetError:
        raise
    except SAMPLE_ERRORS as err:
        budget.fail(f"{where}: {err}")
        return None
    budget.ok()
    return sample


class MixtureStream(IterableDataset):
    """Endless training samples of one rank; each worker serves its own slot.

    Every yielded sample carries ``skipped``: (num_datasets,) int64, the bad samples (and
    unreadable shard records) per dataset that this worker skipped since its previous sample."""

    def __init__(self, datasets: list[DatasetConfig], mixture: SlotMixture, opts: DataOptions, rank: int,
                 seed: int, val_fraction: float, limit: BadSampleLimit | None = None) -> None:
        """``limit``: when a dataset's bad samples become `BadDatasetError` (default `BadSampleLimit()`)."""
        self.datasets, self.mixture, self.opts = datasets, mixture, opts
        for cfg in datasets:  # here, in the main process: not as a crash inside a DataLoader worker
            if cfg.shards is not None:
                check_geometry(read_manifest(cfg.shards), opts.geometry, cfg.shards)
        self.rank, self.seed, self.val_fraction = rank, seed, val_fraction
        self.limit = limit or BadSampleLimit()
        self.epoch = 0
        self.skipped = 0  # skips reported by this object (all of them with num_workers=0)
        self.start_batch = 0  # batches this rank already consumed (set on resume)
        self.batch_size = 1

    def _samples_to_skip(self, worker: int, num_workers: int) -> int:
        """Samples this worker produced before ``start_batch`` (a DataLoader takes batches
        round-robin from its workers), so a resumed run continues the same data order."""
        batches = sum(1 for j in range(self.start_batch) if j % num_workers == worker)
        return batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pool(self, d: int, worker: int) -> EpisodePool | StreamPool:
        cfg = self.datasets[d]
        rng = np.random.default_rng([self.seed, self.rank, worker, self.epoch, d])
        if cfg.shards is not None:
            records = SkipBudget(cfg.name, self.limit, what="shard records")
            return StreamPool(iter(ShardPasses(cfg.name, cfg.shards, rng, records)), rng, budget=records)
        source = open_source(cfg, self.opts.views)
        return EpisodePool(source.episodes, split_episodes(cfg.name, source.episodes, self.val_fraction, "train"), rng)

    def _take_pending(self, budgets: dict[int, list[SkipBudget]]) -> np.ndarray:
        counts = np.zeros(len(self.datasets), dtype=np.int64)
        for d, bs in budgets.items():
            counts[d] = sum(b.take_pending() for b in bs)
        return counts

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        sampler = self.mixture.sampler(self.rank, worker, num_workers, seed=self.seed, epoch=self.epoch)
        pools: dict[int, EpisodePool | StreamPool] = {}  # opened lazily: only this slot's datasets
        budgets: dict[int, list[SkipBudget]] = {}
        skip = self._samples_to_skip(worker, num_workers)
        for d in sampler:
            if d not in pools:
                pools[d] = self._pool(d, worker)
                budgets[d] = [SkipBudget(self.datasets[d].name, self.limit)]
                if isinstance(pools[d], StreamPool) and pools[d].budget is not None:
                    budgets[d].append(pools[d].budget)  # the shard records it could not read
            episode, t, index = pools[d].draw()
            if skip > 0:  # fast-forward without decoding (exact unless a skipped draw was a bad sample)
                skip -= 1
                if skip == 0:  # record skips seen while fast-forwarding were reported before the resume
                    self._take_pending(budgets)
                continue
            sample = _cut(episode, t, d, f"{self.datasets[d].name}/episode {index}/frame {t}", self.opts,
                          budgets[d][0])
            if sample is not None:
                sample.skipped = self._take_pending(budgets)
                self.skipped += int(sample.skipped.sum())
                yield sample


class FixedSamples(Dataset):
    """A deterministic list of (dataset, episode, t) from the validation episodes.

    A bad sample is replaced by the next candidate of the same dataset (drawn from (seed, item,
    attempt), so the same every run), counted in the returned sample's ``skipped`` and checked
    against ``limit`` like training (``min_attempts`` capped at the dataset's validation samples):
    a validation set that is mostly bad raises `BadDatasetError` naming the dataset."""

    def __init__(self, datasets: list[DatasetConfig], opts: DataOptions, per_dataset: int, seed: int,
                 val_fraction: float, limit: BadSampleLimit | None = None) -> None:
        """``limit``: when a dataset's bad samples become `BadDatasetError` (default `BadSampleLimit()`)."""
        self.datasets, self.opts, self.seed = datasets, opts, seed
        self.limit = limit or BadSampleLimit()
        self.items: list[tuple[int, int, int]] = []
        self.val_episodes: dict[int, list[int]] = {}
        rng = np.random.default_rng(seed)
        for d, cfg in enumerate(datasets):
            if cfg.shards is not None and cfg.path is None:
                continue  # validation reads folders; shard-only datasets are training-only
            source = open_source(cfg, opts.views)
            episodes = self.val_episodes[d] = split_episodes(cfg.name, source.episodes, val_fraction, "val")
            for _ in range(per_dataset if episodes else 0):
                e = episodes[int(rng.integers(len(episodes)))]
                self.items.append((d, e, int(rng.integers(source.episodes[e].length))))
        self._sources: dict[int, object] = {}
        self._budgets: dict[int, SkipBudget] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _source(self, d: int):
        if d not in self._sources:
            self._sources[d] = open_source(self.datasets[d], self.opts.views)
            size = sum(1 for item in self.items if item[0] == d)
            self._budgets[d] = SkipBudget(self.datasets[d].name, self.limit, min_attempts=size)
        return self._sources[d]

    def _candidate(self, i: int, attempt: int) -> tuple[int, int, int]:
        """Item ``i`` itself, or its replacement number ``attempt`` (same dataset, deterministic)."""
        d, e, t = self.items[i]
        if attempt == 0:
            return d, e, t
        rng = np.random.default_rng([self.seed, i, attempt])
        episodes = self.val_episodes[d]
        e = episodes[int(rng.integers(len(episodes)))]
        return d, e, int(rng.integers(self._source(d).episodes[e].length))

    def __getitem__(self, i: int) -> Sample:
        d = self.items[i][0]
        source, budget = self._source(d), self._budgets[d]
        for attempt in range(self.limit.max_consecutive):  # the budget raises by the last one at the latest
            _, e, t = self._candidate(i, attempt)
            sample = _cut(source.episodes[e], t, d, f"{self.datasets[d].name}/episode {e}/frame {t}", self.opts,
                          budget)
            if sample is not None:
                sample.skipped = np.zeros(len(self.datasets), dtype=np.int64)
                sample.skipped[d] = budget.take_pending()
                return sample
        raise BadDatasetError(f"dataset {self.datasets[d].name!r}: validation item {i} and its "
                              f"{self.limit.max_consecutive - 1} replacements failed; last error: {budget.last_error}",
                              self.datasets[d].name)
