"""Load-balanced dataset → worker-slot assignment (paper §3.4, "LPT").

A run has ``S = world_size * num_workers`` *slots*: one per DataLoader worker per rank. Slot
``s`` belongs to rank ``s // num_workers``, worker ``s % num_workers``.

The paper's greedy rule: datasets sorted by size (frames) descending, each goes to the
currently least-loaded slot (ties → lowest slot index; equal sizes keep input order), so the
result is deterministic. Coverage: every slot gets at least one dataset. With fewer datasets
than slots, datasets are *replicated*; the number of replicas follows the sampling weights
(a dataset with weight ``w`` needs about ``S * w`` slots' worth of samples, see
:func:`replica_quotas`), a dataset's load is split over its replicas (evenly here; in
proportion to their sampling mass once :mod:`a1.data.mixture` knows it), and replicas go to
distinct slots through the same greedy rule ("load-aware placement"). Every
(slot, dataset) placement carries its own derived seed, so replicas are independent.

This module only places datasets. :func:`a1.data.mixture.build_mixture` turns a placement
into per-slot sampling probabilities and, when the weights are not achievable on the greedy
placement, adds the missing replicas; use it as the entry point.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_SEED_MASK = (1 << 63) - 1
#: Domain tag mixed into placement seeds (keeps them apart from other seed streams).
_PLACEMENT_TAG = 0x91AC_E5EE


@dataclass(frozen=True)
class DatasetSpec:
    """One source of the mixture: unique ``name``, size proxy ``size`` (frames), ``weight``."""

    name: str
    size: float
    weight: float = 1.0


@dataclass(frozen=True)
class Placement:
    """One dataset materialized in one slot.

    Attributes:
        dataset: index into :attr:`Assignment.specs`.
        replica: 0-based index of this copy among the dataset's placements (ascending slot).
        num_replicas: how many slots hold the dataset.
        seed: seed derived from (base seed, slot, dataset); distinct for every placement.
        share: fraction of the dataset this copy stands for (the shares of a dataset sum to
            1). With episode pools sharded in these proportions every frame of the dataset
            is drawn at the same rate; the slot load counts ``share * size``.
    """

    dataset: int
    replica: int
    num_replicas: int
    seed: int
    share: float


@dataclass(frozen=True)
class Assignment:
    """Datasets per slot, per-slot load and placement seeds.

    Attributes:
        specs: the datasets, in input order (placements refer to them by index).
        slots: per slot, its placements sorted by dataset index.
        loads: per slot, ``sum(share * size)`` over its placements (frames it covers).
        seed: the base seed the placement seeds were derived from.
    """

    specs: tuple[DatasetSpec, ...]
    slots: tuple[tuple[Placement, ...], ...]
    loads: tuple[float, ...]
    seed: int

    @property
    def num_slots(self) -> int:
        """Number of slots ``S``."""
        return len(self.slots)

    @property
    def balance(self) -> float:
        """Max / mean slot load (1.0 is perfectly balanced)."""
        return max(self.loads) / (sum(self.loads) / len(self.loads))

    @property
    def num_replicas(self) -> tuple[int, ...]:
        """Per dataset, the number of slots holding it."""
        counts = [0] * len(self.specs)
        for slot in self.slots:
            for p in slot:
                counts[p.dataset] += 1
        return tuple(counts)

    def members(self, slot: int) -> tuple[int, ...]:
        """Dataset indices held by ``slot``."""
        return tuple(p.dataset for p in self.slots[slot])

    @classmethod
    def from_members(
        cls,
        specs: Sequence[DatasetSpec],
        members: Sequence[Sequence[int]],
        seed: int = 0,
        mass: np.ndarray | None = None,
    ) -> Assignment:
        """Build an assignment from per-slot dataset indices (loads, replicas, seeds derived).

        Args:
            specs: the datasets.
            members: per slot, the indices of the datasets it holds.
            seed: base seed of the placement seeds.
            mass: optional (S, n) nonnegative sampling mass per placement; a dataset's
                shares are its column normalized. Default: even split over replicas.

        Raises:
            ValueError: empty slot, unknown index, a dataset twice in a slot, or a dataset
                held by no slot.
        """
        specs = validate_specs(specs)
        check_num_slots(len(members))
        _check_members(specs, members)
        shares = _shares(members, len(specs), mass)
        seen = [0] * len(specs)
        counts = [0] * len(specs)
        for slot in members:
            for d in slot:
                counts[d] += 1
        slots, loads, used_seeds = [], [], set()
        for s, slot in enumerate(members):
            placements = []
            for d in sorted(slot):
                seed_sd = _unique_seed(seed, s, d, used_seeds)
                placements.append(Placement(d, seen[d], counts[d], seed_sd, float(shares[s, d])))
                seen[d] += 1
            slots.append(tuple(placements))
            loads.append(sum(p.share * float(specs[p.dataset].size) for p in placements))
        return cls(specs, tuple(slots), tuple(loads), seed)


def _shares(members: Sequence[Sequence[int]], n: int, mass: np.ndarray | None) -> np.ndarray:
    """(S, n) per-placement share of each dataset; columns sum to 1 over its placements."""
    placed = np.zeros((len(members), n))
    for s, slot in enumerate(members):
        placed[s, list(slot)] = 1.0
    if mass is not None:
        mass = np.asarray(mass, dtype=np.float64)
        if mass.shape != placed.shape or np.any(mass < 0):
            raise ValueError(f"mass must be a nonnegative array of shape {placed.shape}")
        weighted = placed * mass
        placed = np.where(weighted.sum(axis=0) > 0, weighted, placed)
    return placed / placed.sum(axis=0)


def _check_members(specs: Sequence[DatasetSpec], members: Sequence[Sequence[int]]) -> None:
    """Validate per-slot dataset index lists against ``specs``."""
    held = set()
    for s, slot in enumerate(members):
        if not slot:
            raise ValueError(f"slot {s} holds no dataset (every slot needs at least one)")
        if len(set(slot)) != len(slot):
            raise ValueError(f"slot {s} holds a dataset more than once: {list(slot)}")
        for d in slot:
            if not 0 <= d < len(specs):
                raise ValueError(f"slot {s}: dataset index {d} out of range")
        held.update(slot)
    missing = [specs[d].name for d in range(len(specs)) if d not in held]
    if missing:
        raise ValueError(f"datasets held by no slot: {missing}")


def _positive(value: object) -> bool:
    """True for a finite real number > 0 (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value)) and float(value) > 0


def validate_specs(specs: Sequence[DatasetSpec]) -> tuple[DatasetSpec, ...]:
    """Check names are unique non-empty strings and sizes/weights are positive and finite.

    Raises:
        ValueError: naming the offending dataset.
    """
    specs = tuple(specs)
    if not specs:
        raise ValueError("no datasets given: need at least one")
    names = set()
    for i, spec in enumerate(specs):
        if not isinstance(spec.name, str) or not spec.name:
            raise ValueError(f"dataset #{i}: name must be a non-empty string, got {spec.name!r}")
        if spec.name in names:
            raise ValueError(f"duplicate dataset name {spec.name!r}")
        names.add(spec.name)
        if not _positive(spec.size):
            raise ValueError(f"dataset {spec.name!r}: size must be > 0, got {spec.size!r}")
        if not _positive(spec.weight):
            raise ValueError(f"dataset {spec.name!r}: weight must be > 0, got {spec.weight!r}")
    return specs


def check_num_slots(num_slots: int) -> int:
    """Return ``num_slots`` if it is an int ≥ 1, else raise ValueError."""
    if isinstance(num_slots, bool) or not isinstance(num_slots, (int, np.integer)):
        raise ValueError(f"number of slots must be an integer, got {num_slots!r}")
    if num_slots < 1:
        raise ValueError(f"number of slots must be >= 1, got {num_slots}")
    return int(num_slots)


def normalized_weights(specs: Sequence[DatasetSpec]) -> np.ndarray:
    """(n,) float64 weights of ``specs`` scaled to sum to 1."""
    w = np.array([float(s.weight) for s in validate_specs(specs)], dtype=np.float64)
    return w / w.sum()


def derive_seed(base_seed: int, slot: int, dataset: int, salt: int = 0) -> int:
    """63-bit seed for one (slot, dataset) placement, derived with numpy's SeedSequence."""
    if base_seed < 0:
        raise ValueError(f"seed must be >= 0, got {base_seed}")
    entropy = [base_seed, _PLACEMENT_TAG, slot, dataset, salt]
    words = np.random.SeedSequence(entropy).generate_state(2)
    return ((int(words[0]) << 32) | int(words[1])) & _SEED_MASK


def _unique_seed(base_seed: int, slot: int, dataset: int, used: set[int]) -> int:
    """:func:`derive_seed`, re-salted on the (astronomically rare) collision."""
    salt = 0
    while (seed := derive_seed(base_seed, slot, dataset, salt)) in used:
        salt += 1
    used.add(seed)
    return seed


def greedy_place(loads: Sequence[float], groups: Sequence[int], num_slots: int) -> list[list[int]]:
    """The paper's greedy rule on items: largest load first, each to the least-loaded slot.

    Ties: equal loads keep item order; equal slot loads go to the lowest slot index. An item
    never joins a slot that already holds an item of the same group (replicas of one dataset
    go to distinct slots), so a group must have at most ``num_slots`` items.

    Returns:
        Per slot, the item indices in placement order.
    """
    for g, count in Counter(groups).items():
        if count > num_slots:
            raise ValueError(f"group {g} has {count} items but there are {num_slots} slots")
    order = sorted(range(len(loads)), key=lambda i: (-loads[i], i))
    heap = [(0.0, s) for s in range(num_slots)]  # sorted list == valid heap
    slots: list[list[int]] = [[] for _ in range(num_slots)]
    used: list[set[int]] = [set() for _ in range(num_slots)]
    for i in order:
        skipped = []
        load, s = heapq.heappop(heap)
        while groups[i] in used[s]:
            skipped.append((load, s))
            load, s = heapq.heappop(heap)
        slots[s].append(i)
        used[s].add(groups[i])
        heapq.heappush(heap, (load + loads[i], s))
        for entry in skipped:
            heapq.heappush(heap, entry)
    return slots


def greedy_assign(sizes: Sequence[float], num_slots: int) -> list[list[int]]:
    """The bare paper rule (no replication): per slot, the indices of the datasets it gets."""
    check_num_slots(num_slots)
    for i, size in enumerate(sizes):
        if not _positive(size):
            raise ValueError(f"dataset #{i}: size must be > 0, got {size!r}")
    return greedy_place([float(x) for x in sizes], list(range(len(sizes))), num_slots)


def replica_quotas(specs: Sequence[DatasetSpec], num_slots: int) -> list[int]:
    """Number of slots each dataset is placed in before weight fixing.

    Dataset ``d`` needs ``m_d = S * w_d`` slots' worth of samples. It gets
    ``max(1, floor(m_d))`` slots (at most ``S``); while the total is below ``S`` (fewer
    datasets than slots) one more replica goes to the largest remainder ``m_d - r_d``
    (ties: larger weight, larger size, earlier dataset), i.e. heavier-weighted datasets get
    more replicas.
    """
    specs = validate_specs(specs)
    num_slots = check_num_slots(num_slots)
    m = num_slots * normalized_weights(specs)
    quotas = [min(num_slots, max(1, math.floor(x + 1e-9))) for x in m]
    while sum(quotas) < num_slots:
        d = max(
            (i for i in range(len(specs)) if quotas[i] < num_slots),
            key=lambda i: (m[i] - quotas[i], specs[i].weight, specs[i].size, -i),
        )
        quotas[d] += 1
    return quotas


def assign_datasets(
    specs: Sequence[DatasetSpec], num_slots: int, seed: int = 0
) -> Assignment:
    """Greedy size-balanced placement with weight-driven replication (coverage guaranteed).

    Each dataset is split into :func:`replica_quotas` replicas of load ``size / replicas``;
    the replicas are placed by :func:`greedy_place`. When every quota is 1 (enough datasets,
    no dominant weight) this is exactly the paper's rule.
    """
    specs = validate_specs(specs)
    num_slots = check_num_slots(num_slots)
    quotas = replica_quotas(specs, num_slots)
    owner = [d for d, r in enumerate(quotas) for _ in range(r)]
    loads = [float(specs[d].size) / quotas[d] for d in owner]
    placed = greedy_place(loads, owner, num_slots)
    members = [sorted(owner[i] for i in slot) for slot in placed]
    return Assignment.from_members(specs, members, seed)


def num_slots_for(world_size: int, num_workers: int) -> int:
    """``world_size * num_workers`` after validation."""
    _check_topology(world_size=world_size, num_workers=num_workers)
    return world_size * num_workers


def slot_index(rank: int, worker_id: int, num_workers: int) -> int:
    """Global slot of DataLoader worker ``worker_id`` on ``rank``: ``rank * W + worker_id``."""
    _check_topology(num_workers=num_workers)
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    if not 0 <= worker_id < num_workers:
        raise ValueError(f"worker_id must be in [0, {num_workers}), got {worker_id}")
    return rank * num_workers + worker_id


def slot_position(slot: int, num_workers: int) -> tuple[int, int]:
    """Inverse of :func:`slot_index`: ``(rank, worker_id)`` of ``slot``."""
    _check_topology(num_workers=num_workers)
    if slot < 0:
        raise ValueError(f"slot must be >= 0, got {slot}")
    return divmod(slot, num_workers)


def rank_slots(rank: int, num_workers: int) -> range:
    """The slots owned by ``rank`` (one per DataLoader worker), in worker order."""
    first = slot_index(rank, 0, num_workers)
    return range(first, first + num_workers)


def _check_topology(world_size: int = 1, num_workers: int = 1) -> None:
    """Raise ValueError unless both counts are integers ≥ 1.

    A DataLoader with ``num_workers=0`` loads in the main process: count it as 1 worker.
    """
    for label, value in (("world_size", world_size), ("num_workers", num_workers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
