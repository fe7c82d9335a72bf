"""Tests for per-slot mixture probabilities and samplers (`a1.data.mixture`)."""

from __future__ import annotations

import numpy as np
import pytest

from a1.data.assign import DatasetSpec, assign_datasets
from a1.data.mixture import (
    SlotMixture,
    SlotSampler,
    build_mixture,
    simulate_frequencies,
    total_variation,
    uniform_slot_probs,
)
from tests.conftest import TABLE3

PITFALL = [DatasetSpec("A", 100, 0.6), DatasetSpec("B", 100, 0.3), DatasetSpec("C", 100, 0.1)]


def _check_exact(m: SlotMixture) -> None:
    """Rows are distributions on the slot's datasets; column means equal the weights."""
    p = m.probs
    assert p.shape == (m.assignment.num_slots, len(m.assignment.specs))
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    for s in range(m.assignment.num_slots):
        outside = np.setdiff1d(np.arange(p.shape[1]), m.assignment.members(s))
        assert np.all(p[s, outside] == 0)
    np.testing.assert_allclose(m.realized_weights(), m.weights, rtol=0, atol=1e-9)


def _configured(m: SlotMixture) -> dict[str, float]:
    return dict(zip(m.names, m.weights.tolist()))


def test_pitfall_uniform_within_slot_distorts_weights() -> None:
    a = assign_datasets(PITFALL, 4)
    assert [a.members(s) for s in range(4)] == [(1,), (2,), (0,), (0,)]
    naive = simulate_frequencies(uniform_slot_probs(a), ["A", "B", "C"], 20_000)
    assert naive == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.25}, abs=0.02)
    assert total_variation(naive, {"A": 0.6, "B": 0.3, "C": 0.1}) > 0.1


def test_pitfall_fixed_by_mixture() -> None:
    m = build_mixture(PITFALL, 4)
    _check_exact(m)
    realized = simulate_frequencies(m.probs, m.names, 20_000, num_workers=4)
    assert total_variation(realized, _configured(m)) <= 0.02


@pytest.mark.parametrize(("world_size", "num_workers"), [(8, 4), (1, 1), (1, 4), (64, 8)])
def test_table3_mixture(world_size: int, num_workers: int) -> None:
    m = build_mixture(TABLE3, world_size * num_workers, seed=0)
    _check_exact(m)
    assert all(len(slot) >= 1 for slot in m.assignment.slots)
    realized = simulate_frequencies(m.probs, m.names, 20_000, num_workers=num_workers)
    assert total_variation(realized, _configured(m)) <= 0.02


def test_weights_are_normalized() -> None:
    scaled = [DatasetSpec(s.name, s.size, s.weight * 100) for s in TABLE3]
    np.testing.assert_allclose(
        build_mixture(scaled, 32).probs, build_mixture(TABLE3, 32).probs, atol=1e-12
    )


def test_weights_conflicting_with_size_greedy_get_replicas() -> None:
    # Greedy by size puts A and B (98% of the weight) together on one of two slots.
    specs = [DatasetSpec("C", 1e9, 0.02), DatasetSpec("A", 10, 0.49), DatasetSpec("B", 10, 0.49)]
    assert [assign_datasets(specs, 2).members(s) for s in range(2)] == [(0,), (1, 2)]
    m = build_mixture(specs, 2)
    _check_exact(m)
    assert sum(m.assignment.num_replicas) > 3


def test_always_feasible_on_random_instances() -> None:
    rng = np.random.default_rng(2)
    for _ in range(150):
        n, slots = int(rng.integers(1, 15)), int(rng.integers(1, 50))
        weights = rng.lognormal(0, 2.5, n)  # very uneven weights
        specs = [DatasetSpec(f"d{i}", float(rng.lognormal(10, 2)), weights[i]) for i in range(n)]
        m = build_mixture(specs, slots, seed=int(rng.integers(0, 1000)))
        _check_exact(m)
        assert all(len(slot) >= 1 for slot in m.assignment.slots)
        seeds = [p.seed for slot in m.assignment.slots for p in slot]
        assert len(set(seeds)) == len(seeds)


def test_proportional_weights_balance_loads() -> None:
    specs = [DatasetSpec(s.name, s.size, s.size) for s in TABLE3]
    assert build_mixture(specs, 32).assignment.balance == pytest.approx(1.0)


def test_sampler_reproducible_and_slot_specific() -> None:
    probs = [0.2, 0.0, 0.5, 0.3]
    a = SlotSampler(probs, seed=1, rank=2, worker_id=3).sample(2000)
    b = SlotSampler(probs, seed=1, rank=2, worker_id=3).sample(2000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, SlotSampler(probs, seed=1, rank=2, worker_id=2).sample(2000))
    assert not np.array_equal(a, SlotSampler(probs, seed=1, rank=3, worker_id=3).sample(2000))
    assert not np.array_equal(a, SlotSampler(probs, seed=2, rank=2, worker_id=3).sample(2000))
    it = SlotSampler(probs, seed=1, rank=2, worker_id=3, chunk=64)
    assert [next(it) for _ in range(2000)] == a.tolist()  # iteration == one big sample
    assert 1 not in set(a.tolist())
    np.testing.assert_allclose(np.bincount(a, minlength=4) / 2000, probs, atol=0.04)


def test_sampler_epochs_differ_and_repeat() -> None:
    s = SlotSampler([0.5, 0.5], seed=0, rank=0, worker_id=0, epoch=0)
    e0 = s.sample(500)
    s.set_epoch(1)
    e1 = s.sample(500)
    s.set_epoch(0)
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(e0, s.sample(500))


def test_mixture_sampler_uses_its_slot_row() -> None:
    m = build_mixture(PITFALL, 4)
    for slot in range(4):
        rank, worker = divmod(slot, 2)
        draws = m.sampler(rank, worker, num_workers=2, seed=3).sample(500)
        assert set(draws.tolist()) <= set(m.assignment.members(slot))


def test_sampler_rejects_bad_probs() -> None:
    with pytest.raises(ValueError):
        SlotSampler([0.5, -0.1])
    with pytest.raises(ValueError):
        SlotSampler([0.0, 0.0])


def test_simulation_is_round_robin() -> None:
    probs = np.eye(4)  # slot s always yields dataset s
    freq = simulate_frequencies(probs, ["a", "b", "c", "d"], 10)
    assert freq == {"a": 0.3, "b": 0.3, "c": 0.2, "d": 0.2}


def test_total_variation() -> None:
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert total_variation({"a": 0.6, "b": 0.4}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.1)
