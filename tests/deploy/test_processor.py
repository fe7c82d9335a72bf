"""The processor turns a raw robot observation into exactly the training sample's Observation, and
the model's chunk back into raw actions — on a dataset written by the lerobot library itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a1.data.collate import Collator, DatasetNorm
from a1.data.normalize import normalize, pad
from a1.data.sample import make_sample
from a1.data.sources import DatasetConfig, open_source
from a1.data.stats import dataset_stats
from a1.deploy.processor import ObservationError, Processor, ProcessorSettings
from a1.model.prompt import load_tokenizer
from tests.conftest import ROOT, tiny_qwen

FIXTURE = ROOT / "tests" / "fixtures" / "lerobot_v30_aloha"
CAMERAS = {"head": "observation.images.cam_high", "left_wrist": "observation.images.cam_left_wrist",
           "right_wrist": None}
M, SIZE = 3, 24  # history and training frame size (the fixture's frames are 32×32: a real resize)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("A1_CACHE", str(tmp_path_factory.mktemp("cache")))
    cfg = DatasetConfig(name="aloha", weight=1.0, path=str(FIXTURE), cameras=CAMERAS)
    state, action, _ = dataset_stats(cfg)
    source = open_source(cfg, tiny_qwen().views)
    return source, DatasetNorm(state, action, "mean_std")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _processor(norm, absent=("right_wrist",)):
    cfg = tiny_qwen()
    return Processor(cfg, ProcessorSettings(image_size=SIZE, history=M, geometry="letterbox"), load_tokenizer(None), norm, "aloha", absent)


def _raw(episode, t, layout="hwc", stacked=False):
    """What a robot would send at frame t: full-size frames, the raw state and the instruction."""
    images = {}
    for view, key in CAMERAS.items():
        if key is None:
            continue
        idx = np.array([max(t - M, 0), t]) if stacked else np.array([t])
        frames = episode.frames(view, idx)  # (N, 3, 32, 32) uint8: the decoded camera frames
        frames = frames.transpose(0, 2, 3, 1) if layout == "hwc" else frames
        images[view] = frames if stacked else frames[0]
    return {"images": images, "state": episode.vectors()[0][t].astype(np.float64), "prompt": episode.instruction(t)}


def _training_observation(episode, t, norm):
    cfg = tiny_qwen()
    sample = make_sample(episode, t, cfg.views, M, cfg.action.chunk_size, 0, "test", SIZE, "letterbox")
    collate = Collator(load_tokenizer(None), cfg.understanding.max_text_tokens, cfg.action.chunk_size,
                       cfg.action.max_dim, {0: norm})
    return collate([sample])


def _assert_same(got, want):
    # deployment keeps the resized frames float; training stores them rounded to uint8
    torch.testing.assert_close(got.images, want.images.float(), rtol=0, atol=0.5, msg="images")
    for field in ("image_mask", "tokens", "token_mask", "state", "state_mask"):
        torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=0, atol=0, msg=field)


@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_raw_observation_equals_the_training_sample(dataset, layout):
    source, norm = dataset
    episode = source.episodes[0]
    proc = _processor(norm)
    for t in (M, episode.length - 1):  # t−m exists: pass both frames stacked
        want = _training_observation(episode, t, norm).observation
        _assert_same(proc.observation(_raw(episode, t, layout, stacked=True)), want)
    # frame t alone = an episode's start (t < m): the t−m slot is the first frame, masked
    want = _training_observation(episode, 0, norm).observation
    got = proc.observation(_raw(episode, 0, layout))
    _assert_same(got, want)
    assert got.image_mask[0].tolist() == [[False, True], [False, True], [False, False]]


def test_chunk_back_to_raw_actions(dataset):
    source, norm = dataset
    episode = source.episodes[1]
    batch = _training_observation(episode, 2, norm)
    raw = episode.vectors()[1][2:2 + batch.actions.shape[1]]
    proc = _processor(norm)
    got = proc.raw_actions(batch.actions, episode.vectors()[0][2])  # the normalised, padded training target
    np.testing.assert_allclose(got[: len(raw)], raw, atol=1e-4)
    assert got.shape == (tiny_qwen().action.chunk_size, 14) and got.dtype == np.float32
    # the state goes through the training normalisation and padding
    state, mask = pad(normalize(episode.vectors()[0][2], norm.state, "mean_std"), 32)
    obs = proc.observation(_raw(episode, 2))
    np.testing.assert_array_equal(obs.state[0].numpy(), state)
    np.testing.assert_array_equal(obs.state_mask[0].numpy(), mask)


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.pop("state"), "missing key 'state'"),
    (lambda r: r["images"].pop("head"), r"missing view 'head'"),
    (lambda r: r["images"].__setitem__("top", r["images"]["head"]), r"unknown view\(s\) \['top'\]"),
    (lambda r: r["images"].__setitem__("head", r["images"]["head"].astype(np.float32)), "uint8"),
    (lambda r: r["images"].__setitem__("head", r["images"]["head"][..., :2]), r"images\['head'\].*shape"),
    (lambda r: r["images"].__setitem__("head", np.zeros((3, 8, 8, 3), np.uint8)), "stacked frames"),
    (lambda r: r.__setitem__("state", r["state"][:13]), "expected 14 dims"),
    (lambda r: r["state"].__setitem__(5, np.nan), "NaN or inf at dim 5"),
    (lambda r: r.__setitem__("state", "abc"), "state: expected"),
    (lambda r: r.__setitem__("prompt", 3), "prompt: expected a string"),
])
def test_bad_observations_name_the_key(dataset, edit, match):
    source, norm = dataset
    raw = _raw(source.episodes[0], 4)
    edit(raw)
    with pytest.raises(ObservationError, match=match):
        _processor(norm).observation(raw)


def test_human_video_statistics_cannot_drive_a_robot(dataset):
    _, norm = dataset
    with pytest.raises(ValueError, match="no action statistics"):
        _processor(DatasetNorm(norm.state, None, "mean_std"))
    with pytest.raises(ValueError, match="not policy views"):
        _processor(norm, absent=("tail",))
