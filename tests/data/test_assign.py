"""Tests for the greedy dataset → slot assignment and slot maths (`a1.data.assign`)."""

from __future__ import annotations

import numpy as np
import pytest

from a1.data.assign import (
    Assignment,
    DatasetSpec,
    assign_datasets,
    greedy_assign,
    num_slots_for,
    rank_slots,
    replica_quotas,
    slot_index,
    slot_position,
)
from tests.conftest import TABLE3


def test_greedy_hand_example() -> None:
    # Sorted: 10(#2) 7(#4) 6(#0) 5(#5) 4(#3) 2(#1); each to the least-loaded slot.
    assert greedy_assign([6, 2, 10, 4, 7, 5], 3) == [[2, 1], [4, 3], [0, 5]]


def test_greedy_ties_keep_input_order_and_lowest_slot() -> None:
    assert greedy_assign([5, 5, 5, 5], 2) == [[0, 2], [1, 3]]
    assert greedy_assign([3], 3) == [[0], [], []]


def test_assign_is_the_paper_rule_without_replication() -> None:
    sizes = [6, 2, 10, 4, 7, 5]
    specs = [DatasetSpec(f"d{i}", s, 1.0) for i, s in enumerate(sizes)]
    a = assign_datasets(specs, 3, seed=7)
    assert [a.members(s) for s in range(3)] == [(1, 2), (3, 4), (0, 5)]
    assert a.loads == (12.0, 11.0, 11.0)
    assert a.balance == pytest.approx(12.0 / (34.0 / 3.0))
    assert a.num_replicas == (1,) * 6


def test_greedy_balance_on_random_instances() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, slots = int(rng.integers(1, 60)), int(rng.integers(1, 20))
        sizes = rng.lognormal(0.0, 1.5, n)
        placed = greedy_assign(sizes.tolist(), slots)
        assert sorted(i for slot in placed for i in slot) == list(range(n))
        loads = np.array([sizes[slot].sum() for slot in placed])
        # List-scheduling invariant and the LPT bound against max(mean, largest item).
        assert loads.max() - loads.min() <= sizes.max() + 1e-9
        assert loads.max() <= 4 / 3 * max(sizes.sum() / slots, sizes.max()) + 1e-9


def test_assignment_coverage_and_replication_on_random_instances() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        n, slots = int(rng.integers(1, 12)), int(rng.integers(1, 40))
        specs = [
            DatasetSpec(f"d{i}", float(rng.lognormal(10, 2)), float(rng.lognormal(0, 1.5)))
            for i in range(n)
        ]
        a = assign_datasets(specs, slots, seed=3)
        assert a.num_slots == slots
        assert all(len(slot) >= 1 for slot in a.slots)  # coverage
        for s in range(slots):
            assert len(set(a.members(s))) == len(a.members(s))  # replicas on distinct slots
        assert all(1 <= r <= slots for r in a.num_replicas)
        assert sum(a.num_replicas) >= max(n, slots)
        assert sum(a.loads) == pytest.approx(sum(s.size for s in specs))
        seeds = [p.seed for slot in a.slots for p in slot]
        assert len(set(seeds)) == len(seeds)


def test_replica_quotas_follow_weights() -> None:
    # 32 slots: S*w = 20.48, 2.56, 5.76, 0.64, 2.56 -> floors 20,2,5,1,2 (+1 AgiBot, +1 EgoDex).
    assert replica_quotas(TABLE3, 32) == [20, 2, 6, 1, 3]
    assert replica_quotas(TABLE3, 4) == [2, 1, 1, 1, 1]
    assert replica_quotas(TABLE3, 1) == [1, 1, 1, 1, 1]
    assert sum(replica_quotas(TABLE3, 512)) == 512


def test_replica_seeds_distinct_and_deterministic() -> None:
    a = assign_datasets(TABLE3, 32, seed=5)
    assert a == assign_datasets(TABLE3, 32, seed=5)
    intern = [p for slot in a.slots for p in slot if p.dataset == 0]
    assert len(intern) == 20
    assert sorted(p.replica for p in intern) == list(range(20))
    assert all(p.num_replicas == 20 for p in intern)
    assert len({p.seed for p in intern}) == 20
    other = assign_datasets(TABLE3, 32, seed=6)
    assert {p.seed for s in a.slots for p in s}.isdisjoint({p.seed for s in other.slots for p in s})


def test_from_members_splits_load_by_mass() -> None:
    specs = [DatasetSpec("a", 100, 1.0), DatasetSpec("b", 10, 1.0)]
    even = Assignment.from_members(specs, [[0], [0, 1]])
    assert even.loads == (50.0, 60.0)
    mass = np.array([[0.75, 0.0], [0.25, 1.0]])
    skew = Assignment.from_members(specs, [[0], [0, 1]], mass=mass)
    assert skew.loads == pytest.approx((75.0, 35.0))
    assert [p.share for p in skew.slots[1]] == pytest.approx([0.25, 1.0])


@pytest.mark.parametrize(
    ("specs", "slots", "match"),
    [
        ([], 4, "no datasets"),
        ([DatasetSpec("x", 1, 1), DatasetSpec("x", 2, 1)], 4, "duplicate dataset name 'x'"),
        ([DatasetSpec("tiny", 0, 1)], 4, "'tiny': size"),
        ([DatasetSpec("neg", 5, -1.0)], 4, "'neg': weight"),
        ([DatasetSpec("nan", 5, float("nan"))], 4, "'nan': weight"),
        ([DatasetSpec("ok", 5, 1.0)], 0, "slots must be >= 1"),
    ],
)
def test_bad_input_raises(specs: list, slots: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        assign_datasets(specs, slots)


def test_from_members_rejects_empty_slot_and_unplaced_dataset() -> None:
    specs = [DatasetSpec("a", 1, 1), DatasetSpec("b", 1, 1)]
    with pytest.raises(ValueError, match="slot 1 holds no dataset"):
        Assignment.from_members(specs, [[0, 1], []])
    with pytest.raises(ValueError, match=r"held by no slot: \['b'\]"):
        Assignment.from_members(specs, [[0], [0]])


@pytest.mark.parametrize("world_size", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("num_workers", [1, 2, 4, 8])
def test_ddp_slot_maths(world_size: int, num_workers: int) -> None:
    owned = [s for rank in range(world_size) for s in rank_slots(rank, num_workers)]
    assert sorted(owned) == list(range(num_slots_for(world_size, num_workers)))
    for rank in range(world_size):
        for worker in range(num_workers):
            s = slot_index(rank, worker, num_workers)
            assert slot_position(s, num_workers) == (rank, worker)


def test_slot_maths_rejects_bad_ids() -> None:
    with pytest.raises(ValueError, match="worker_id"):
        slot_index(0, 4, 4)
    with pytest.raises(ValueError, match="num_workers"):
        slot_index(0, 0, 0)
    with pytest.raises(ValueError, match="rank"):
        slot_index(-1, 0, 2)
    with pytest.raises(ValueError, match="world_size"):
        num_slots_for(0, 2)
