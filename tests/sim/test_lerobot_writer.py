"""The LeRobot v3.0 writer the simulated worlds record demonstrations with: non-square cameras and
any state width, read back by a1's LeRobot reader; inconsistent demos are refused."""

import numpy as np
import pytest

from a1.data.lerobot import LeRobotReader
from a1.sim.lerobot_writer import Demo, write_lerobot

CAMS = ("observation.images.top", "observation.images.left_wrist")


def _demo(task: str, n: int, seed: int) -> Demo:
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n, 14)).astype(np.float32)
    frames = {cam: np.full((n, 48, 64, 3), 40 * (i + 1), np.uint8) for i, cam in enumerate(CAMS)}
    for t in range(n):  # a bright band that moves down one row per frame
        frames[CAMS[0]][t, t] = 250
    return Demo(task, states, states + 1.0, frames)


def test_demos_round_trip_through_the_lerobot_reader(tmp_path):
    demos = [_demo("transfer the cube", 12, 0), _demo("transfer the moving cube", 9, 1)]
    out = write_lerobot(tmp_path / "ds", demos, fps=25, robot_type="aloha", joint_names=[f"j{i}" for i in range(14)])
    assert out == {"episodes": 2, "frames": 21, "tasks": ["transfer the cube", "transfer the moving cube"]}
    reader = LeRobotReader(tmp_path / "ds")
    assert reader.info["robot_type"] == "aloha" and reader.info["fps"] == 25
    assert reader.info["features"][CAMS[0]]["shape"] == [48, 64, 3]
    cols = reader.columns(1, ["observation.state", "action"])
    np.testing.assert_array_equal(cols["observation.state"], demos[1].states)
    np.testing.assert_array_equal(cols["action"], demos[1].actions)
    frames = reader.images(CAMS[0], 1, list(range(9)))  # (9, 3, 48, 64) uint8 after decoding
    assert frames.shape == (9, 3, 48, 64)
    assert abs(float(frames[4, :, 4].mean()) - 250) < 12 and abs(float(frames[4, :, 20].mean()) - 40) < 12


def test_inconsistent_demos_are_refused(tmp_path):
    good = _demo("a", 5, 0)
    bad = _demo("b", 5, 1)
    bad.frames.pop(CAMS[1])
    with pytest.raises(ValueError, match="demo 1: cameras"):
        write_lerobot(tmp_path / "x", [good, bad], 10, "aloha", [])
    short = _demo("c", 5, 2)
    short.frames[CAMS[0]] = short.frames[CAMS[0]][:4]
    with pytest.raises(ValueError, match=r"demo 0: observation.images.top frames must be \(5, H, W, 3\)"):
        write_lerobot(tmp_path / "y", [short], 10, "aloha", [])


def test_image_stats_are_estimated_from_a_bounded_sample_of_every_episode():
    """Each camera's statistics come from at most IMAGE_STATS_FRAMES evenly spaced frames, drawn across
    all episodes (memory stays bounded for long recordings); count is every frame."""
    from a1.sim.lerobot_writer import IMAGE_STATS_FRAMES, image_stats

    dark = np.zeros((300, 4, 6, 3), np.uint8)
    bright = np.full((500, 4, 6, 3), 255, np.uint8)
    bright[..., 2] = 51  # blue channel 0.2
    stats = image_stats([dark, bright])
    assert stats["count"] == [800] and IMAGE_STATS_FRAMES < 800
    assert np.allclose(np.ravel(stats["mean"]), [5 / 8, 5 / 8, 0.2 * 5 / 8], atol=0.01)
    assert np.ravel(stats["min"]).tolist() == [0, 0, 0] and np.ravel(stats["max"]).tolist() == [1, 1, 0.2]
    assert np.asarray(stats["q99"]).shape == (3, 1, 1)
