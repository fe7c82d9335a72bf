"""A dataset written by the lerobot library itself loads unchanged (tests/fixtures/README.md)."""

import numpy as np
import pytest

from a1.data.datamodule import A1DataModule, DataOptions
from a1.data.lerobot import LeRobotReader
from a1.data.sources import DatasetConfig
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE = FIXTURES / "lerobot_v30_aloha"


@pytest.mark.parametrize("folder, version", [("lerobot_v30_aloha", "v3.0"), ("lerobot_v21_aloha", "v2.1")])
def test_reader_reads_lerobot_output(folder, version):
    r = LeRobotReader(FIXTURES / folder)
    assert (r.version, r.num_episodes, r.num_frames, r.fps) == (version, 2, 21, 10)
    assert sorted(r.camera_keys) == ["observation.images.cam_high", "observation.images.cam_left_wrist"]
    for ep, (length, task) in zip(r.episodes, [(12, "fold the towel"), (9, "open the drawer")]):
        assert ep.length == length and r.instruction(ep, length - 1) == task
        cols = r.columns(ep, ["observation.state", "action"])
        expected = np.arange(length, dtype=np.float32)[:, None] + 100 * ep.index
        np.testing.assert_array_equal(cols["observation.state"], np.repeat(expected, 14, 1))
        np.testing.assert_array_equal(cols["action"], np.repeat(expected + 1, 14, 1))
        frames = r.images("observation.images.cam_high", ep, np.arange(length)).astype(float)  # AV1, lossy
        assert np.abs(frames[:, 0].mean((1, 2)) - 20 * np.arange(length)).max() < 8
        assert np.abs(frames[:, 1].mean((1, 2)) - 100 * ep.index).max() < 8
    r.validate("observation.state", "action")


def test_datamodule_trains_on_lerobot_output_with_a_missing_view():
    cams = {"head": "observation.images.cam_high", "left_wrist": "observation.images.cam_left_wrist",
            "right_wrist": None}
    dm = A1DataModule([DatasetConfig(name="aloha", weight=1.0, path=str(FIXTURE), cameras=cams)],
                      DataOptions(chunk_size=8, image_size=32, max_text_tokens=16, history=3),
                      batch_size=4, num_workers=0, val_fraction=0.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    batch.validate(3, 8, 32)
    assert not batch.observation.image_mask[:, 2].any() and batch.observation.image_mask[:, 0, 1].all()
    assert batch.has_action.all() and batch.action_dim_mask.sum(1).tolist() == [14] * 4
    assert sorted(p.name for p in FIXTURE.iterdir()) == ["data", "meta", "videos"]  # nothing written into it
