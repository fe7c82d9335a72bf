"""Windows, frame geometry (letterbox/stretch, float frames, shard manifests), normalisation and
collation of samples into the model's Batch."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from a1.data.collate import Collator, DatasetNorm
from a1.data.convert import ConvertError, convert
from a1.data.normalize import FeatureStats, apply, normalize, pad
from a1.data.sample import Sample, chunk_window, fit_frames, frame_window, letterbox_size, make_sample, resize
from a1.data.shards import ShardError, check_geometry, read_manifest
from a1.data.sources import DatasetConfig
from a1.data.streams import DataOptions, MixtureStream
from a1.model.policy import InternVLAA1
from a1.model.prompt import byte_tokenizer
from a1.testing import random_batch
from tests.conftest import tiny_qwen


def test_frame_window_clamps_with_flags():
    idx, ok = frame_window(3, 40, 15)
    assert idx.tolist() == [0, 3, 18] and ok.tolist() == [False, True, True]
    idx, ok = frame_window(30, 40, 15)
    assert idx.tolist() == [15, 30, 39] and ok.tolist() == [True, True, False]
    with pytest.raises(IndexError, match="frame 40 outside"):
        frame_window(40, 40, 15)


def test_chunk_window_pads_past_the_episode_end():
    idx, ok = chunk_window(37, 40, 5)
    assert idx.tolist() == [37, 38, 39, 39, 39] and ok.tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("mode", ["mean_std", "quantile", "none"])
def test_normalize_round_trip(mode):
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (500, 7))
    stats = FeatureStats.compute(data)
    y = normalize(data, stats, mode)
    assert y.dtype == np.float32
    np.testing.assert_allclose(apply(y, stats, mode, inverse=True), data, rtol=1e-5, atol=1e-4)
    if mode == "mean_std":
        np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(y.std(0), 1, atol=1e-4)
    if mode == "quantile":
        assert np.mean(np.abs(y) <= 1) == pytest.approx(0.98, abs=0.01)


def test_stats_errors_name_the_place():
    with pytest.raises(KeyError, match="meta/stats.json:action.*'q99'"):
        FeatureStats.from_dict({"mean": [0], "std": [1], "q01": [0]}, "meta/stats.json:action")
    stats = FeatureStats.compute(np.arange(12.0).reshape(4, 3))
    with pytest.raises(ValueError, match="4 dims"):
        normalize(np.zeros(4), stats, "mean_std")
    with pytest.raises(ValueError, match="40 dims, more than the model's 32"):
        pad(np.zeros(40), 32)


def _sample(rng, dataset_id, k, with_actions=True, V=3, size=64):
    return Sample(
        instruction="fold the towel",
        images=rng.integers(0, 255, (V, 3, 3, size, size), dtype=np.uint8),
        image_valid=np.array([[False, True, True]] * V),
        state=rng.normal(size=14).astype(np.float32) if with_actions else None,
        actions=rng.normal(size=(k, 14)).astype(np.float32) if with_actions else None,
        action_valid=np.arange(k) < k - 3,
        dataset_id=dataset_id,
        source=f"test/{dataset_id}",
    )


def test_collated_batch_feeds_the_model():
    cfg = tiny_qwen()
    k, rng = cfg.action.chunk_size, np.random.default_rng(0)
    stats = FeatureStats.compute(rng.normal(size=(100, 14)))
    collate = Collator(byte_tokenizer(), cfg.understanding.max_text_tokens, k, cfg.action.max_dim,
                       {0: DatasetNorm(stats, stats, "mean_std")})
    batch = collate([_sample(rng, 0, k), _sample(rng, 1, k, with_actions=False)])
    batch.validate(3, k, cfg.action.max_dim)
    assert batch.has_action.tolist() == [True, False]
    assert batch.observation.image_mask[0, 0].tolist() == [False, True]
    assert batch.action_dim_mask[0].sum() == 14 and not batch.action_dim_mask[1].any()
    assert batch.action_mask[0].sum() == k - 3 and not batch.action_mask[1].any()
    out = InternVLAA1(cfg)(batch)
    assert out.act_valid.tolist() == [True, False] and out.gen_valid.tolist() == [True, True]
    assert torch.isfinite(out.act).all()


def test_sample_validation_names_the_source():
    rng = np.random.default_rng(0)
    s = _sample(rng, 0, 4)
    s.actions[1, 2] = np.nan
    with pytest.raises(ValueError, match="test/0: actions contains NaN"):
        s.validate()


# --- frame geometry -------------------------------------------------------------------------------

def _official_letterbox(frames_u8: np.ndarray, size: int) -> torch.Tensor:
    """The InternVLA-A1 rule written out directly, in its own [0, 1] scale: scale = min(S/H, S/W),
    sides rounded with Python's round, bilinear (half-pixel, no antialias), zero pad with the odd
    pixel at the bottom/right, clamp to [0, 1]."""
    x = torch.from_numpy(frames_u8).float() / 255.0
    H, W = x.shape[-2:]
    scale = min(size / H, size / W)
    h, w = round(H * scale), round(W * scale)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    top, left = (size - h) // 2, (size - w) // 2
    x = torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top), value=0.0)
    return x.clamp(0.0, 1.0)


def _frames(h: int, w: int, n: int = 2, seed: int = 0) -> np.ndarray:
    """(n, 3, h, w) uint8 frames with every value >= 1 (so padding, exactly 0, is told apart)."""
    return np.random.default_rng(seed).integers(1, 256, (n, 3, h, w), dtype=np.uint8)


@pytest.mark.parametrize("hw, size, want", [
    ((480, 640), 224, (168, 224)),   # the usual camera, wide
    ((640, 480), 224, (224, 168)),   # tall
    ((300, 200), 224, (224, 149)),   # 149.33 → 149
    ((225, 448), 224, (112, 224)),   # 112.5 → 112: Python rounds halves to even
    ((227, 448), 224, (114, 224)),   # 113.5 → 114
    ((720, 1280), 448, (252, 448)),
    ((224, 224), 64, (64, 64)),
])
def test_letterbox_size_rounds_like_the_official_code(hw, size, want):
    assert letterbox_size(*hw, size) == want


def test_letterbox_of_a_frame_too_thin_is_an_error():
    with pytest.raises(ValueError, match=r"1×1000 frame cannot be letterboxed to 224"):
        letterbox_size(1, 1000, 224)


@pytest.mark.parametrize("hw, size, pad", [
    ((48, 80), 32, ("rows", 6, 7)),     # 19 rows of content: 13 padding rows, the odd one at the bottom
    ((80, 48), 32, ("cols", 6, 7)),     # tall: the same as columns, the odd one on the right
    ((37, 91), 24, ("rows", 7, 7)),     # odd sizes: round(9.76) = 10 rows
    ((45, 60), 32, ("rows", 4, 4)),     # 4:3 → 24 rows
])
def test_letterbox_pads_centred_and_matches_the_official_formula(hw, size, pad):
    frames = _frames(*hw)
    got = fit_frames(frames, size, "letterbox")
    assert got.dtype == np.float32 and got.shape == (2, 3, size, size)
    axis, before, after = pad
    g = torch.from_numpy(got if axis == "rows" else got.swapaxes(-1, -2))
    assert (g[..., :before, :] == 0).all() and (g[..., size - after:, :] == 0).all()
    assert (g[..., before:size - after, :] > 0).all()  # content (every source value >= 1) fills the rest
    torch.testing.assert_close(torch.from_numpy(got) / 255.0, _official_letterbox(frames, size), rtol=0, atol=1e-6)
    # not rounded: the float frames keep fractions; training's uint8 is exactly their rounding
    assert (got != np.round(got)).any()
    np.testing.assert_array_equal(resize(frames, size, "letterbox"), np.rint(got).astype(np.uint8))


def test_frames_already_at_the_size_are_returned_unchanged():
    frames = _frames(32, 32)
    assert fit_frames(frames, 32, "letterbox") is frames and resize(frames, 32, "stretch") is frames
    floats = frames.astype(np.float32) + 0.25
    assert fit_frames(floats, 32, "letterbox") is floats


def test_a_square_frame_is_letterboxed_without_padding_or_antialias():
    frames = _frames(48, 48)
    got = fit_frames(frames, 32, "letterbox")
    want = torch.nn.functional.interpolate(torch.from_numpy(frames).float(), size=(32, 32), mode="bilinear",
                                           antialias=False, align_corners=False)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=0)


def test_stretch_is_unchanged():
    """``stretch`` is a1's resize from before the option: bilinear, antialiased, rounded to uint8."""
    frames = _frames(48, 80)
    x = torch.nn.functional.interpolate(torch.from_numpy(frames).float(), size=(32, 32), mode="bilinear",
                                        antialias=True, align_corners=False)
    np.testing.assert_array_equal(resize(frames, 32, "stretch"), x.round().clamp(0, 255).to(torch.uint8).numpy())
    np.testing.assert_array_equal(fit_frames(frames, 32, "stretch"), x.clamp(0, 255).numpy())


def test_bad_geometry_and_frames_are_refused():
    with pytest.raises(ValueError, match=r"geometry must be one of \['stretch', 'letterbox'\], got 'crop'"):
        fit_frames(_frames(8, 8), 4, "crop")
    with pytest.raises(ValueError, match="uint8 or float32, got .* float64"):
        fit_frames(_frames(8, 8).astype(np.float64), 4, "letterbox")
    with pytest.raises(ValueError, match="resize: expected uint8 frames, got float32"):
        resize(_frames(8, 8).astype(np.float32), 4, "letterbox")


class _Episode:
    """A 20-frame episode of one wide camera (the `EpisodeData` protocol)."""

    length = 20

    def __init__(self):
        self.video = _frames(24, 40, n=self.length)

    def instruction(self, t):
        return "pick"

    def vectors(self):
        return np.zeros((self.length, 2), np.float32), np.zeros((self.length, 2), np.float32)

    def frames(self, view, indices):
        return self.video[indices] if view == "head" else None


@pytest.mark.parametrize("geometry", ["letterbox", "stretch"])
def test_make_sample_uses_the_geometry(geometry):
    ep = _Episode()
    s = make_sample(ep, 10, ["head", "left_wrist"], 5, 4, 0, "ep", 16, geometry)
    np.testing.assert_array_equal(s.images[0], resize(ep.video[[5, 10, 15]], 16, geometry))
    assert s.images.dtype == np.uint8 and not s.image_valid[1].any()
    assert ((s.images[0, :, :, :3] == 0).all() and (s.images[0, :, :, -3:] == 0).all()) == (geometry == "letterbox")


def test_float_frames_in_samples_and_batches():
    rng = np.random.default_rng(0)
    s = _sample(rng, 0, 4)
    s.images = s.images.astype(np.float32) + 0.5
    s.validate()
    s.images[0, 0, 0, 0, 0] = 255.5
    with pytest.raises(ValueError, match=r"test/0: images: float32 pixel values must lie in \[0, 255\].*255.5"):
        s.validate()
    s.images = s.images.astype(np.float64)
    with pytest.raises(ValueError, match="uint8 or float32, got .* float64"):
        s.validate()
    batch = random_batch(tiny_qwen(), 1)
    batch.observation.images = batch.observation.images.float()
    with pytest.raises(ValueError, match="future_images: expected dtype torch.float32, got torch.uint8"):
        batch.validate(3, tiny_qwen().action.chunk_size, 32)
    batch.observation.images = batch.observation.images.double()
    with pytest.raises(ValueError, match="images: expected dtype torch.uint8 or torch.float32, got torch.float64"):
        batch.observation.validate(3, 32)


def test_the_model_reads_float_frames_as_their_uint8_values():
    """Float32 frames in 0–255 (deployment) give the model exactly what the same uint8 frames give."""
    torch.manual_seed(0)
    cfg = tiny_qwen()
    model = InternVLAA1(cfg).eval()
    batch = random_batch(cfg, 2, seed=1)
    floats = dataclasses.replace(batch, future_images=batch.future_images.float(), observation=dataclasses.replace(
        batch.observation, images=batch.observation.images.float()))
    noise, tau = torch.randn(batch.actions.shape), torch.rand(2)
    with torch.no_grad():
        a, b = model(batch, noise, tau), model(floats, noise, tau)
    torch.testing.assert_close(a.act, b.act, rtol=0, atol=0)
    torch.testing.assert_close(a.gen, b.gen, rtol=0, atol=0)


# --- shards: the geometry travels in the manifest -------------------------------------------------

@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from a1.sim.synthetic import generate

    return generate(tmp_path_factory.mktemp("clips"), episodes=1, human_clips=2, image_size=32,
                    frames_per_episode=20)["human"]


def _clips_cfg(clips):
    return DatasetConfig(name="ego", weight=1.0, kind="human_video", path=str(clips))


def test_shards_record_their_geometry_and_refuse_another(clips, tmp_path):
    out = tmp_path / "shards"
    m = convert(_clips_cfg(clips), out, ["head"], image_size=24, geometry="stretch", progress=False)
    assert (m["image_size"], m["geometry"]) == (24, "stretch")
    manifest = read_manifest(out)
    check_geometry(manifest, "stretch", out)
    with pytest.raises(ShardError, match=rf"{out}/manifest.json: frames were made 24² with geometry 'stretch', but "
                                         r"data.options.geometry is 'letterbox'.*--geometry letterbox --overwrite"):
        check_geometry(manifest, "letterbox", out)
    opts = DataOptions(views=["head"], chunk_size=4, image_size=24, geometry="letterbox")
    shards = DatasetConfig(name="ego", weight=1.0, kind="human_video", shards=str(out))
    with pytest.raises(ShardError, match="geometry 'stretch'"):
        MixtureStream([shards], None, opts, rank=0, seed=0, val_fraction=0.0)
    with pytest.raises(ConvertError, match="geometry: 'stretch' != 'letterbox'.*--overwrite"):
        convert(_clips_cfg(clips), out, ["head"], image_size=24, geometry="letterbox", progress=False)


def test_old_manifests_without_geometry_mean_stretch(clips, tmp_path):
    out = tmp_path / "old"
    convert(_clips_cfg(clips), out, ["head"], image_size=24, geometry="stretch", progress=False)
    doc = json.loads((out / "manifest.json").read_text())
    del doc["geometry"]
    (out / "manifest.json").write_text(json.dumps(doc))
    assert read_manifest(out)["geometry"] == "stretch"
    with pytest.raises(ShardError, match="geometry 'stretch'"):
        check_geometry(read_manifest(out), "letterbox", out)
    with pytest.raises(ConvertError, match="geometry: 'stretch' != 'letterbox'"):  # kept shards are stretched
        convert(_clips_cfg(clips), out, ["head"], image_size=24, geometry="letterbox", progress=False)


def test_unresized_shards_fit_any_geometry_and_bad_values_are_named(clips, tmp_path):
    out = tmp_path / "raw"
    m = convert(_clips_cfg(clips), out, ["head"], geometry="stretch", progress=False)
    assert (m["image_size"], m["geometry"]) == (None, None)  # frames kept: training makes them square
    for geometry in ("letterbox", "stretch"):
        check_geometry(read_manifest(out), geometry, out)
    doc = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**doc, "image_size": 24, "geometry": "crop"}))
    with pytest.raises(ShardError, match=r"manifest.json: geometry: 'crop' does not fit image_size 24"):
        read_manifest(out)
    with pytest.raises(ConvertError, match="geometry must be one of"):
        convert(_clips_cfg(clips), tmp_path / "x", ["head"], image_size=24, geometry="crop", progress=False)
