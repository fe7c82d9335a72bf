"""Episode shards: LeRobot / human folders -> webdataset tars -> EpisodeRecords, exactly equal."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from a1.data.convert import convert
from a1.data.lerobot import LeRobotReader
from a1.data.normalize import FeatureStats
from a1.data.sample import make_sample
from a1.data.shards import (
    MANIFEST_KEYS,
    EpisodeRecord,
    ShardError,
    manifest_urls,
    read_episodes,
    read_manifest,
    write_shards,
)
from a1.data.sources import DatasetConfig
from a1.sim import synthetic as syn
from tests.conftest import read_video

EPISODES, FRAMES, SIZE = 5, 24, 32
VIEWS = {"head": syn.CAMERAS[0], "left_wrist": syn.CAMERAS[1], "right_wrist": syn.CAMERAS[2]}
MODEL_VIEWS = list(VIEWS)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # statistics computed by convert go here, not into the repo
        mp.setenv("A1_CACHE", str(tmp_path_factory.mktemp("a1_cache")))
        yield


def robot(src: Path, name: str = "robot") -> DatasetConfig:
    return DatasetConfig(name=name, weight=1.0, path=str(src / "robot"))


def human(src: Path) -> DatasetConfig:
    return DatasetConfig(name="human", weight=1.0, kind="human_video", path=str(src / "human"))


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    syn.generate(out, episodes=EPISODES, human_clips=2, image_size=SIZE, frames_per_episode=FRAMES)
    return out


@pytest.fixture(scope="module")
def robot_shards(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("robot_shards")
    convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=2, progress=False)
    return out


class FolderEpisode:
    """EpisodeData over a LeRobot folder, read directly (the reference for the shards)."""

    def __init__(self, reader: LeRobotReader, index: int):
        self.reader, self.index = reader, index
        self.length = reader.episode(index).length

    def instruction(self, t):
        return self.reader.instruction(self.index, t)

    def vectors(self):
        c = self.reader.columns(self.index, ["observation.state", "action"])
        return c["observation.state"], c["action"]

    def frames(self, view, indices):
        key = VIEWS.get(view)
        return None if key is None else self.reader.images(key, self.index, indices)


def _records(out: Path, **kw) -> list[EpisodeRecord]:
    return list(read_episodes(manifest_urls(out), **kw))


def test_robot_shards_equal_the_folder(src, robot_shards):
    reader = LeRobotReader(src / "robot")
    recs = _records(robot_shards)
    assert [r.episode for r in recs] == list(range(EPISODES))
    for rec in recs:
        ref = FolderEpisode(reader, rec.episode)
        assert rec.length == ref.length and rec.has_action
        s, a = rec.vectors()
        rs, ra = ref.vectors()
        assert s.dtype == a.dtype == np.float32
        np.testing.assert_array_equal(s, rs)
        np.testing.assert_array_equal(a, ra)
        for view, key in VIEWS.items():
            np.testing.assert_array_equal(rec.views[view], reader.images(key, rec.episode, range(rec.length)))
        assert [rec.instruction(t) for t in range(rec.length)] == \
               [ref.instruction(t) for t in range(ref.length)]
        assert rec.frames("nope", np.arange(3)) is None
        for t in (0, 7, rec.length - 1):
            a_, b_ = (make_sample(e, t, ["head", "left_wrist", "right_wrist", "missing"], m=15, k=10, dataset_id=3,
                                  source="x", image_size=24) for e in (rec, ref))
            for f in ("instruction", "images", "image_valid", "state", "actions", "action_valid", "dataset_id"):
                assert np.array_equal(getattr(a_, f), getattr(b_, f)), f


def test_manifest_counts_and_stats(src, robot_shards):
    m = read_manifest(robot_shards)
    assert set(MANIFEST_KEYS) <= set(m)
    reader = LeRobotReader(src / "robot")
    assert (m["name"], m["kind"], m["episodes"], m["frames"]) == ("robot", "lerobot", EPISODES, EPISODES * FRAMES)
    assert m["views"] == MODEL_VIEWS and m["cameras"] == VIEWS and m["has_action"]
    assert (m["state_key"], m["action_key"], m["state_dim"], m["action_dim"]) == ("observation.state", "action",
                                                                                  14, 14)
    assert (m["image_size"], m["episodes_per_shard"], m["source"]) == (None, 2, str((src / "robot").resolve()))
    assert [s["url"] for s in m["shards"]] == ["robot-00000.tar", "robot-00001.tar", "robot-00002.tar"]
    assert [s["episodes"] for s in m["shards"]] == [[0, 1], [2, 3], [4]]
    assert sum(s["frames"] for s in m["shards"]) == m["frames"]
    # the statistics training from the folder uses (here LeRobot's meta/stats.json = exact numpy stats)
    assert m["stats_origin"] == "lerobot meta/stats.json"
    cols = [reader.columns(i, ["observation.state", "action"]) for i in range(EPISODES)]
    for name, col in (("state", "observation.state"), ("action", "action")):
        want = FeatureStats.compute(np.concatenate([c[col] for c in cols])).to_dict()
        assert m["stats"][name] == want


def _age(paths, old: int = 1_000_000_000) -> int:
    for p in paths:  # make "unchanged" mtimes unmistakable
        os.utime(p, ns=(old, old))
    return old


def test_resume_rewrites_only_missing_shards(src, tmp_path, capfd):
    out = tmp_path / "out"
    convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=2, progress=False)
    tars = sorted(out.glob("*.tar"))
    before = {p.name: p.read_bytes() for p in tars}
    old = _age(tars)
    victim = tars[1]
    victim.unlink()
    (out / "robot-00002.tar").unlink()
    (out / "robot-00002.tar.tmp").write_bytes(b"half a shard from a killed run")
    capfd.readouterr()
    m = convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=2, progress=False)
    err = capfd.readouterr().err
    assert "robot-00000.tar is complete, skipping episodes 0..1" in err and "1 skipped" in err
    assert tars[0].stat().st_mtime_ns == old  # untouched
    assert victim.stat().st_mtime_ns != old and (out / "robot-00002.tar").stat().st_mtime_ns != old
    assert not list(out.glob("*.tmp"))
    for p in tars:  # deterministic writer: rewritten shards are byte-identical
        assert p.read_bytes() == before[p.name]
    assert [r.episode for r in _records(out)] == list(range(EPISODES))
    assert m["shards"][1]["bytes"] == victim.stat().st_size
    # --overwrite rewrites everything; a different layout without it is refused
    convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=2, overwrite=True, progress=False)
    assert tars[0].stat().st_mtime_ns != old
    with pytest.raises(ValueError, match="episodes_per_shard"):
        convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=3, progress=False)
    cams = dict(VIEWS, left_wrist=None)
    with pytest.raises(ValueError, match="cameras"):
        convert(DatasetConfig(name="robot", weight=1.0, path=str(src / "robot"), cameras=cams), out, MODEL_VIEWS,
                episodes_per_shard=2, progress=False)


@pytest.mark.parametrize("damage", ["truncated", "corrupt member", "record missing"])
def test_resume_rewrites_a_damaged_shard(src, tmp_path, capfd, damage):
    """A .tar left by an earlier run is kept only when it reads back completely."""
    out = tmp_path / "out"
    convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=2, progress=False)
    tars = sorted(out.glob("*.tar"))
    good = tars[1].read_bytes()
    if damage == "truncated":
        tars[1].write_bytes(good[: len(good) * 2 // 3])
    elif damage == "corrupt member":
        _rewrite(tars[1], tmp_path / "bad.tar", "head.npz", 1)
        os.replace(tmp_path / "bad.tar", tars[1])
    else:  # a tar that ends cleanly after the first record: readable, but short
        with tarfile.open(tmp_path / "short.tar", "w") as tout, tarfile.open(tars[1]) as tin:
            for mem in tin.getmembers():
                if "000002." in mem.name:
                    tout.addfile(mem, tin.extractfile(mem))
        os.replace(tmp_path / "short.tar", tars[1])
    old = _age(tars)
    capfd.readouterr()
    convert(robot(src), out, MODEL_VIEWS, episodes_per_shard=2, progress=False)
    err = capfd.readouterr().err
    assert "robot-00001.tar is incomplete or unreadable" in err and "rewriting episodes 2..3" in err
    assert "1 rewritten" in err and "2 skipped" in err
    assert tars[1].read_bytes() == good and tars[1].stat().st_mtime_ns != old
    assert tars[0].stat().st_mtime_ns == tars[2].stat().st_mtime_ns == old
    assert [r.episode for r in _records(out)] == list(range(EPISODES))


def test_human_folder(src, tmp_path):
    m = convert(human(src), tmp_path / "h", MODEL_VIEWS, progress=False)
    assert (m["kind"], m["episodes"], m["views"], m["has_action"], m["stats"]) == \
           ("human_video", 2, MODEL_VIEWS, False, {})
    assert m["cameras"] == {"head": "clip", "left_wrist": None, "right_wrist": None}
    assert (m["state_key"], m["action_key"], m["state_dim"], m["action_dim"]) == (None, None, None, None)
    assert read_manifest(tmp_path / "h") == m
    recs = _records(tmp_path / "h")
    lines = [json.loads(x) for x in (src / "human/annotations.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    for rec, line in zip(recs, lines):
        assert not rec.has_action and rec.vectors() is None and list(rec.views) == ["head"]
        assert rec.length == line["frames"] and rec.instruction(5) == line["instruction"]
        np.testing.assert_array_equal(rec.views["head"][:, :, :, :],
                                      read_video(src / "human" / line["clip"]).transpose(0, 3, 1, 2))
        s = make_sample(rec, 3, ["head", "left_wrist"], m=15, k=4, dataset_id=0, source="h", image_size=SIZE)
        assert s.actions is None and s.image_valid.tolist() == [[False, True, True], [False, False, False]]


def test_image_size_resizes(src, tmp_path):
    m = convert(human(src), tmp_path / "h16", ["head"], image_size=16, progress=False)
    assert m["image_size"] == 16 and m["views"] == ["head"]
    assert _records(tmp_path / "h16")[0].views["head"].shape == (FRAMES, 3, 16, 16)


def _rewrite(src_tar: Path, dst: Path, member_suffix: str, key_index: int) -> str:
    """Copy a tar, replacing the ``member_suffix`` member of the key_index-th record by garbage."""
    with tarfile.open(src_tar) as tin, tarfile.open(dst, "w") as tout:
        members = tin.getmembers()
        keys = sorted({m.name.split(".", 1)[0] for m in members})
        target = f"{keys[key_index]}.{member_suffix}"
        for mem in members:
            data = tin.extractfile(mem).read()
            if mem.name == target:
                data = b"this is not a zip file" * 10
                mem.size = len(data)
            tout.addfile(mem, io.BytesIO(data))
    return keys[key_index]


def test_corrupt_member_raises_or_skips(robot_shards, tmp_path, caplog):
    urls = manifest_urls(robot_shards)
    bad = tmp_path / "bad-00000.tar"
    key = _rewrite(Path(urls[0]), bad, "left_wrist.npz", 0)
    shards = [str(bad), *urls[1:]]
    with pytest.raises(ShardError, match=rf"bad-00000\.tar.*{key}.*cannot decode") as e:
        list(read_episodes(shards))
    assert e.value.url == str(bad) and e.value.key == key
    reader = read_episodes(shards, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="a1.data.shards"):
        eps = [r.episode for r in reader]
    assert eps == [1, 2, 3, 4] and reader.skipped == 1 and "bad-00000.tar" in caplog.text
    # a missing member is reported by name
    with tarfile.open(urls[0]) as tin, tarfile.open(tmp_path / "miss.tar", "w") as tout:
        for mem in tin.getmembers():
            if not mem.name.endswith("000001.head.npz"):
                tout.addfile(mem, tin.extractfile(mem))
    with pytest.raises(ShardError, match=r"miss\.tar.*robot/000001.*missing member 'head\.npz'"):
        list(read_episodes([str(tmp_path / "miss.tar")]))


def test_truncated_shard_raises_or_skips(robot_shards, tmp_path):
    urls = manifest_urls(robot_shards)
    with tarfile.open(urls[1]) as t:
        last = t.getmembers()[-1]
    cut = tmp_path / "cut-00001.tar"
    cut.write_bytes(Path(urls[1]).read_bytes()[: last.offset_data + last.size // 2])
    shards = [urls[0], str(cut), urls[2]]
    with pytest.raises(ShardError, match=r"cut-00001\.tar"):
        list(read_episodes(shards))
    reader = read_episodes(shards, on_error="skip")
    assert [r.episode for r in reader] == [0, 1, 2, 4] and reader.skipped == 1
    with pytest.raises(ShardError, match="nowhere.tar"):
        list(read_episodes([str(tmp_path / "nowhere.tar")]))


def test_shuffle_is_seeded_and_write_shards_groups(robot_shards, tmp_path):
    urls = manifest_urls(robot_shards)
    a = [r.episode for r in read_episodes(urls, shuffle=True, seed=1)]
    assert a == [r.episode for r in read_episodes(urls, shuffle=True, seed=1)]
    assert sorted(a) == list(range(EPISODES))
    orders = {tuple(r.episode for r in read_episodes(urls, shuffle=True, seed=s)) for s in range(6)}
    assert len(orders) > 1
    recs = _records(robot_shards)
    got = write_shards((("robot", r) for r in recs), tmp_path / "w", "re.shard", max_episodes_per_shard=4)
    assert [g["url"] for g in got] == ["re_shard-00000.tar", "re_shard-00001.tar"]
    assert [g["episodes"] for g in got] == [[0, 1, 2, 3], [4]]
    back = list(read_episodes([str(tmp_path / "w" / g["url"]) for g in got]))
    assert back == recs
    by_size = write_shards(recs, tmp_path / "s", "s", max_episodes_per_shard=None, max_bytes=1)
    assert [g["episodes"] for g in by_size] == [[i] for i in range(EPISODES)]


def test_cli_progress_and_manifest(src, tmp_path):
    out = tmp_path / "cli"
    env = {**os.environ, "A1_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "a1.data.convert", str(src / "robot"), str(out), "--name", "syn.robot",
                        "--episodes-per-shard", "3", "--cameras",
                        f"head={syn.CAMERAS[0]},left_wrist=none,right_wrist={syn.CAMERAS[2]}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "5/5" in r.stderr and "ep/s" in r.stderr
    m = read_manifest(out)
    assert m["name"] == "syn.robot" and m["views"] == MODEL_VIEWS
    assert m["cameras"] == {"head": syn.CAMERAS[0], "left_wrist": None, "right_wrist": syn.CAMERAS[2]}
    assert [s["url"] for s in m["shards"]] == ["syn_robot-00000.tar", "syn_robot-00001.tar"]
    assert json.loads(r.stdout)["episodes"] == EPISODES
    recs = _records(out)
    assert recs[0].key == "syn_robot/000000" and recs[0].dataset == "syn.robot"
    assert list(recs[0].views) == ["head", "right_wrist"]  # a view without camera is absent from the records
    bad = subprocess.run([sys.executable, "-m", "a1.data.convert", str(tmp_path), str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert bad.returncode == 2 and "neither a LeRobot dataset" in bad.stderr
