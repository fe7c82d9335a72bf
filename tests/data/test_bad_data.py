"""Bad data has a bound: a dataset whose samples keep failing is an error naming it and the file,
a few bad samples are skipped and counted (``Sample.skipped`` → ``Batch.skipped``), validation
replaces a bad sample instead of crashing. Real files, real DataLoader worker processes."""

import itertools
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from a1.data.datamodule import A1DataModule
from a1.data.pools import BadDatasetError, BadSampleLimit, SkipBudget, split_episodes
from a1.data.sources import DatasetConfig
from a1.data.streams import DataOptions, FixedSamples
from a1.sim.synthetic import generate

OPTS = DataOptions(chunk_size=16, image_size=32, max_text_tokens=24)
HEAD = "videos/observation.images.head/chunk-000/file-000.mp4"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("bad"), episodes=6, human_clips=3, image_size=32, frames_per_episode=36)


def _module(datasets, **kw) -> A1DataModule:
    dm = A1DataModule(datasets, OPTS, **{"batch_size": 4, "num_workers": 0, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _broken_robot(synth, tmp_path):
    """A copy of the robot dataset whose head camera mp4 is random bytes."""
    root = tmp_path / "broken"
    shutil.copytree(synth["robot"], root)
    video = root / HEAD
    video.write_bytes(np.random.default_rng(0).integers(0, 256, video.stat().st_size, dtype=np.uint8).tobytes())
    return root


def human_entries(synth, root, entries: int, bad: set[int]):
    """A human-video folder of ``entries`` clips (copies of the synthetic ones); the clips in
    ``bad`` are random bytes."""
    (root / "clips").mkdir(parents=True)
    src = sorted((synth["human"] / "clips").glob("*.mp4"))
    lines = []
    for i in range(entries):
        clip = root / "clips" / f"{i:04d}.mp4"
        if i in bad:
            clip.write_bytes(np.random.default_rng(i).integers(0, 256, 8000, dtype=np.uint8).tobytes())
        else:
            shutil.copy(src[i % len(src)], clip)
        lines.append(json.dumps({"clip": f"clips/{i:04d}.mp4", "instruction": "wave", "fps": 15, "frames": 36}))
    (root / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_budget_rule():
    limit = BadSampleLimit(max_consecutive=5, max_fraction=0.2, min_attempts=20)
    runs = SkipBudget("a", limit)
    for _ in range(4):
        runs.fail("a/episode 0: broken")
    runs.ok()  # a success resets the run of failures, not the totals
    for _ in range(4):
        runs.fail("a/episode 1: broken")
    with pytest.raises(BadDatasetError, match=r"dataset 'a': 5 samples in a row failed.*a/episode 2: broken"):
        runs.fail("a/episode 2: broken")
    share = SkipBudget("b", limit)
    for i in range(19):  # 1 in 4 fails: tolerated until min_attempts, then an error
        share.ok() if i % 4 else share.fail("b: broken")
    with pytest.raises(BadDatasetError, match=r"dataset 'b': 6 of 20 samples failed \(more than 20%"):
        share.fail("b: broken")
    with pytest.raises(ValueError, match="max_fraction"):
        BadSampleLimit(max_fraction=1.5)


@pytest.mark.parametrize("mixed", [False, True], ids=["alone", "mixed"])
@pytest.mark.parametrize("workers", [0, 2])
def test_random_bytes_camera_video_is_an_error_naming_dataset_and_file(synth, tmp_path, caplog, mixed, workers):
    datasets = [DatasetConfig(name="broken", weight=0.5, path=str(_broken_robot(synth, tmp_path)))]
    if mixed:
        datasets.append(DatasetConfig(name="good", weight=0.5, path=str(synth["robot"])))
    loader = _module(datasets, num_workers=workers).train_dataloader()
    batches = 0
    with caplog.at_level(logging.WARNING), pytest.raises(BadDatasetError) as err:
        for _ in itertools.islice(loader, 100):
            batches += 1
    assert batches < 30  # 50 failed attempts in a row, not an endless skip loop
    text = str(err.value)
    assert "dataset 'broken': 50 samples in a row failed" in text and str(tmp_path / "broken" / HEAD) in text
    if workers == 0:  # skip lines are bounded (workers' logs do not reach caplog)
        assert 0 < caplog.text.count("skipping bad sample broken/") <= BadSampleLimit().log_first


def _truncated_shards(synth, out, count: int):
    """Shards of the human clips, one episode each; the first ``count`` cut to 1 KiB (no record survives)."""
    from a1.data.convert import convert

    cfg = DatasetConfig(name="ego", weight=1.0, kind="human_video", path=str(synth["human"]))
    convert(cfg, out, OPTS.views, episodes_per_shard=1, progress=False)
    tars = sorted(out.glob("*.tar"))
    assert len(tars) == 3
    for tar in tars[:count]:
        tar.write_bytes(tar.read_bytes()[:1024])


def test_every_shard_truncated_is_an_error_naming_the_shard_folder(synth, tmp_path):
    out = tmp_path / "shards"
    _truncated_shards(synth, out, 3)
    loader = _module([DatasetConfig(name="ego", weight=1.0, kind="human_video", shards=str(out))]).train_dataloader()
    with pytest.raises(BadDatasetError, match=rf"dataset 'ego': a complete pass over the 3 shard\(s\) in {out} "
                                              r"gave no readable record; last error: .*\.tar"):
        next(iter(loader))


def test_unreadable_shard_records_are_counted(synth, tmp_path):
    out = tmp_path / "shards"
    _truncated_shards(synth, out, 1)
    loader = _module([DatasetConfig(name="ego", weight=1.0, kind="human_video", shards=str(out))]).train_dataloader()
    batches = list(itertools.islice(loader, 6))
    skipped = int(sum(b.skipped.sum() for b in batches))
    assert skipped > 0 and skipped == loader.dataset.skipped  # one per pass over the shards so far


@pytest.mark.parametrize("workers", [0, 2])
def test_a_few_bad_samples_are_skipped_and_counted_in_batches(synth, tmp_path, workers):
    train = split_episodes("ego", range(40), 0.1, "train")
    ego = human_entries(synth, tmp_path / "ego", entries=40, bad={train[3], train[20]})  # ~5 % of the frames
    datasets = [DatasetConfig(name="robot", weight=0.2, path=str(synth["robot"])),
                DatasetConfig(name="ego", weight=0.8, kind="human_video", path=str(ego))]
    loader = _module(datasets, num_workers=workers).train_dataloader()
    batches = list(itertools.islice(loader, 64))  # ~200 draws of ego: past min_attempts, under max_fraction
    skipped = torch.stack([b.skipped for b in batches]).sum(0)
    for b in batches:
        b.validate(3, OPTS.chunk_size, OPTS.max_dim)
        assert b.skipped.shape == (2,) and b.skipped.dtype == torch.int64
    assert skipped[0] == 0 and skipped[1] > 0
    if workers == 0:  # everything skipped so far went out with a sample
        assert loader.dataset.skipped == int(skipped.sum())


def _val_setup(synth, tmp_path, bad_share: str):
    entries = 12
    val = split_episodes("ego", range(entries), 0.5, "val")
    bad = set(val[:1]) if bad_share == "one" else set(val)
    ego = human_entries(synth, tmp_path / "ego", entries=entries, bad=bad)
    datasets = [DatasetConfig(name="robot", weight=0.5, path=str(synth["robot"])),
                DatasetConfig(name="ego", weight=0.5, kind="human_video", path=str(ego))]
    return _module(datasets, val_fraction=0.5), bad


def test_validation_replaces_a_bad_frame_and_counts_it(synth, tmp_path):
    dm, bad = _val_setup(synth, tmp_path, "one")
    limit = BadSampleLimit(max_fraction=0.5)  # a third of these validation clips is bad
    runs = []
    for _ in range(2):
        samples = FixedSamples(dm.datasets, OPTS, 12, seed=0, val_fraction=0.5, limit=limit)
        assert any(d == 1 and e in bad for d, e, _ in samples.items)  # the bad clip is in the list
        runs.append(list(DataLoader(samples, batch_size=4, num_workers=1, collate_fn=dm.collator())))
    for a, b in zip(*runs):  # the replacements are deterministic
        a.validate(3, OPTS.chunk_size, OPTS.max_dim)
        assert torch.equal(a.observation.images, b.observation.images) and torch.equal(a.skipped, b.skipped)
    skipped = torch.stack([b.skipped for b in runs[0]]).sum(0)
    assert skipped[0] == 0 and skipped[1] >= sum(1 for d, e, _ in samples.items if d == 1 and e in bad)
    assert sum(b.batch_size for b in runs[0]) == len(samples)


def test_mostly_bad_validation_set_is_an_error_naming_the_dataset(synth, tmp_path):
    dm, _ = _val_setup(synth, tmp_path, "all")
    samples = FixedSamples(dm.datasets, OPTS, 12, seed=0, val_fraction=0.5)
    with pytest.raises(BadDatasetError, match=r"dataset 'ego': .*failed.*clips/\d{4}\.mp4"):
        list(DataLoader(samples, batch_size=4, num_workers=1, collate_fn=dm.collator()))
