"""Where a worker draws (episode, t) from: a folder's episodes, or a stream of shard records.

Both pools draw a frame uniformly over the frames they hold (episodes weighted by length) from
a seeded generator, so a (seed, rank, worker, epoch) fixes the sequence of samples.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from a1.data.sample import EpisodeData


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
    """A rolling buffer of episodes from an endless record stream (webdataset shards)."""

    def __init__(self, stream: Iterator, rng: np.random.Generator, buffer: int = 8, draws_per_episode: int = 16) -> None:
        self.stream, self.rng = stream, rng
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
