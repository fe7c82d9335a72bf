"""Per-slot sampling probabilities that realize the configured mixture weights exactly.

Every slot (DataLoader worker on a rank, see :mod:`a1.data.assign`) yields the same number of
samples, so if slot ``s`` draws dataset ``d`` with probability ``p[s, d]`` the realized
frequency of ``d`` is the column mean ``(1/S) * sum_s p[s, d]``. Sampling uniformly inside
each slot distorts the weights (0.6/0.3/0.1 over 4 slots → 0.5/0.25/0.25). Instead we solve a
transportation problem: dataset ``d`` supplies ``S * w_d`` units of "slot mass", slot ``s``
takes exactly 1 unit, and mass may only flow along placements. A feasible flow *is* ``p``.

:func:`build_mixture` computes a maximum flow (Edmonds–Karp on the bipartite placement graph,
pure numpy/Python, exact up to float rounding). If some weight cannot be met — the greedy
size-balanced placement does not give a heavy dataset enough slots — it adds a replica of
the most under-served dataset to the slot with the most unused capacity (ties: least loaded,
then lowest index) and re-maximizes. A direct augmenting path then exists, so every fix
raises the flow, and since each fix adds a new (slot, dataset) pair the loop ends; with all
pairs present the weights themselves are a feasible row. Hence it succeeds for any positive
weights and any ``S >= 1``. Placements the final flow leaves unused are dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from a1.data.assign import (
    Assignment,
    DatasetSpec,
    assign_datasets,
    normalized_weights,
    slot_index,
    slot_position,
    validate_specs,
)

_EPS = 1e-13  # residual capacity below which an edge counts as saturated
_TOL = 1e-10  # unmet slot mass below which a dataset counts as fully served
_PRUNE = 1e-12  # probabilities below this are dropped with their placement
#: Domain tag mixed into sampler seeds (keeps them apart from placement seeds).
_SAMPLER_TAG = 0x5A3B_1E55


class _SlotFlow:
    """Flow of slot mass from datasets (supply ``demand``) into slots (capacity 1)."""

    def __init__(self, members: Sequence[Sequence[int]], demand: np.ndarray) -> None:
        self.members = [list(m) for m in members]
        self.flow = np.zeros((len(members), len(demand)))
        self.unmet = np.asarray(demand, dtype=np.float64).copy()
        self.leftover = np.ones(len(members))
        self.holders: list[list[int]] = [[] for _ in demand]
        for s, slot in enumerate(self.members):
            for d in slot:
                self.holders[d].append(s)

    def add(self, slot: int, dataset: int) -> None:
        """Place ``dataset`` in ``slot`` (a new edge of the graph)."""
        self.members[slot].append(dataset)
        self.holders[dataset].append(slot)

    def maximize(self) -> None:
        """Push direct flow, then augment along shortest residual paths until none is left."""
        for d in np.flatnonzero(self.unmet > _EPS):
            for s in self.holders[d]:
                amount = min(self.unmet[d], self.leftover[s])
                if amount > _EPS:
                    self.flow[s, d] += amount
                    self.unmet[d] -= amount
                    self.leftover[s] -= amount
        while self._augment():
            pass

    def _augment(self) -> bool:
        """One BFS augmenting path source → dataset → slot (← dataset → slot)* → sink."""
        via_slot: dict[int, int] = {}  # slot -> dataset that reached it
        via_dataset: dict[int, int | None] = {}  # dataset -> slot it came back from
        queue = deque(int(d) for d in np.flatnonzero(self.unmet > _EPS))
        via_dataset.update((d, None) for d in queue)
        while queue:
            d = queue.popleft()
            for s in self.holders[d]:
                if s in via_slot:
                    continue
                via_slot[s] = d
                if self.leftover[s] > _EPS:
                    self._push_path(s, via_slot, via_dataset)
                    return True
                for e in self.members[s]:
                    if e not in via_dataset and self.flow[s, e] > _EPS:
                        via_dataset[e] = s
                        queue.append(e)
        return False

    def _push_path(
        self, end: int, via_slot: dict[int, int], via_dataset: dict[int, int | None]
    ) -> None:
        """Send the bottleneck amount along the path that reached slot ``end``."""
        path, amount, s = [], self.leftover[end], end
        while True:
            d = via_slot[s]
            back = via_dataset[d]
            path.append((s, d, back))
            if back is None:
                amount = min(amount, self.unmet[d])
                break
            amount = min(amount, self.flow[back, d])
            s = back
        for s, d, back in path:
            self.flow[s, d] += amount
            if back is None:
                self.unmet[d] -= amount
            else:
                self.flow[back, d] -= amount
        self.leftover[end] -= amount


@dataclass(frozen=True, eq=False)
class SlotMixture:
    """A feasible assignment plus per-slot probabilities.

    Attributes:
        assignment: datasets per slot (with replica seeds and loads).
        probs: (S, n) float64; row ``s`` sums to 1 and is nonzero only on the datasets of
            slot ``s``; the column means equal the normalized configured weights.
    """

    assignment: Assignment
    probs: np.ndarray

    @property
    def names(self) -> list[str]:
        """Dataset names in config order (the column order of :attr:`probs`)."""
        return [s.name for s in self.assignment.specs]

    @property
    def weights(self) -> np.ndarray:
        """Configured weights, normalized to sum to 1."""
        return normalized_weights(self.assignment.specs)

    def realized_weights(self) -> np.ndarray:
        """Expected sampling frequency per dataset: the column means of :attr:`probs`."""
        return self.probs.mean(axis=0)

    def sampler(
        self, rank: int, worker_id: int, num_workers: int, seed: int = 0, epoch: int = 0
    ) -> SlotSampler:
        """The :class:`SlotSampler` of DataLoader worker ``worker_id`` on ``rank``."""
        slot = slot_index(rank, worker_id, num_workers)
        return SlotSampler(self.probs[slot], seed=seed, rank=rank, worker_id=worker_id, epoch=epoch)


def _fix_slot(flow: _SlotFlow, dataset: int, specs: Sequence[DatasetSpec]) -> int | None:
    """Slot to receive a new replica of ``dataset``: most unused capacity, then least load.

    Load here splits each dataset evenly over its current replicas; remaining ties go to
    the lowest slot index. ``None`` when no slot without ``dataset`` has capacity left.
    """
    free = flow.leftover.copy()
    free[flow.holders[dataset]] = 0.0
    if free.max() <= _EPS:
        return None
    tied = np.flatnonzero(free == free.max())
    counts = [len(h) for h in flow.holders]

    def load(s: int) -> float:
        return sum(float(specs[d].size) / counts[d] for d in flow.members[s])

    return int(min(tied, key=lambda s: (load(s), s)))


def _prune(flow: np.ndarray, members: Sequence[Sequence[int]]) -> tuple[np.ndarray, list]:
    """Drop placements with (near-)zero probability and renormalize rows.

    A dataset always keeps its largest entry, so it stays placed somewhere.
    """
    placed = np.zeros(flow.shape, dtype=bool)
    for s, slot in enumerate(members):
        placed[s, list(slot)] = True
    keep = placed & (flow > _PRUNE)
    keep[flow.argmax(axis=0), np.arange(flow.shape[1])] = True
    probs = np.where(keep, flow, 0.0)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, [sorted(np.flatnonzero(row).tolist()) for row in keep]


def build_mixture(specs: Sequence[DatasetSpec], num_slots: int, seed: int = 0) -> SlotMixture:
    """Assign datasets to slots and compute probabilities realizing the weights exactly.

    Args:
        specs: datasets (unique names, positive sizes and weights; weights are normalized).
        num_slots: ``world_size * num_workers``.
        seed: base seed of the per-placement replica seeds.

    Raises:
        ValueError: invalid specs or slot count.
    """
    specs = validate_specs(specs)
    start = assign_datasets(specs, num_slots, seed)
    demand = start.num_slots * normalized_weights(specs)
    flow = _SlotFlow([start.members(s) for s in range(start.num_slots)], demand)
    flow.maximize()
    while flow.unmet.max() > _TOL:
        dataset = int(np.argmax(flow.unmet))
        slot = _fix_slot(flow, dataset, specs)
        if slot is None:  # only float dust is left unserved
            break
        flow.add(slot, dataset)
        flow.maximize()
    if flow.unmet.sum() > 1e-6:
        raise RuntimeError(f"mixture flow failed to converge (unmet {flow.unmet.tolist()})")
    probs, members = _prune(flow.flow, flow.members)
    return SlotMixture(Assignment.from_members(specs, members, seed, mass=probs), probs)


def uniform_slot_probs(assignment: Assignment) -> np.ndarray:
    """The naive baseline: each slot samples its datasets uniformly. (S, n) float64."""
    probs = np.zeros((assignment.num_slots, len(assignment.specs)))
    for s in range(assignment.num_slots):
        members = list(assignment.members(s))
        probs[s, members] = 1.0 / len(members)
    return probs


class SlotSampler:
    """Seeded, infinite stream of dataset indices drawn from one slot's probability row.

    The stream depends only on (probs, seed, rank, worker_id, epoch); iterating yields the
    same sequence as one :meth:`sample` call on a fresh sampler.
    """

    def __init__(
        self,
        probs: Sequence[float] | np.ndarray,
        seed: int = 0,
        rank: int = 0,
        worker_id: int = 0,
        epoch: int = 0,
        chunk: int = 1024,
    ) -> None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("probs must be a non-empty 1-D array of finite values >= 0")
        if p.sum() <= 0:
            raise ValueError("probs must have a positive entry")
        cdf = np.cumsum(p / p.sum())
        cdf[np.flatnonzero(p > 0)[-1] :] = 1.0  # never pick trailing zero entries
        self._cdf = cdf
        self.seed, self.rank, self.worker_id, self.chunk = seed, rank, worker_id, chunk
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Restart the stream for ``epoch`` (a different, reproducible stream per epoch)."""
        self.epoch = epoch
        entropy = [self.seed, _SAMPLER_TAG, self.rank, self.worker_id, epoch]
        self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
        self._buffer = np.empty(0, dtype=np.int64)
        self._pos = 0

    def sample(self, n: int) -> np.ndarray:
        """The next ``n`` dataset indices, int64 array."""
        return np.searchsorted(self._cdf, self._rng.random(n), side="right").astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self._pos == len(self._buffer):
            self._buffer, self._pos = self.sample(self.chunk), 0
        self._pos += 1
        return int(self._buffer[self._pos - 1])


def simulate_frequencies(
    probs: np.ndarray,
    names: Sequence[str],
    num_draws: int,
    num_workers: int = 1,
    seed: int = 0,
) -> dict[str, float]:
    """Realized source frequencies of ``num_draws`` samples drawn round-robin over slots.

    Draw ``i`` comes from slot ``i % S`` (DataLoaders cycle through workers and every rank
    contributes equally), each slot using its own :class:`SlotSampler` at epoch 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    num_slots, n = probs.shape
    base, extra = divmod(num_draws, num_slots)
    counts = np.zeros(n, dtype=np.int64)
    for s in range(num_slots):
        k = base + (1 if s < extra else 0)
        if k:
            rank, worker = slot_position(s, num_workers)
            draws = SlotSampler(probs[s], seed=seed, rank=rank, worker_id=worker).sample(k)
            counts += np.bincount(draws, minlength=n)
    return {name: float(c) / num_draws for name, c in zip(names, counts)}


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``0.5 * sum |p - q|`` over the union of keys (missing keys count as 0)."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))
