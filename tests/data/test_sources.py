"""Folder sources (LeRobot, human video), sample cutting and normalisation statistics on real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a1.data.normalize import FeatureStats
from a1.data.sample import frame_window, make_sample
from a1.data.sources import DatasetConfig, ViewError, check_shard_views, open_source
from a1.data.stats import compute_stats, dataset_stats, read_stats_file, stats_cache_path
from a1.sim.synthetic import generate
from tests.conftest import ROOT

VIEWS = ["head", "left_wrist", "right_wrist"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), episodes=3, human_clips=1, image_size=32, frames_per_episode=30)


def test_lerobot_sample_windows_and_chunk(synth):
    src = open_source(DatasetConfig(name="syn", weight=1.0, path=str(synth["robot"])), VIEWS)
    ep = src.episodes[2]
    s = make_sample(ep, 20, VIEWS, m=15, k=16, dataset_id=0, source="syn/2/20", image_size=32)
    assert s.images.shape == (3, 3, 3, 32, 32)
    assert s.image_valid.tolist() == [[True, True, False]] * 3  # t+15 = 35 is past the 30-frame episode
    states, actions = ep.vectors()
    np.testing.assert_array_equal(s.state, states[20])
    np.testing.assert_array_equal(s.actions[:10], actions[20:30])
    np.testing.assert_array_equal(s.actions[10:], np.repeat(actions[29:30], 6, 0))  # clamped, masked
    assert s.action_valid.tolist() == [True] * 10 + [False] * 6
    np.testing.assert_array_equal(s.images[0, 1], ep.frames("head", np.array([20]))[0])


def test_missing_view_and_unknown_camera(synth):
    cams = {"head": "observation.images.head", "left_wrist": None, "right_wrist": "observation.images.right_wrist"}
    src = open_source(DatasetConfig(name="syn", weight=1.0, path=str(synth["robot"]), cameras=cams), VIEWS)
    s = make_sample(src.episodes[0], 15, VIEWS, 15, 16, 0, "syn/0/15", 32)
    assert not s.image_valid[1].any() and not s.images[1].any()
    assert s.image_valid[0].tolist() == s.image_valid[2].tolist() == [True, True, False]  # 15+15 ≥ 30 frames
    bad = dict(cams, left_wrist="observation.images.left_wrsit")
    with pytest.raises(ViewError, match="'syn'.*left_wrist → observation.images.left_wrsit; its cameras are"):
        open_source(DatasetConfig(name="syn", weight=1.0, path=str(synth["robot"]), cameras=bad), VIEWS)


ALOHA = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot_v30_aloha"
ALOHA_MAP = {"head": "observation.images.cam_high", "left_wrist": "observation.images.cam_left_wrist",
             "right_wrist": "observation.images.cam_right_wrist"}


def test_aloha_camera_names_never_train_blind():
    """Default views on ALOHA camera keys: an error naming the dataset, its cameras and the mapping."""
    with pytest.raises(ViewError) as err:
        open_source(DatasetConfig(name="aloha", weight=1.0, path=str(ALOHA)), VIEWS)
    msg = str(err.value)
    assert "'aloha'" in msg and "head → observation.images.head" in msg
    assert "head: observation.images.cam_high" in msg and "left_wrist: observation.images.cam_left_wrist" in msg
    # partly wrong: one view still unmapped is the same error; an explicit null is allowed
    partly = dict(ALOHA_MAP, right_wrist="observation.images.right_wrist")
    with pytest.raises(ViewError, match="right_wrist → observation.images.right_wrist"):
        open_source(DatasetConfig(name="aloha", weight=1.0, path=str(ALOHA), cameras=partly), VIEWS)
    src = open_source(DatasetConfig(name="aloha", weight=1.0, path=str(ALOHA), cameras=dict(ALOHA_MAP, right_wrist=None)),
                      VIEWS)
    assert src.cameras == dict(ALOHA_MAP, right_wrist=None)


@pytest.mark.parametrize("cameras, match", [
    ({"head": None, "left_wrist": None, "right_wrist": None}, "every view maps to null"),
    ({"head": "observation.images.cam_high"}, r"views \['left_wrist', 'right_wrist'\] are not mapped"),
    (dict(ALOHA_MAP, top="observation.images.cam_high"), "views \\['top'\\] that the model does not have"),
])
def test_mappings_that_would_train_blind_are_refused(cameras, match):
    with pytest.raises(ViewError, match=match):
        open_source(DatasetConfig(name="aloha", weight=1.0, path=str(ALOHA), cameras=cameras), VIEWS)


def test_shard_views_are_checked_against_the_model():
    manifest = {"kind": "lerobot", "views": ["head", "left_wrist"],
                "cameras": {"head": "observation.images.cam_high", "left_wrist": "observation.images.cam_left_wrist",
                            "right_wrist": None}}
    cfg = DatasetConfig(name="s", weight=1.0, shards="/x")
    assert check_shard_views(cfg, VIEWS, manifest, "/x") == {"head": "observation.images.cam_high",
                                                             "left_wrist": "observation.images.cam_left_wrist",
                                                             "right_wrist": None}
    old = {"kind": "lerobot", "views": ["cam_high", "cam_left_wrist", "cam_right_wrist"], "cameras": {}}
    with pytest.raises(ViewError, match="shards hold views \\['cam_high'.*--cameras head="):
        check_shard_views(cfg, VIEWS, old, "/x")
    with pytest.raises(ViewError, match="converted with cameras"):
        check_shard_views(DatasetConfig(name="s", weight=1.0, shards="/x", cameras={"head": "nonsense"}), VIEWS,
                          manifest, "/x")


def test_human_video_has_no_actions(synth):
    src = open_source(DatasetConfig(name="ego", weight=1.0, kind="human_video", path=str(synth["human"])), VIEWS)
    clip = src.episodes[0]
    t = clip.length - 16
    s = make_sample(clip, t, VIEWS, 15, 16, 1, f"ego/0/{t}", 64)  # resized 32 → 64
    assert not s.has_action and s.state is None and not s.action_valid.any()
    assert s.images.shape[-1] == 64 and s.image_valid[0].tolist() == frame_window(t, clip.length, 15)[1].tolist()
    assert not s.image_valid[1:].any()


def test_bad_annotation_line_is_named(tmp_path):
    (tmp_path / "annotations.jsonl").write_text('{"clip": "a.mp4", "fps": 15}\n')
    with pytest.raises(ValueError, match="annotations.jsonl:1"):
        open_source(DatasetConfig(name="ego", weight=1.0, kind="human_video", path=str(tmp_path)), VIEWS)


def test_stats_cli_matches_numpy(synth, tmp_path):
    env = {**os.environ, "A1_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "a1.data.stats", str(synth["robot"])],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("A1_CACHE", str(tmp_path / "cache"))
        cache = stats_cache_path(synth["robot"])
        state, action, origin = dataset_stats(DatasetConfig(name="syn", weight=1.0, path=str(synth["robot"])))
    assert cache.parent == tmp_path / "cache" / "stats" and str(cache) in proc.stdout
    assert origin == f"cache {cache}"  # the file the CLI wrote is what training reads
    src = open_source(DatasetConfig(name="syn", weight=1.0, path=str(synth["robot"])), VIEWS)
    all_states = np.concatenate([e.vectors()[0] for e in src.episodes])
    ref = FeatureStats.compute(all_states)
    np.testing.assert_allclose(state.mean, ref.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(state.std, ref.std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.q99, ref.q99, rtol=1e-6, atol=1e-6)
    data = json.loads(cache.read_text())
    assert data["frames"] == 90 and action.dims == 14
    assert data["keys"] == {"state": "observation.state", "action": "action"}
    sub = compute_stats(synth["robot"], max_samples=40)  # percentiles from a 40-frame subsample
    assert np.allclose(sub["state"]["mean"], ref.mean)
    out = tmp_path / "elsewhere" / "robot_stats.json"  # --out FILE
    proc = subprocess.run([sys.executable, "-m", "a1.data.stats", str(synth["robot"]), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_stats_file(out)[1].mean, action.mean)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        dataset_stats(DatasetConfig(name="syn", weight=1.0, path=str(synth["robot"]),
                                    stats=str(tmp_path / "missing.json")))
