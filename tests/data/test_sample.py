"""Windows, normalisation and collation of samples into the model's Batch."""

import numpy as np
import pytest
import torch

from a1.data.collate import Collator, DatasetNorm
from a1.data.normalize import FeatureStats, normalize, pad, unnormalize
from a1.data.sample import Sample, chunk_window, frame_window
from a1.model.policy import InternVLAA1
from a1.model.prompt import byte_tokenizer
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
    np.testing.assert_allclose(unnormalize(y, stats, mode), data, rtol=1e-5, atol=1e-4)
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
