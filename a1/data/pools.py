"""Where a worker draws (episode, t) from — a folder's episodes, or a stream of shard records —
and the bound on how many of those draws may fail.

Both pools draw a frame uniformly over the frames they hold (episodes weighted by length) from
a seeded generator, so a (seed, rank, worker, epoch) fixes the sequence of samples.

Bad draws (a corrupt frame, an unreadable shard record) are skipped and counted by a
`SkipBudget` per dataset and worker, which raises `BadDatasetError` once the dataset crosses
its `BadSampleLimit` (the rule is spelled out there) — a dataset that keeps failing is an error
naming it and its last error, never an endless skip loop.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from a1.data.sample import EpisodeData

log = logging.getLogger(__name__)


class BadDatasetError(ValueError):
    """A dataset's samples keep failing (past its `BadSampleLimit`); the message names the dataset
    and its last error (which names the file). Raised in a DataLoader worker it reaches the main
    process (as ``BadDatasetError``, the worker's traceback in the message) and stops the run."""

    def __init__(self, text: str, dataset: str = "") -> None:
        super().__init__(text)
        self.dataset = dataset


@dataclass
class BadSampleLimit:
    """When skipping a dataset's bad samples turns into `BadDatasetError`.

    Counted per dataset and per DataLoader worker, over the worker's whole life (counters never
    restart with a new pass over the data): an *attempt* is one sample cut (or, for shards, one
    record read); it fails when the frame/record cannot be read or is invalid. The dataset is an
    error once ``max_consecutive`` attempts in a row failed, or once, after at least
    ``min_attempts`` attempts, more than ``max_fraction`` of them failed. For shard datasets the
    records read and the samples cut are two budgets under the same rule, and one complete pass
    over the shards that gives no readable record is an error at once (naming the shard folder).
    Validation applies the same rule with ``min_attempts`` capped at the dataset's number of
    validation samples (the whole list: a rank that validates only its share of the list, under
    a DistributedSampler, reaches the cap only when most of its samples need replacing).
    """

    max_consecutive: int = 50
    """Error after this many failed attempts in a row."""
    max_fraction: float = 0.1
    """Error when more than this fraction of the attempts failed (once ``min_attempts`` were made)."""
    min_attempts: int = 200
    """Attempts before ``max_fraction`` applies."""
    log_first: int = 5
    """Skips logged one by one per dataset and worker; after that only every ``log_every``-th."""
    log_every: int = 1000
    """Log every this-many-th skip of a dataset once ``log_first`` were logged."""

    def __post_init__(self) -> None:
        for name in ("max_consecutive", "min_attempts", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"BadSampleLimit.{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0.0 <= self.max_fraction < 1.0:
            raise ValueError(f"BadSampleLimit.max_fraction must be in [0, 1), got {self.max_fraction}")
        if self.log_first < 0:
            raise ValueError(f"BadSampleLimit.log_first must be ≥ 0, got {self.log_first}")


class SkipBudget:
    """Attempts and failures of one dataset in one worker, checked against a `BadSampleLimit`.

    ``pending`` counts the failures not yet reported (the stream hands them to the next sample
    it yields, so they reach the training metrics)."""

    def __init__(self, dataset: str, limit: BadSampleLimit, what: str = "samples",
                 min_attempts: int | None = None) -> None:
        self.dataset, self.limit, self.what = dataset, limit, what
        self.min_attempts = limit.min_attempts
        if min_attempts is not None:  # validation: a list shorter than limit.min_attempts is judged too
            self.min_attempts = max(1, min(min_attempts, limit.min_attempts))
        self.attempts = self.failures = self.consecutive = self.pending = 0
        self.last_error = ""

    def ok(self) -> None:
        self.attempts += 1
        self.consecutive = 0

    def fail(self, error: str) -> None:
        """Count a failed attempt (``error`` names where and why); raise `BadDatasetError` when the
        limit is crossed, else log it at a bounded rate."""
        self.attempts += 1
        self.failures += 1
        self.consecutive += 1
        self.pending += 1
        self.last_error = error
        self.check()
        lim = self.limit
        if self.failures <= lim.log_first or self.failures % lim.log_every == 0:
            more = (f"; further skips of {self.dataset!r} are logged every {lim.log_every}"
                    if self.failures == lim.log_first else "")
            log.warning("skipping bad %s %s (%d of %d skipped in dataset %r by this worker%s)",
                        self.what[:-1], error, self.failures, self.attempts, self.dataset, more)

    def check(self) -> None:
        lim = self.limit
        if self.consecutive >= lim.max_consecutive:
            why = f"{self.consecutive} {self.what} in a row failed"
        elif self.attempts >= self.min_attempts and self.failures > lim.max_fraction * self.attempts:
            why = (f"{self.failures} of {self.attempts} {self.what} failed (more than "
                   f"{lim.max_fraction:.0%} after ≥ {self.min_attempts})")
        else:
            return
        raise BadDatasetError(f"dataset {self.dataset!r}: {why} in one data worker — the data is broken "
                              f"(BadSampleLimit); last error: {self.last_error}", self.dataset)

    def take_pending(self) -> int:
        n, self.pending = self.pending, 0
        return n


def _hash(dataset: str, episode: int) -> float:
    return zlib.crc32(f"{dataset}/{episode}".encode()) / 2**32


def split_episodes(dataset: str, episodes: Sequence, fraction: float, split: str) -> list[int]:
    """Indices of the episodes of ``split``: an episode is held out for validation when a hash
    of (dataset name, index) is below ``fraction`` — deterministic, independent of the machine.
    With ``fraction > 0`` and ≥ 2 episodes, validation gets ≥ 1 episode and training keeps ≥ 1."""
    hashes = [_hash(dataset, i) for i in range(len(episodes))]
    val = [i for i, h in enumerate(hashes) if h < fraction]
    if fraction > 0 and not val and len(episodes) >= 2:
        val = [min(range(len(episodes)), key=hashes.__getitem__)]
    if len(val) == len(episodes):
        val = val[1:]
    if split == "val":
        return val
    chosen = set(val)
    return [i for i in range(len(episodes)) if i not in chosen]


class EpisodePool:
    """Random access over a list of episodes (a folder-backed dataset)."""

    def __init__(self, episodes: Sequence[EpisodeData], indices: Sequence[int], rng: np.random.Generator) -> None:
        if not indices:
            raise ValueError("no episodes to sample from")
        self.episodes, self.indices, self.rng = episodes, list(indices), rng
        lengths = np.array([episodes[i].length for i in self.indices], dtype=np.float64)
        self.cdf = np.cumsum(lengths) / lengths.sum()

    def draw(self) -> tuple[EpisodeData, int, int]:
        """(episode, t, episode index), frames uniform over the pool."""
        j = int(np.searchsorted(self.cdf, self.rng.random(), side="right"))
        j = min(j, len(self.indices) - 1)
        ep = self.episodes[self.indices[j]]
        return ep, int(self.rng.integers(ep.length)), self.indices[j]


class StreamPool:
    """A rolling buffer of episodes from an endless record stream (webdataset shards);
    ``budget``: the one counting the stream's unreadable records, if any (see `ShardPasses`)."""

    def __init__(self, stream: Iterator, rng: np.random.Generator, buffer: int = 8, draws_per_episode: int = 16,
                 budget: SkipBudget | None = None) -> None:
        self.stream, self.rng, self.budget = stream, rng, budget
        self.buffer, self.draws = buffer, draws_per_episode
        self.held: list[list] = []  # [record, draws left]

    def _refill(self) -> None:
        while len(self.held) < self.buffer:
            record = next(self.stream)
            self.held.append([record, self.draws])

    def draw(self) -> tuple[EpisodeData, int, int]:
        self._refill()
        lengths = np.array([r.length for r, _ in self.held], dtype=np.float64)
        j = int(self.rng.choice(len(self.held), p=lengths / lengths.sum()))
        record = self.held[j][0]
        self.held[j][1] -= 1
        if self.held[j][1] <= 0:
            self.held.pop(j)
        return record, int(self.rng.integers(record.length)), int(record.episode)


class ShardPasses:
    """Endless records of one dataset's shard folder: a new seeded shuffled shard order every pass.

    Unreadable records are skipped and counted by ``budget`` (readable ones count as good
    attempts); a complete pass that gives no readable record raises `BadDatasetError` naming the
    folder, so a set of shards that are all bad never spins."""

    def __init__(self, dataset: str, folder: str, rng: np.random.Generator, budget: SkipBudget) -> None:
        from a1.data.shards import manifest_urls

        self.dataset, self.folder, self.rng, self.budget = dataset, folder, rng, budget
        self.urls = manifest_urls(folder)

    def __iter__(self) -> Iterator:
        from a1.data.shards import read_episodes

        for rnd in itertools.count():  # a new shard order every pass
            reader = read_episodes(self.urls, shuffle=True, seed=int(self.rng.integers(2**31)) + rnd, on_error="skip",
                                  log_skips=False)  # counted and logged at a bounded rate by the budget
            good = seen = 0
            while True:
                record = next(reader, None)
                for error in reader.errors[seen:]:  # each names the shard (and record key)
                    self.budget.fail(error)
                seen = len(reader.errors)
                if record is None:
                    break
                self.budget.ok()
                good += 1
                yield record
            if not good:
                last = f"; last error: {reader.errors[-1]}" if reader.errors else ""
                raise BadDatasetError(f"dataset {self.dataset!r}: a complete pass over the {len(self.urls)} "
                                      f"shard(s) in {self.folder} gave no readable record{last}", self.dataset)
