"""Frame geometry at deployment: the processor letterboxes (or stretches) raw camera frames of any
size exactly as training does, keeps them float32 in 0–255 (not rounded), accepts float frames in
[0, 1] and refuses anything else by name; the geometry travels from a real run to the policy folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a1.data.sample import fit_frames
from a1.deploy.history import FrameHistory
from a1.deploy.processor import ObservationError, Processor, ProcessorSettings
from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
from a1.testing import random_policy
from tests.data.test_sample import _official_letterbox

S, M = 64, 3  # the tiny policy's frame size; a short history


@pytest.fixture(scope="module")
def loaded():
    return random_policy(image_size=S, history=M)


def _processor(loaded, geometry: str) -> Processor:
    return Processor(loaded.config, ProcessorSettings(S, M, geometry), loaded.tokenizer,
                     loaded.normalization["sim_aloha"], "sim_aloha")


def _raw(frames: dict[str, np.ndarray]) -> dict:
    return {"images": frames, "state": np.zeros(14, np.float32), "prompt": "fold the towel"}


def _camera(h: int, w: int, seed: int, n: int | None = None) -> np.ndarray:
    """(h, w, 3) uint8 camera frame(s), values >= 1 so that padding (0) stands out."""
    shape = (h, w, 3) if n is None else (n, h, w, 3)
    return np.random.default_rng(seed).integers(1, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("geometry", ["letterbox", "stretch"])
def test_the_model_gets_the_exact_float_frames(loaded, geometry):
    """Wide, tall and odd-sized cameras: the observation's frames are exactly ``fit_frames`` of the
    raw frames (float32, not rounded); letterboxed they are the official rule's values."""
    proc = _processor(loaded, geometry)
    cams = {"head": _camera(48, 80, 0, n=2), "left_wrist": _camera(90, 50, 1), "right_wrist": _camera(37, 91, 2)}
    obs = proc.observation(_raw(cams))
    assert obs.images.dtype == torch.float32 and obs.images.shape == (1, 3, 2, 3, S, S)
    for v, view in enumerate(proc.views):
        frames = cams[view].transpose(0, 3, 1, 2) if cams[view].ndim == 4 else cams[view].transpose(2, 0, 1)[None]
        want = fit_frames(np.ascontiguousarray(frames), S, geometry)
        assert not np.array_equal(want, np.round(want))  # really unrounded
        torch.testing.assert_close(obs.images[0, v, -len(want):], torch.from_numpy(want), rtol=0, atol=0)
        if geometry == "letterbox":
            torch.testing.assert_close(obs.images[0, v, -len(want):] / 255.0, _official_letterbox(frames, S),
                                       rtol=0, atol=1e-6)
    assert obs.image_mask[0].tolist() == [[True, True], [False, True], [False, True]]


def test_frames_at_the_training_size_pass_unchanged(loaded):
    proc = _processor(loaded, "letterbox")
    cams = {view: _camera(S, S, i) for i, view in enumerate(proc.views)}
    assert proc.resize(cams["head"].transpose(2, 0, 1)[None]).dtype == np.uint8  # the no-op path
    obs = proc.observation(_raw(cams))
    assert obs.images.dtype == torch.float32  # one dtype for the compiled model, whatever the cameras
    for v, view in enumerate(proc.views):
        torch.testing.assert_close(obs.images[0, v, 1], torch.from_numpy(cams[view].transpose(2, 0, 1)).float(),
                                   rtol=0, atol=0)


def test_float_frames_in_0_1_are_read_as_uint8_frames(loaded):
    proc = _processor(loaded, "letterbox")
    cams = {view: _camera(48, 80, i) for i, view in enumerate(proc.views)}
    as_uint8 = proc.observation(_raw(cams)).images
    for dtype in (np.float32, np.float64, np.float16):
        floats = {view: (frame / 255.0).astype(dtype) for view, frame in cams.items()}
        got = proc.observation(_raw(floats)).images
        atol = 0.1 if dtype == np.float16 else 1e-3  # float16 itself holds 11 bits
        torch.testing.assert_close(got, as_uint8, rtol=0, atol=atol)


@pytest.mark.parametrize("frame, match", [
    (np.full((48, 80, 3), 2.0, np.float32), (r"images\['head'\]: float32 pixel values must lie in \[0, 1\], got min "
                                             r"2, max 2 \(float frames are RGB in \[0, 1\]; send 0–255 frames as uint8")),
    (np.full((48, 80, 3), -0.5, np.float64), r"images\['head'\]: float64 .* min -0.5"),
    (np.where(np.eye(48, 80)[..., None] > 0, np.nan, 0.5).astype(np.float32), r"images\['head'\]: .*nan"),
    (np.zeros((48, 80, 3), np.int16), (r"images\['head'\]: expected dtype uint8 \(RGB 0–255\) or float in \[0, 1\], "
                                       r"got int16")),
])
def test_frames_out_of_range_or_of_another_dtype_are_refused(loaded, frame, match):
    proc = _processor(loaded, "letterbox")
    cams = {view: _camera(48, 80, i) for i, view in enumerate(proc.views)}
    cams["head"] = frame
    with pytest.raises(ObservationError, match=match):
        proc.observation(_raw(cams))


def test_frame_history_holds_float_frames():
    h = FrameHistory(2)
    h.push(0, np.full((3, 4, 4), 1.5, np.float32))
    h.push(1, np.full((3, 4, 4), 7, np.uint8))
    frames, valid = h.pair(2, np.full((3, 4, 4), 2.25, np.float32))
    assert frames.dtype == np.float32 and frames[:, 0, 0, 0].tolist() == [1.5, 2.25] and valid.tolist() == [True, True]
    frames, _ = h.pair(3, np.full((3, 4, 4), 9, np.uint8))
    assert frames.dtype == np.uint8 and frames[:, 0, 0, 0].tolist() == [7, 9]
    with pytest.raises(ValueError, match="uint8 or float32 .*float64"):
        h.push(4, np.zeros((3, 4, 4)))


def test_an_episode_pairs_the_float_frames_and_plans(loaded):
    """A 4:3 camera through `Episode`: frame t−m in the observation is the letterboxed float frame
    recorded m steps earlier, and the model plans from float frames (warm-up included)."""
    runtime = PolicyRuntime(loaded, _processor(loaded, "letterbox"), RuntimeOptions(compile=False, warmup=1))
    video = _camera(60, 80, 5, n=M + 2)
    ep = runtime.episode(execute=1)
    for t in range(M + 2):
        obs = runtime.processor.observation(ep.observe(_raw({view: video[t] for view in runtime.processor.views})))
        past = fit_frames(np.ascontiguousarray(video[max(t - M, 0)].transpose(2, 0, 1)[None]), S, "letterbox")[0]
        torch.testing.assert_close(obs.images[0, 0, 0], torch.from_numpy(past), rtol=0, atol=0)
        assert obs.image_mask[0, 0].tolist() == [t >= M, True]
        ep.t += 1
    chunk = runtime.plan(ep.observe(_raw({view: video[0] for view in runtime.processor.views})))
    assert chunk.actions.shape == (loaded.config.action.chunk_size, 14) and np.isfinite(chunk.actions).all()
