"""Synthetic LeRobot v3.0 + human-video generator: layout, consistency, decode, determinism, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from a1.sim import synthetic as syn
from tests.conftest import read_video

FPS = 15
FRAMES = 40
EPISODES = 4
SIZE = 32


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("syn")
    res = syn.generate(out, episodes=EPISODES, seed=3, human_clips=2, image_size=SIZE, fps=FPS,
                       frames_per_episode=FRAMES)
    return res


def _load(ds):
    root = ds["robot"]
    info = json.loads((root / "meta/info.json").read_text())
    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    return root, info, data, eps


def test_layout_and_info(ds):
    root, info, data, eps = _load(ds)
    expected = {
        "meta/info.json", "meta/stats.json", "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet",
        *(f"videos/{c}/chunk-000/file-000.mp4" for c in syn.CAMERAS),
    }
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == expected
    assert info["codebase_version"] == "v3.0"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["total_episodes"] == EPISODES == len(eps["episode_index"])
    assert info["total_frames"] == EPISODES * FRAMES == len(data["index"])
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert info["total_tasks"] == tasks.num_rows == 3
    assert tasks.column("task_index").to_pylist() == [0, 1, 2]
    assert b"pandas" in tasks.schema.metadata  # index "task" restored by pandas.read_parquet
    assert info["splits"] == {"train": f"0:{EPISODES}"}
    for c in syn.CAMERAS:
        f = info["features"][c]
        assert f["dtype"] == "video" and f["shape"] == [SIZE, SIZE, 3]
        assert f["info"]["video.fps"] == FPS and f["info"]["video.pix_fmt"] == "yuv420p"
    for k in ("observation.state", "action"):
        assert info["features"][k]["shape"] == [14] and len(info["features"][k]["names"]) == 14
    assert set(data) == {"observation.state", "action", "timestamp", "frame_index", "episode_index",
                         "index", "task_index"}


def test_episode_ranges_contiguous(ds):
    _, _, data, eps = _load(ds)
    ep_idx = np.array(data["episode_index"])
    assert np.array_equal(np.array(data["index"]), np.arange(len(ep_idx)))
    prev = 0
    for i, e in enumerate(eps["episode_index"]):
        a, b = eps["dataset_from_index"][i], eps["dataset_to_index"][i]
        assert a == prev and b - a == eps["length"][i] == FRAMES
        assert (ep_idx[a:b] == e).all()
        fi = np.array(data["frame_index"][a:b])
        assert np.array_equal(fi, np.arange(b - a))
        np.testing.assert_allclose(np.array(data["timestamp"][a:b]), fi / FPS, atol=1e-5)
        for c in syn.CAMERAS:
            assert eps[f"videos/{c}/from_timestamp"][i] == pytest.approx(a / FPS)
            assert eps[f"videos/{c}/to_timestamp"][i] == pytest.approx(b / FPS)
        assert eps["tasks"][i] == [syn.episode_task(i)]
        prev = b
    assert prev == len(ep_idx)


def test_videos_decode_and_match_render(ds):
    root, _, _, eps = _load(ds)
    for c in syn.CAMERAS:
        frames = read_video(root / f"videos/{c}/chunk-000/file-000.mp4")
        assert frames.shape == (EPISODES * FRAMES, SIZE, SIZE, 3)
        for i in (0, EPISODES - 1):
            ep = syn.make_episode(syn.episode_task(i), syn.episode_rng(3, i), FRAMES, FPS)
            start = round(eps[f"videos/{c}/from_timestamp"][i] * FPS)
            for t in (0, FRAMES // 2):
                ref = syn.render_frame(ep.scenes[t], c, SIZE).astype(float)
                err = np.abs(frames[start + t].astype(float) - ref).mean()
                assert err < 8.0, (c, i, t, err)


def test_state_action_consistent(ds):
    _, _, data, eps = _load(ds)
    state = np.array(data["observation.state"], np.float32)
    action = np.array(data["action"], np.float32)
    assert state.shape == action.shape == (EPISODES * FRAMES, 14)
    assert np.isfinite(state).all() and np.isfinite(action).all()
    for a, b in zip(eps["dataset_from_index"], eps["dataset_to_index"]):
        s, act = state[a:b], action[a:b]
        np.testing.assert_allclose(act[:-1], s[1:], atol=1e-6)  # action = next state target
        assert np.abs(np.diff(s, axis=0)).max() < 0.5  # smooth
        ee, _ = syn.state_to_ee(s[0])
        assert all(0 <= v[0] <= 1 and 0 <= v[1] <= 1.1 for v in ee.values())
    # joints <-> pose mapping is invertible
    pose = np.array([0.3, 0.4, 0.1, 0.0, 0.0, 0.2])
    np.testing.assert_allclose(syn.joints_to_pose(syn.pose_to_joints(pose, "left"), "left"), pose, atol=1e-9)


def test_dynamic_vs_static_objects():
    size = 64
    dyn = syn.make_episode(syn.TASK_CONVEYOR, syn.episode_rng(0, 2), 40, FPS)
    xyz = dyn.object_xyz
    assert xyz[15, 0] - xyz[0, 0] > 0.1  # box rides the conveyor
    h0 = syn.render_frame(dyn.scenes[0], "head", size).astype(float)
    h15 = syn.render_frame(dyn.scenes[15], "head", size).astype(float)
    # pixels around the conveyor differ measurably
    band = slice(int((syn.CONVEYOR_Y - 0.08) * size), int((syn.CONVEYOR_Y + 0.08) * size))
    assert np.abs(h15[band] - h0[band]).mean() > 5.0
    for task in (syn.TASK_PICK, syn.TASK_PUSH):
        st = syn.make_episode(task, syn.episode_rng(0, 0), 40, FPS)
        np.testing.assert_array_equal(st.object_xyz[0], st.object_xyz[5])  # still before contact


def test_stats_match_numpy(ds):
    root, _, data, _ = _load(ds)
    stats = json.loads((root / "meta/stats.json").read_text())
    for k in ("observation.state", "action"):
        x = np.array(data[k], np.float64)
        s = stats[k]
        np.testing.assert_allclose(s["mean"], x.mean(0), atol=1e-6)
        np.testing.assert_allclose(s["std"], x.std(0), atol=1e-6)
        np.testing.assert_allclose(s["min"], x.min(0), atol=1e-6)
        np.testing.assert_allclose(s["max"], x.max(0), atol=1e-6)
        np.testing.assert_allclose(s["q01"], np.quantile(x, 0.01, axis=0), atol=1e-6)
        np.testing.assert_allclose(s["q99"], np.quantile(x, 0.99, axis=0), atol=1e-6)
        assert s["count"] == [len(x)]
    for c in syn.CAMERAS:
        assert np.array(stats[c]["mean"]).shape == (3, 1, 1)
        assert 0 <= np.array(stats[c]["min"]).min() <= np.array(stats[c]["max"]).max() <= 1


def test_deterministic_and_overwrite(tmp_path, ds):
    kw = dict(episodes=EPISODES, seed=3, human_clips=0, image_size=SIZE, fps=FPS, frames_per_episode=FRAMES)
    syn.generate(tmp_path / "a", **kw)
    a = pq.read_table(tmp_path / "a/robot/data/chunk-000/file-000.parquet")
    b = pq.read_table(ds["robot"] / "data/chunk-000/file-000.parquet")
    assert a.equals(b)
    with pytest.raises(FileExistsError):
        syn.generate(tmp_path / "a", **kw)
    syn.generate(tmp_path / "a", **{**kw, "seed": 4}, overwrite=True)
    c = pq.read_table(tmp_path / "a/robot/data/chunk-000/file-000.parquet")
    assert not c.equals(b)


def test_human_clips(ds):
    root = ds["human"]
    lines = [json.loads(x) for x in (root / "annotations.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for i, ln in enumerate(lines):
        assert ln["clip"] == f"clips/{i:04d}.mp4" and ln["fps"] == FPS and ln["instruction"]
        frames = read_video(root / ln["clip"])
        assert frames.shape == (ln["frames"], SIZE, SIZE, 3)


def test_cli(tmp_path):
    cmd = [sys.executable, "-m", "a1.sim.synthetic", str(tmp_path / "o"), "--episodes", "3",
           "--human-clips", "1", "--image-size", "32", "--frames-per-episode", "20"]
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 60
    info = json.loads((tmp_path / "o/robot/meta/info.json").read_text())
    assert info["total_frames"] == 60
    r2 = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=60)
    assert r2.returncode == 2 and "--overwrite" in r2.stderr
