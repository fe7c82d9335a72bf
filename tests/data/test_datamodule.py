"""A1DataModule on real files: balanced slots, mixture, reproducibility, bad input, batches."""

import itertools
import logging
import shutil

import numpy as np
import pytest
import torch

from a1.data.datamodule import A1DataModule, DataOptions, realized_frequencies
from a1.data.sources import DatasetConfig
from a1.sim.synthetic import generate

OPTS = DataOptions(chunk_size=16, image_size=32, max_text_tokens=24)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("dm"), episodes=6, human_clips=3, image_size=32, frames_per_episode=36)


def _datasets(synth, human_path=None):
    return [DatasetConfig(name="robot", weight=0.7, path=str(synth["robot"])),
            DatasetConfig(name="ego", weight=0.3, kind="human_video", path=str(human_path or synth["human"]))]


def _module(datasets, **kw) -> A1DataModule:
    dm = A1DataModule(datasets, OPTS, **{"batch_size": 4, "num_workers": 0, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_each_worker_serves_only_its_slot(synth):
    dm = _module(_datasets(synth), num_workers=2)
    probs = dm.mixture.probs  # (2 slots, 2 datasets)
    batches = list(itertools.islice(iter(dm.train_dataloader()), 8))
    for i, b in enumerate(batches):  # a DataLoader takes batches round-robin from its workers
        allowed = set(np.flatnonzero(probs[i % 2]).tolist())
        assert set(b.dataset_id.tolist()) <= allowed
    freq = realized_frequencies(batches, 2)
    assert abs(freq[0] - 0.7) < 0.2  # exact weights are tested on the mixture itself


def test_same_seed_same_batches(synth):
    a = list(itertools.islice(iter(_module(_datasets(synth)).train_dataloader()), 2))
    b = list(itertools.islice(iter(_module(_datasets(synth)).train_dataloader()), 2))
    c = list(itertools.islice(iter(_module(_datasets(synth), seed=1).train_dataloader()), 2))
    for x, y in zip(a, b):
        assert torch.equal(x.observation.images, y.observation.images) and torch.equal(x.actions, y.actions)
    assert not torch.equal(a[0].observation.images, c[0].observation.images)


def test_batches_are_normalised_and_masked(synth):
    dm = _module(_datasets(synth))
    batch = next(iter(dm.train_dataloader()))
    batch.validate(3, OPTS.chunk_size, OPTS.max_dim)
    robot = batch.dataset_id == 0
    assert batch.has_action[robot].all() and not batch.has_action[~robot].any()
    assert batch.action_dim_mask[robot].sum(1).tolist() == [14] * int(robot.sum())
    assert batch.actions[robot][:, :, :14].abs().mean() < 3  # normalised scale
    val = next(iter(dm.val_dataloader()))
    val.validate(3, OPTS.chunk_size, OPTS.max_dim)


def test_isolated_bad_sample_is_skipped_counted_and_logged(synth, tmp_path, caplog):
    human = tmp_path / "human"
    shutil.copytree(synth["human"], human)
    clip = human / "clips" / "0000.mp4"
    clip.write_bytes(clip.read_bytes()[:300])  # truncated video
    dm = _module([DatasetConfig(name="ego", weight=1.0, kind="human_video", path=str(human))])
    loader = dm.train_dataloader()
    with caplog.at_level(logging.WARNING, logger="a1.data.datamodule"):
        batches = list(itertools.islice(iter(loader), 6))
    assert len(batches) == 6
    assert loader.dataset.skipped > 0
    assert "skipping bad sample ego/episode 0" in caplog.text and "0000.mp4" in caplog.text


def test_dataset_wrong_as_a_whole_fails_at_setup(synth, tmp_path):
    bad = DatasetConfig(name="robot", weight=1.0, path=str(synth["robot"]),
                        cameras={"head": "observation.images.top", "left_wrist": None, "right_wrist": None})
    with pytest.raises(ValueError, match=r"no camera for head → observation.images.top; its cameras are"):
        _module([bad])
    with pytest.raises(ValueError, match=r"folder\(s\) not found: nope: .*missing.*A1_DATA_ROOT"):
        _module([DatasetConfig(name="nope", weight=1.0, path=str(tmp_path / "missing"))])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="info.json"):
        _module([DatasetConfig(name="empty", weight=1.0, path=str(tmp_path / "empty"))])


def test_synthetic_world_is_generated_on_first_use(tmp_path):
    root = tmp_path / "cache"
    ds = [DatasetConfig(name="synthetic", weight=1.0, path=str(root / "robot"))]
    dm = _module(ds, synthetic=str(root))
    assert (root / "robot" / "meta" / "info.json").is_file()
    assert next(iter(dm.train_dataloader())).batch_size == 4


def test_training_streams_from_shards_equal_folder_batches(synth, tmp_path):
    from a1.data.convert import convert
    from a1.data.sample import make_sample
    from a1.data.shards import manifest_urls, read_episodes
    from a1.data.sources import open_source

    convert(DatasetConfig(name="robot", weight=1.0, path=str(synth["robot"])), tmp_path / "shards", OPTS.views,
            episodes_per_shard=2, progress=False)
    folder = _module([DatasetConfig(name="robot", weight=1.0, path=str(synth["robot"]))])
    shards = _module([DatasetConfig(name="robot", weight=1.0, shards=str(tmp_path / "shards"))])
    batch = next(iter(shards.train_dataloader()))
    batch.validate(3, OPTS.chunk_size, OPTS.max_dim)
    assert batch.has_action.all()
    # The same (episode, t) collated from a shard record and from the folder gives equal batches.
    record = next(iter(read_episodes(manifest_urls(tmp_path / "shards"))))
    episode = open_source(folder.datasets[0], OPTS.views).episodes[record.episode]
    cut = [make_sample(ep, 20, OPTS.views, OPTS.history, OPTS.chunk_size, 0, "x", OPTS.image_size)
           for ep in (record, episode)]
    a, b = shards.collator()([cut[0]]), folder.collator()([cut[1]])
    for field in ("images", "image_mask", "tokens", "state", "state_mask"):
        assert torch.equal(getattr(a.observation, field), getattr(b.observation, field)), field
    assert torch.equal(a.actions, b.actions) and torch.equal(a.future_images, b.future_images)


def test_tiny_config_trains_from_the_synthetic_world(tmp_path, monkeypatch):
    from a1.config import policy_config
    from a1.fit import data_module, parse_config
    from a1.model.policy import InternVLAA1, joint_loss
    from tests.conftest import CONFIGS

    monkeypatch.setenv("A1_CACHE", str(tmp_path))
    dm = data_module(parse_config(["--config", str(CONFIGS / "tiny.yaml")]).data)  # as python -m a1.fit reads it
    dm.num_workers = 0
    dm.prepare_data()  # generates the synthetic world into $A1_CACHE/synthetic
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model = InternVLAA1(policy_config(CONFIGS / "tiny.yaml"))
    loss = joint_loss(model(batch), 0.01)
    assert torch.isfinite(loss)
    loss.backward()


def test_state_wider_than_the_model_fails_at_inspect_naming_dataset_and_key(synth):
    """A 14-dim state against an 8-dim model: refused before any worker starts, naming the key."""
    dm = A1DataModule([DatasetConfig(name="robot", weight=1.0, path=str(synth["robot"]))],
                      DataOptions(chunk_size=16, image_size=32, max_text_tokens=24, max_dim=8), num_workers=0)
    with pytest.raises(ValueError, match=r"dataset 'robot' .*observation.state has 14 dims, more than the model's 8"):
        dm.inspect()
