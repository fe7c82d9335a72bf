"""`a1.data.preview.source_frames`: a source's frames as one uint8 array."""

from __future__ import annotations

import numpy as np
import pytest

from a1.data.preview import source_frames
from a1.data.sample import resize
from a1.data.sources import DatasetConfig, open_source
from a1.sim.synthetic import generate

VIEWS = ["head", "left_wrist", "right_wrist"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("preview"), episodes=2, human_clips=1, image_size=32, frames_per_episode=10)


def test_robot_frames_in_order(world):
    source = open_source(DatasetConfig("robot", 1.0, path=str(world["robot"])), VIEWS)
    out = source_frames(source.episodes, VIEWS, 32, every=3)
    idx = np.arange(0, 10, 3)
    assert out.shape == (2 * 3 * len(idx), 3, 32, 32) and out.dtype == np.uint8
    # episode 1, view left_wrist comes after episode 0's three views and episode 1's head
    start = (3 + 1) * len(idx)
    np.testing.assert_array_equal(out[start:start + len(idx)], source.episodes[1].frames("left_wrist", idx))


def test_missing_views_skipped_and_resized(world):
    human = open_source(DatasetConfig("human", 1.0, kind="human_video", path=str(world["human"])), VIEWS)
    out = source_frames(human.episodes, VIEWS, 16, every=5)
    assert out.shape == (2, 3, 16, 16)  # head only: the clip has no wrist views
    np.testing.assert_array_equal(out, resize(human.episodes[0].frames("head", np.array([0, 5])), 16, "letterbox"))


def test_empty_and_bad_stride(world):
    human = open_source(DatasetConfig("human", 1.0, kind="human_video", path=str(world["human"])), VIEWS)
    assert source_frames(human.episodes, ["left_wrist"], 16).shape == (0, 3, 16, 16)
    with pytest.raises(ValueError, match="every"):
        source_frames(human.episodes, VIEWS, 16, every=0)
