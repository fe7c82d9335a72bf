"""Statistics are never silently wrong (issue #7, items 3-4): FeatureStats' checks, zero-spread
dims, and where `dataset_stats` finds a dataset's statistics (file, cache, LeRobot, computed)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a1.sim import synthetic as syn
from a1.data.normalize import FeatureStats, StatsError, apply, normalize
from a1.data.sources import DatasetConfig
from a1.data.stats import compute_stats, dataset_stats, stats_cache_path, write_stats_file
from tests.conftest import ROOT
from tests.data.lerobot_edit import copy_dataset, edit_column, edit_meta_stats

GOOD = {"mean": [0.0, 1.0, 2.0], "std": [1.0, 0.5, 2.0], "q01": [-2.0, 0.0, -1.0], "q99": [2.0, 2.0, 5.0]}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    syn.generate(out, episodes=3, human_clips=0, image_size=32, frames_per_episode=36)
    return out


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("A1_CACHE", str(tmp_path / "a1_cache"))
    return tmp_path / "a1_cache"


def _with(key: str, i: int, value) -> dict:
    d = json.loads(json.dumps(GOOD))
    d[key][i] = value
    return d


@pytest.mark.parametrize("key, value, message", [
    ("mean", float("nan"), r"NaN in mean\[1\]"), ("std", float("inf"), r"inf in std\[1\]"),
    ("q01", float("-inf"), r"-inf in q01\[1\]"), ("q99", None, r"null in q99\[1\]"),
    ("std", -1.0, r"negative std\[1\]"), ("q99", -5.0, r"q99\[1\] = -5.0 is below q01\[1\]"),
])
def test_unusable_values_are_refused_naming_where(key, value, message):
    with pytest.raises(StatsError, match=rf"^data/manifest.json: stats.action: {message}"):
        FeatureStats.from_dict(_with(key, 1, value), "data/manifest.json: stats.action")


def test_a_feature_without_spread_is_refused():
    constant = dict(GOOD, std=[0.0, 0.0, 0.0])
    with pytest.raises(StatsError, match="x.json: state: std is 0 in every dimension"):
        FeatureStats.from_dict(constant, "x.json: state")
    flat = dict(GOOD, q01=[1.0, 1.0, 1.0], q99=[1.0, 1.0, 1.0])
    with pytest.raises(StatsError, match="q99 == q01 in every dimension"):
        FeatureStats.from_dict(flat, "x.json: state")
    with pytest.raises(StatsError, match="dataset 'still': action: std is 0"):
        FeatureStats.compute(np.ones((50, 4)), "dataset 'still': action")
    with pytest.raises(KeyError, match="x.json: state: statistics lack 'q99'"):
        FeatureStats.from_dict({k: v for k, v in GOOD.items() if k != "q99"}, "x.json: state")


@pytest.mark.parametrize("mode", ["mean_std", "quantile"])
def test_one_dim_without_spread_is_centred_not_scaled(mode):
    """A joint that never moves: allowed, normalised to x − centre (scale 1), exact round trip."""
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 2.0, (200, 3))
    data[:, 1] = 0.25  # never moves
    stats = FeatureStats.compute(data)
    assert stats.std[1] == 0 and stats.q99[1] == stats.q01[1]
    y = normalize(data, stats, mode)
    np.testing.assert_array_equal(y[:, 1], 0.0)  # centred
    moved = data[:5].copy()
    moved[:, 1] = 0.75  # a value off the constant comes out unscaled (not ×1e6)
    np.testing.assert_allclose(normalize(moved, stats, mode)[:, 1], 0.5, rtol=1e-6)
    np.testing.assert_allclose(apply(y, stats, mode, inverse=True), data, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply(normalize(moved, stats, mode), stats, mode, inverse=True), moved, rtol=1e-5,
                               atol=1e-5)
    assert np.abs(y[:, [0, 2]]).max() < 10  # the moving dims are scaled as usual


def test_cache_path(synth, cache, monkeypatch):
    root = synth / "robot"
    path = stats_cache_path(root)
    assert path.parent == cache / "stats" and path.name.startswith("robot-") and len(path.stem) == len("robot-") + 12
    assert stats_cache_path(root, "observation.state", "other") != path  # the columns are part of the key
    assert stats_cache_path(str(root)) == path
    monkeypatch.delenv("A1_CACHE")
    assert stats_cache_path(root) == Path(".cache/a1/stats") / path.name


def test_dataset_stats_order(synth, tmp_path, cache, caplog):
    root = copy_dataset(synth / "robot", tmp_path / "robot")
    cfg = DatasetConfig(name="bot", weight=1.0, path=str(root))
    state, action, origin = dataset_stats(cfg)
    assert origin == "lerobot meta/stats.json"
    meta = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_array_equal(action.q99, meta["action"]["q99"])
    # LeRobot stats without percentiles: computed in memory, cached (logged), then read from the cache
    edit_meta_stats(root, lambda d: [d[k].pop("q01") for k in ("observation.state", "action")])
    file = stats_cache_path(root)
    with caplog.at_level(logging.WARNING, logger="a1.data.stats"):
        state2, action2, origin = dataset_stats(cfg)
    assert origin == f"computed (cached to {file})" and str(file) in caplog.text and file.is_file()
    np.testing.assert_allclose(action2.mean, action.mean, rtol=1e-9)
    assert dataset_stats(cfg)[2] == f"cache {file}"
    # an explicit stats file wins
    own = write_stats_file(tmp_path / "own.json", compute_stats(root, max_samples=50))
    assert dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(root), stats=str(own)))[2] == f"file {own}"
    # an unusable cache is recomputed (warning), never used
    data = json.loads(file.read_text())
    data["action"]["std"][0] = None
    file.write_text(json.dumps(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="a1.data.stats"):
        assert dataset_stats(cfg)[2] == f"computed (cached to {file})"
    assert "null in std[0]" in caplog.text
    assert json.loads(file.read_text())["action"]["std"][0] is not None


def test_stats_files_must_fit_the_dataset(synth, tmp_path):
    root = synth / "robot"
    other = write_stats_file(tmp_path / "other.json", compute_stats(root, "action", "observation.state"))
    with pytest.raises(StatsError, match=r"other.json: statistics of columns state='action'"):
        dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(root), stats=str(other)))
    data = compute_stats(root)
    data["action"] = {k: v[:7] for k, v in data["action"].items()}
    short = write_stats_file(tmp_path / "short.json", data)
    with pytest.raises(StatsError, match=r"dataset 'bot': statistics from file .*short.json have 7 dims for 'action'"):
        dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(root), stats=str(short)))
    nan = json.loads(json.dumps(compute_stats(root)))
    nan["state"]["mean"][2] = float("nan")
    bad = write_stats_file(tmp_path / "nan.json", nan)
    with pytest.raises(StatsError, match=r"nan.json: state: NaN in mean\[2\]"):
        dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(root), stats=str(bad)))


def test_nan_lerobot_stats_fall_back_to_the_data(synth, tmp_path, caplog):
    root = copy_dataset(synth / "robot", tmp_path / "robot")
    edit_meta_stats(root, lambda d: d["action"]["mean"].__setitem__(3, float("nan")))
    with caplog.at_level(logging.WARNING, logger="a1.data.stats"):
        _, action, origin = dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(root)))
    assert origin.startswith("computed") and np.isfinite(action.mean).all()
    assert "meta/stats.json" in caplog.text and r"NaN in mean[3]" in caplog.text


def test_nan_or_constant_data_is_refused_naming_dataset_and_feature(synth, tmp_path):
    root = copy_dataset(synth / "robot", tmp_path / "robot")
    edit_meta_stats(root, lambda d: d.pop("action"))  # nothing to fall back on: computed from the data

    def poison(a):
        a[50, 2] = np.inf
        return a

    edit_column(root, "action", poison)
    cfg = DatasetConfig(name="bot", weight=1.0, path=str(root))
    with pytest.raises(StatsError, match=r"dataset 'bot' .*episode 1: action: non-finite value inf at frame 14, "
                                         r"dim 2"):
        dataset_stats(cfg)
    assert not stats_cache_path(root).exists()
    r = subprocess.run([sys.executable, "-m", "a1.data.stats", str(root)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, env={**os.environ, "A1_CACHE": str(tmp_path / "c")})
    last = r.stderr.strip().splitlines()[-1]  # after the progress bar
    assert r.returncode == 2 and last.startswith("error: ") and "episode 1: action" in last
    edit_column(root, "action", lambda a: np.full_like(a, 0.5))
    with pytest.raises(StatsError, match="dataset 'bot' .*: action: std is 0 in every dimension"):
        dataset_stats(cfg)
