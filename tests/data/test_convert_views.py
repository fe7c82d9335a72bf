"""Convert reads a folder the way training does: model views, refused camera mismatches and NaN data,
a read-only dataset folder, and one checked reader of manifest.json (issue #7, items 1-4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a1.sim import synthetic as syn
from a1.data.convert import ConvertError, convert, parse_cameras
from a1.data.lerobot import LeRobotReader
from a1.data.sample import make_sample
from a1.data.shards import MANIFEST_KEYS, ShardError, manifest_urls, read_episodes, read_manifest
from a1.data.sources import DatasetConfig
from tests.conftest import ROOT
from tests.data.lerobot_edit import copy_dataset, edit_column, edit_meta_stats, snapshot

FIXTURES = ROOT / "tests" / "fixtures"
VIEWS = ["head", "left_wrist", "right_wrist"]
ALOHA = {"head": "observation.images.cam_high", "left_wrist": "observation.images.cam_left_wrist",
         "right_wrist": None}
ALOHA_FLAG = "head=observation.images.cam_high,left_wrist=observation.images.cam_left_wrist,right_wrist=none"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    syn.generate(out, episodes=3, human_clips=1, image_size=32, frames_per_episode=36)
    return out


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("A1_CACHE", str(tmp_path / "a1_cache"))


def _cli(*args, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "a1.data.convert", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "A1_CACHE": str(cache)})


def test_parse_cameras_none_and_null():
    assert parse_cameras(ALOHA_FLAG) == ALOHA
    assert parse_cameras("head=a, left_wrist = NULL") == {"head": "a", "left_wrist": None}
    with pytest.raises(ConvertError, match="VIEW=KEY"):
        parse_cameras("head")
    with pytest.raises(ConvertError, match="'head' given twice"):
        parse_cameras("head=a,head=b")


@pytest.mark.parametrize("folder", ["lerobot_v30_aloha", "lerobot_v21_aloha"])
def test_default_cameras_on_aloha_names_fail_with_the_fix(folder, tmp_path):
    """Issue #7: ALOHA camera names used to become shard views cam_high/... (training masked all views)."""
    out = tmp_path / "out"
    r = _cli(FIXTURES / folder, out, cache=tmp_path / "cache")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert f"dataset {folder!r}" in lines[0]
    assert "'observation.images.cam_high', 'observation.images.cam_left_wrist'" in lines[0]
    assert f"--cameras {ALOHA_FLAG}" in lines[0]
    assert not out.exists() or not list(out.iterdir())
    # the printed fix works
    r = _cli(FIXTURES / folder, out, "--cameras", ALOHA_FLAG, cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("folder", ["lerobot_v30_aloha", "lerobot_v21_aloha"])
def test_aloha_shards_name_model_views(folder, tmp_path):
    root = FIXTURES / folder
    before = snapshot(root)
    cfg = DatasetConfig(name="aloha", weight=1.0, path=str(root), cameras=dict(ALOHA))
    m = convert(cfg, tmp_path / "shards", VIEWS, progress=False)
    assert snapshot(root) == before  # the dataset folder is only read
    assert (m["views"], m["cameras"], m["state_dim"], m["action_dim"]) == (VIEWS, ALOHA, 14, 14)
    assert read_manifest(tmp_path / "shards") == m
    reader = LeRobotReader(root)
    recs = list(read_episodes(manifest_urls(tmp_path / "shards")))
    assert [r.episode for r in recs] == [0, 1]
    for rec in recs:
        assert list(rec.views) == ["head", "left_wrist"]  # model views; right_wrist (no camera) absent
        np.testing.assert_array_equal(rec.views["head"], reader.images(ALOHA["head"], rec.episode, range(rec.length)))
        assert rec.instruction(0) == ("fold the towel", "open the drawer")[rec.episode]
        s = make_sample(rec, 4, VIEWS, m=3, k=4, dataset_id=0, source="aloha", image_size=32)
        assert s.image_valid[:, 1].tolist() == [True, True, False]  # head, left wrist real; right wrist masked


def test_nan_actions_are_refused_at_convert_time(synth, tmp_path):
    root = copy_dataset(synth / "robot", tmp_path / "robot")

    def poison(a):
        a[40, 3] = np.nan  # episode 1, frame 4
        return a

    edit_column(root, "action", poison)
    out = tmp_path / "shards"
    with pytest.raises(ConvertError, match=r"dataset 'nanbot'.*episode 1 column 'action' has non-finite value nan"):
        convert(DatasetConfig(name="nanbot", weight=1.0, path=str(root)), out, VIEWS, progress=False)
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tar"))
    r = _cli(root, out, "--name", "nanbot", cache=tmp_path / "cache")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "'action'" in r.stderr
    assert "Traceback" not in r.stderr


def test_dataset_folder_is_unchanged_by_stats_and_convert(synth, tmp_path):
    """a1 never writes into a dataset folder, also when it computes (and caches) statistics."""
    root = copy_dataset(synth / "robot", tmp_path / "robot")
    edit_meta_stats(root, lambda d: d.pop("action"))  # no LeRobot statistics for action: computed
    before = snapshot(root)
    cache = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-m", "a1.data.stats", str(root)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, env={**os.environ, "A1_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    assert snapshot(root) == before
    (stats_file,) = (cache / "stats").glob("robot-*.json")
    r = _cli(root, tmp_path / "shards", cache=cache)
    assert r.returncode == 0, r.stderr
    assert snapshot(root) == before
    m = read_manifest(tmp_path / "shards")
    assert m["stats_origin"] == f"cache {stats_file}"
    assert m["stats"]["action"] == {k: v for k, v in json.loads(stats_file.read_text())["action"].items()}
    with pytest.raises(ConvertError, match="inside the dataset"):
        convert(DatasetConfig(name="r", weight=1.0, path=str(root)), root / "shards", VIEWS, progress=False)
    assert snapshot(root) == before


@pytest.fixture
def manifest_folder(synth, tmp_path) -> Path:
    out = tmp_path / "shards"
    convert(DatasetConfig(name="robot", weight=1.0, path=str(synth / "robot")), out, VIEWS, episodes_per_shard=2,
            progress=False)
    return out


def _edit_manifest(folder: Path, edit) -> Path:
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    return path


def test_read_manifest_checks_every_key(manifest_folder, tmp_path):
    m = read_manifest(manifest_folder)
    assert set(MANIFEST_KEYS) <= set(m)
    with pytest.raises(ShardError, match=r"nowhere/manifest.json not found.*python -m a1.data.convert"):
        read_manifest(tmp_path / "nowhere")
    path = manifest_folder / "manifest.json"
    path.write_text('{"name": "robot",')
    with pytest.raises(ShardError, match=r"manifest.json: invalid JSON"):
        read_manifest(manifest_folder)
    path.write_text(json.dumps({k: v for k, v in m.items() if k != "action_dim"}))
    with pytest.raises(ShardError, match=r"manifest.json: missing key 'action_dim'.*--overwrite"):
        read_manifest(manifest_folder)
    path.write_text(json.dumps(m))
    (manifest_folder / m["shards"][1]["url"]).unlink()
    with pytest.raises(ShardError, match=r"manifest.json: shards\[1\].url: shard file .*robot-00001.tar not found"):
        manifest_urls(manifest_folder)


@pytest.mark.parametrize("value, message", [(float("nan"), "NaN"), (None, "null"), (float("inf"), "inf")])
def test_read_manifest_refuses_bad_statistics(manifest_folder, value, message):
    def edit(m):
        m["stats"]["action"]["mean"][3] = value

    path = _edit_manifest(manifest_folder, edit)
    with pytest.raises(ShardError, match=rf"{path}: stats.action: {message} in mean\[3\]"):
        read_manifest(manifest_folder)


def test_read_manifest_refuses_constant_statistics(manifest_folder):
    def edit(m):
        m["stats"]["state"]["std"] = [0.0] * 14

    path = _edit_manifest(manifest_folder, edit)
    with pytest.raises(ShardError, match=rf"{path}: stats.state: std is 0 in every dimension"):
        read_manifest(manifest_folder)
