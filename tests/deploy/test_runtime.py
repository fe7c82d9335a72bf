"""The runtime: frame history as in training, chunk stitching, async planning, compiled = eager."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from a1.data.collate import DatasetNorm
from a1.data.sources import DatasetConfig, open_source
from a1.data.stats import dataset_stats
from a1.deploy.chunks import ChunkQueue
from a1.deploy.history import FrameHistory
from a1.deploy.processor import ObservationError, Processor, ProcessorSettings
from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
from a1.policy_folder import load_policy
from a1.testing import random_policy_folder
from tests.deploy.test_processor import CAMERAS, FIXTURE, SIZE, M, _assert_same, _raw, _training_observation


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return random_policy_folder(tmp_path_factory.mktemp("policy") / "tiny")


@pytest.fixture(scope="module")
def fixture_runtime(folder, tmp_path_factory):
    """A runtime whose processor carries the lerobot fixture's statistics, m = 3, 24² frames."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("A1_CACHE", str(tmp_path_factory.mktemp("cache")))
        cfg = DatasetConfig(name="aloha", weight=1.0, path=str(FIXTURE), cameras=CAMERAS)
        state, action, _ = dataset_stats(cfg)
    loaded = load_policy(folder)
    norm = DatasetNorm(state, action, "mean_std")
    proc = Processor(loaded.config, ProcessorSettings(SIZE, M, "letterbox"), loaded.tokenizer, norm, "aloha", ("right_wrist",))
    source = open_source(cfg, loaded.config.views)
    return PolicyRuntime(loaded, proc, RuntimeOptions(compile=False, warmup=0)), source, norm


def test_history_gives_the_training_frames_at_every_step(fixture_runtime):
    runtime, source, norm = fixture_runtime
    episode = source.episodes[0]
    ep = runtime.episode(execute=4)
    for t in range(episode.length):  # one frame per control step, as a robot sends them
        got = runtime.processor.observation(ep.observe(_raw(episode, t)))
        _assert_same(got, _training_observation(episode, t, norm).observation)
        ep.t += 1
    ep.reset()
    first = runtime.processor.observation(ep.observe(_raw(episode, 5)))
    assert first.image_mask[0, :2].tolist() == [[False, True], [False, True]]  # a new episode starts over


def test_sparse_history_takes_the_nearest_recorded_frame():
    h = FrameHistory(15)
    frames = {s: np.full((3, 4, 4), s, np.uint8) for s in (0, 10, 20, 30, 40)}
    seen = []
    for s, f in frames.items():
        pair, valid = h.pair(s, f)
        h.push(s, f)
        seen.append((int(pair[0, 0, 0, 0]), valid.tolist()))
    # t−m = −15, −5 (first frame, masked); 5 (0 and 10 tie: the older); 15 (10/20 tie → 10); 25 → 20
    assert seen == [(0, [False, True]), (0, [False, True]), (0, [True, True]), (10, [True, True]),
                    (20, [True, True])]
    assert len(h.frames) <= 3  # old frames are dropped
    h.push(40, frames[40])  # the same step again (a retried request) replaces its frame
    with pytest.raises(ValueError, match="before the last recorded step"):
        h.push(39, frames[40])
    with pytest.raises(ObservationError, match="frame size changed"):
        h.pair(50, np.zeros((3, 8, 8), np.uint8))


def test_chunks_are_stitched_by_absolute_step():
    q = ChunkQueue(4)
    q.add(0, np.arange(4, dtype=np.float32)[:, None] + 0)
    q.add(2, np.arange(4, dtype=np.float32)[:, None] + 100)  # planned at step 2
    assert [float(q.action(s)[0]) for s in range(6)] == [0, 1, 100, 101, 102, 103]
    with pytest.raises(RuntimeError, match="no action planned for step 6"):
        q.action(6)
    e = ChunkQueue(4, ensemble=0.5)
    e.add(0, np.zeros((4, 1), np.float32))
    e.add(1, np.ones((4, 1), np.float32))
    w = np.exp(-0.5 * np.arange(2))
    assert float(e.action(0)[0]) == 0.0
    assert float(e.action(1)[0]) == pytest.approx(w[1] / w.sum())  # the older chunk weighs more
    assert float(e.action(4)[0]) == 1.0


def test_step_plans_every_n_steps_and_request_returns_n(fixture_runtime):
    runtime, source, _ = fixture_runtime
    episode = source.episodes[0]
    ep = runtime.episode(execute=3)
    starts, actions = [], []
    for t in range(7):
        actions.append(ep.step(_raw(episode, t)))
        starts.append(ep.queue.chunks[-1][0])
    assert starts == [0, 0, 0, 3, 3, 3, 6]
    assert all(a.shape == (14,) and np.isfinite(a).all() for a in actions)
    ep.reset()
    out = ep.request(_raw(episode, 0))
    assert out.shape == (3, 14) and out.dtype == np.float32 and ep.t == 3
    np.testing.assert_array_equal(out, ep.last.actions[:3])


def test_asynchronous_planning_stitches_without_gaps(fixture_runtime):
    runtime, source, _ = fixture_runtime
    episode = source.episodes[0]
    ep = runtime.episode(execute=4, asynchronous=True, lead=2)
    planned_in = []
    original = ep._plan

    def plan(obs, at):
        planned_in.append((at, threading.current_thread().name))
        original(obs, at)

    ep._plan = plan
    chunks: dict[int, np.ndarray] = {}
    for t in range(40):  # at a 20 ms control period
        raw = _raw(episode, t % episode.length)
        time.sleep(0.02)
        a = ep.step(raw)
        chunks.update({s: c for s, c in ep.queue.chunks})
        # every executed action is the action some chunk planned for exactly this step
        assert any(np.array_equal(a, c[t - s]) for s, c in chunks.items() if s <= t < s + len(c))
    ep.close()
    # the next plan starts n − lead = 2 steps after the previous one started, or later while that
    # one is still computing
    starts = [at for at, _ in planned_in]
    assert starts[:2] == [0, 2] and len(starts) >= 3 and min(np.diff(starts)) >= 2
    assert planned_in[0][1] == threading.main_thread().name  # nothing to execute yet: blocking
    assert all(name == "a1-plan" for _, name in planned_in[1:])


def test_explicit_noise_is_reproducible_and_compiled_equals_eager(folder):
    eager = PolicyRuntime.load(folder, options=RuntimeOptions(compile=False, warmup=0))
    compiled = PolicyRuntime.load(folder, options=RuntimeOptions(compile=True, warmup=1))
    rng = np.random.default_rng(0)
    raw = {"images": {v: rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for v in eager.processor.views},
           "state": rng.normal(size=14), "prompt": "pick up the cube"}
    obs = eager.processor.parse(raw)
    noise = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    a = eager.plan(obs, noise=noise).actions
    np.testing.assert_array_equal(a, eager.plan(obs, noise=noise).actions)
    np.testing.assert_allclose(compiled.plan(obs, noise=noise).actions, a, atol=1e-4, rtol=0)
    # LoadedPolicy.infer: the same raw observation, one call
    np.testing.assert_allclose(load_policy(folder).infer(raw, noise=noise), a, atol=1e-5, rtol=0)
