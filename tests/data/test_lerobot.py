"""LeRobot v3.0 / v2.1 reader and mp4 random access, on small synthetic datasets in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from a1.data.lerobot import DatasetError, Episode, EpisodeIndexError, LeRobotReader
from a1.data.video import VideoError, decode_frames, torchcodec_available, video_info
from a1.sim import synthetic as syn
from tests.conftest import read_video
from tests.data.lerobot_v21 import convert_v30_to_v21

EPISODES, FRAMES, FPS, SIZE, SEED = 3, 24, 15, 32, 5
HEAD = "observation.images.head"
DATA = "data/chunk-000/file-000.parquet"


def _video(root: Path, key: str = HEAD) -> Path:
    return root / f"videos/{key}/chunk-000/file-000.mp4"


@pytest.fixture(scope="module")
def v30(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lerobot")
    syn.generate(out, episodes=EPISODES, seed=SEED, human_clips=0, image_size=SIZE, fps=FPS,
                 frames_per_episode=FRAMES)
    return out / "robot"


@pytest.fixture(scope="module")
def v21(v30, tmp_path_factory) -> Path:
    return convert_v30_to_v21(v30, tmp_path_factory.mktemp("lerobot_v21") / "robot")


@pytest.fixture(scope="module")
def full_decode(v30) -> dict[str, np.ndarray]:
    """Every frame of each stored mp4 (sequential PyAV decode, the reference for random access)."""
    return {k: read_video(_video(v30, k)) for k in syn.CAMERAS}


@pytest.fixture
def copy30(v30, tmp_path) -> Path:
    """A private copy to corrupt."""
    return Path(shutil.copytree(v30, tmp_path / "robot"))


# ----------------------------------------------------------------------------- video


def test_video_info_and_random_access(v30, full_decode):
    path = _video(v30)
    assert video_info(path) == (EPISODES * FRAMES, float(FPS), SIZE, SIZE)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, EPISODES * FRAMES, 12)
    idx[:3] = [EPISODES * FRAMES - 1, 0, idx[3]]  # last, first, duplicate; unsorted order
    got = decode_frames(path, idx / FPS, backend="pyav")
    assert got.shape == (len(idx), SIZE, SIZE, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, full_decode[HEAD][idx])


@pytest.mark.parametrize("t", [-0.5, EPISODES * FRAMES / FPS, 100.0, 0.5 / FPS])
def test_video_timestamp_outside_or_between_frames(v30, t):
    with pytest.raises(VideoError, match=rf"file-000\.mp4.*timestamp {t:.6f}s"):
        decode_frames(_video(v30), [0.0, t], backend="pyav")


def test_video_missing_truncated_corrupt(v30, tmp_path):
    src = _video(v30)
    with pytest.raises(VideoError, match="missing.mp4"):
        decode_frames(tmp_path / "missing.mp4", [0.0])
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    for bad in (trunc, garbage):
        with pytest.raises(VideoError, match=bad.name):
            decode_frames(bad, [0.0, 1.0], backend="pyav")
        with pytest.raises(VideoError, match=bad.name):
            video_info(bad)


def test_video_backend_argument(v30):
    with pytest.raises(ValueError, match="unknown video backend"):
        decode_frames(_video(v30), [0.0], backend="opencv")


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec not installed (PyAV backend used)")
def test_torchcodec_matches_pyav(v30):
    ts = np.array([0, 7, FRAMES + 3, EPISODES * FRAMES - 1]) / FPS
    a = decode_frames(_video(v30), ts, backend="torchcodec")
    b = decode_frames(_video(v30), ts, backend="pyav")
    assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 1.0
    with pytest.raises(VideoError, match="file-000.mp4"):
        decode_frames(_video(v30), [1000.0], backend="torchcodec")


# ----------------------------------------------------------------------------- v3.0


def test_v30_metadata(v30):
    info = json.loads((v30 / "meta/info.json").read_text())
    r = LeRobotReader(v30)
    assert r.version == "v3.0" and r.fps == FPS
    assert r.num_episodes == info["total_episodes"] == EPISODES
    assert r.num_frames == info["total_frames"] == EPISODES * FRAMES
    assert r.features == info["features"]
    assert r.camera_keys == list(syn.CAMERAS)
    assert [e.index for e in r.episodes] == list(range(EPISODES))
    for i, e in enumerate(r.episodes):
        assert isinstance(e, Episode)
        assert (e.length, e.from_index, e.to_index) == (FRAMES, i * FRAMES, (i + 1) * FRAMES)
        assert e.tasks == (syn.episode_task(i),)
        assert r.instruction(i, 0) == r.instruction(e, FRAMES - 1) == syn.episode_task(i)


def test_v30_columns(v30):
    r = LeRobotReader(v30)
    raw = pq.read_table(v30 / DATA)
    for i in range(EPISODES):
        c = r.columns(i, ["observation.state", "action", "frame_index", "episode_index", "timestamp"])
        assert c["observation.state"].shape == c["action"].shape == (FRAMES, syn.STATE_DIM)
        assert c["observation.state"].dtype == np.float32 and c["timestamp"].dtype == np.float32
        np.testing.assert_array_equal(c["frame_index"], np.arange(FRAMES))
        np.testing.assert_array_equal(c["episode_index"], np.full(FRAMES, i))
        rows = raw.slice(i * FRAMES, FRAMES)
        np.testing.assert_array_equal(
            c["action"], np.asarray(rows.column("action").to_pylist(), np.float32))
        ep = syn.make_episode(syn.episode_task(i), syn.episode_rng(SEED, i), FRAMES, FPS)
        np.testing.assert_array_equal(c["observation.state"], ep.states)
    assert r.validate() == {"episodes": EPISODES, "frames": EPISODES * FRAMES}


def test_v30_images(v30, full_decode):
    r = LeRobotReader(v30, video_backend="pyav")
    frames = [0, 5, FRAMES - 1, 2]
    for i in (0, EPISODES - 1):
        ep = syn.make_episode(syn.episode_task(i), syn.episode_rng(SEED, i), FRAMES, FPS)
        rendered = syn.render_episode(ep, SIZE)
        for key in syn.CAMERAS:
            img = r.images(key, i, frames)
            assert img.shape == (len(frames), 3, SIZE, SIZE) and img.dtype == np.uint8
            # exactly the stored mp4's frames (global index = episode start + frame) ...
            np.testing.assert_array_equal(
                img, full_decode[key][[i * FRAMES + f for f in frames]].transpose(0, 3, 1, 2))
            # ... which are the rendered frames up to codec error (yuv420p chroma on 32 px images)
            err = np.abs(img.astype(np.int16) - rendered[key][frames].transpose(0, 3, 1, 2))
            assert err.mean() < 8, (key, err.mean())


# ----------------------------------------------------------------------------- v2.1


def test_v21_layout(v21):
    files = {str(p.relative_to(v21)) for p in v21.rglob("*") if p.is_file()}
    assert {"meta/info.json", "meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"} <= files
    for i in range(EPISODES):
        assert f"data/chunk-000/episode_{i:06d}.parquet" in files
        for k in syn.CAMERAS:
            assert f"videos/chunk-000/{k}/episode_{i:06d}.mp4" in files


def test_v21_matches_v30(v30, v21):
    a, b = LeRobotReader(v30, video_backend="pyav"), LeRobotReader(v21, video_backend="pyav")
    assert b.version == "v2.1"
    assert (b.fps, b.num_episodes, b.num_frames, b.camera_keys) == (a.fps, a.num_episodes, a.num_frames,
                                                                    a.camera_keys)
    names = ["observation.state", "action", "timestamp", "frame_index", "index", "task_index"]
    frames = [0, 3, FRAMES - 1]
    for ea, eb in zip(a.episodes, b.episodes):
        assert (ea.index, ea.length, ea.tasks, ea.from_index, ea.to_index) == (
            eb.index, eb.length, eb.tasks, eb.from_index, eb.to_index)
        ca, cb = a.columns(ea, names), b.columns(eb, names)
        for n in names:
            assert ca[n].dtype == cb[n].dtype
            np.testing.assert_array_equal(ca[n], cb[n])
        assert a.instruction(ea, 1) == b.instruction(eb, 1)
        for key in a.camera_keys:
            err = np.abs(a.images(key, ea, frames).astype(np.int16) - b.images(key, eb, frames))
            assert err.mean() < 4, (key, ea.index, err.mean())
    assert b.validate()["frames"] == EPISODES * FRAMES


# ----------------------------------------------------------------------------- errors


def test_missing_info_and_bad_version(tmp_path, copy30):
    with pytest.raises(DatasetError, match=r"meta/info\.json"):
        LeRobotReader(tmp_path / "nothing")
    info_path = copy30 / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["codebase_version"] = "v1.6"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"info\.json.*unsupported codebase_version 'v1.6'"):
        LeRobotReader(copy30)


def test_request_errors(v30):
    r = LeRobotReader(v30)
    with pytest.raises(DatasetError, match=r"unknown camera key 'observation.images.top'.*observation.images.head"):
        r.images("observation.images.top", 0, [0])
    for bad in (EPISODES, -1):
        with pytest.raises(EpisodeIndexError, match=f"episode index {bad} out of range"):
            r.columns(bad, ["action"])
    with pytest.raises(IndexError, match=f"frame index {FRAMES} out of range"):
        r.images(HEAD, 0, [0, FRAMES])
    with pytest.raises(DatasetError, match=r"file-000\.parquet.*missing column 'nope'"):
        r.columns(0, ["nope"])


def _rewrite_data(root: Path, fn) -> None:
    path = root / DATA
    pq.write_table(fn(pq.read_table(path)), path)


def test_missing_action_column(copy30):
    _rewrite_data(copy30, lambda t: t.drop_columns(["action"]))
    r = LeRobotReader(copy30)
    with pytest.raises(DatasetError, match=r"file-000\.parquet: missing column 'action'"):
        r.columns(1, ["observation.state", "action"])
    with pytest.raises(DatasetError, match=r"file-000\.parquet: missing column 'action'"):
        r.validate()


def _set_state(t: pa.Table, state: np.ndarray) -> pa.Table:
    n, d = state.shape
    arr = pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1), pa.float32()), d)
    return t.set_column(t.column_names.index("observation.state"), "observation.state", arr)


def test_validate_nan_and_wrong_dim(copy30):
    def with_nan(t):
        s = np.asarray(t.column("observation.state").to_pylist(), np.float32)
        s[FRAMES + 4, 2] = np.nan  # episode 1, frame 4
        return _set_state(t, s)

    _rewrite_data(copy30, with_nan)
    with pytest.raises(DatasetError, match=r"file-000\.parquet: episode 1 column 'observation.state' has "
                                           r"non-finite value nan at frame 4, dim 2"):
        LeRobotReader(copy30).validate()

    _rewrite_data(copy30, lambda t: _set_state(t, np.zeros((t.num_rows, syn.STATE_DIM - 1), np.float32)))
    with pytest.raises(DatasetError, match=r"file-000\.parquet: episode 0 column 'observation.state' has shape "
                                           rf"\({FRAMES}, {syn.STATE_DIM - 1}\)"):
        LeRobotReader(copy30).validate()


def test_reader_corrupt_video(copy30):
    vid = _video(copy30, "observation.images.left_wrist")
    vid.write_bytes(vid.read_bytes()[: vid.stat().st_size // 2])
    r = LeRobotReader(copy30, video_backend="pyav")
    assert r.images(HEAD, 1, [3]).shape == (1, 3, SIZE, SIZE)  # other cameras unaffected
    with pytest.raises(VideoError, match=r"left_wrist/chunk-000/file-000\.mp4"):
        r.images("observation.images.left_wrist", 1, [3])
