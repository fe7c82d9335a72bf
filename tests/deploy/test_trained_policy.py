"""From training to the robot: a real `python -m a1.fit` run on the synthetic world, exported, then
driven with raw camera frames — the processor settings and statistics travel with the policy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from a1.data.collate import Collator
from a1.data.sample import fit_frames, make_sample
from a1.data.sources import DatasetConfig, open_source
from a1.deploy.processor import ProcessorSettings
from a1.policy_folder import PolicyLoadError, load_policy
from tests.conftest import CONFIGS, ROOT
from tests.deploy.test_geometry import _camera, _raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    env = {**os.environ, "A1_CACHE": str(root / "cache"), "A1_PROGRESS": "lines"}
    fit = [sys.executable, "-m", "a1.fit", "--config", str(CONFIGS / "tiny.yaml"), "--trainer.max_steps=2",
           f"--trainer.default_root_dir={root / 'out'}", "--trainer.val_check_interval=null",
           "--trainer.limit_val_batches=0", "--data.num_workers=0", "--data.batch_size=2"]
    proc = subprocess.run(fit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = root / "policy"
    proc = subprocess.run([sys.executable, "-m", "a1.export", str(root / "out" / "checkpoints" / "last.ckpt"),
                           str(folder)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, root / "cache" / "synthetic" / "robot"


def test_export_carries_the_processor_settings_and_a_default_normalisation(trained):
    folder, _ = trained
    doc = json.loads((folder / "config.json").read_text())
    assert doc["processor"] == {"image_size": 64, "history": 15, "geometry": "letterbox"}
    loaded = load_policy(folder)
    # trained on the synthetic robot + human clips: the clips have no statistics to keep
    assert sorted(loaded.normalization) == ["synthetic_robot"]
    assert loaded.default_normalization() == "synthetic_robot"  # the only one with action statistics
    assert loaded.processor().name == "synthetic_robot"
    with pytest.raises(KeyError, match=r"unknown normalisation 'aloha'; this policy knows: synthetic_robot"):
        loaded.processor("aloha")


def test_raw_frames_of_the_training_data_give_the_training_observation(trained):
    folder, robot = trained
    loaded = load_policy(folder)
    cfg = loaded.config
    episode = open_source(DatasetConfig(name="synthetic_robot", weight=1.0, path=str(robot)), cfg.views).episodes[0]
    t = 20
    raw = {"images": {v: episode.frames(v, np.array([t - 15, t])).transpose(0, 2, 3, 1) for v in cfg.views},
           "state": episode.vectors()[0][t], "prompt": episode.instruction(t)}
    proc = loaded.processor()
    got = proc.observation(raw)
    sample = make_sample(episode, t, cfg.views, 15, cfg.action.chunk_size, 0, "test", 64)
    want = Collator(loaded.tokenizer, cfg.understanding.max_text_tokens, cfg.action.chunk_size, cfg.action.max_dim,
                    {0: loaded.normalization["synthetic_robot"]})([sample]).observation
    for field in ("images", "image_mask", "tokens", "token_mask", "state", "state_mask"):
        assert torch.equal(getattr(got, field), getattr(want, field)), field
    actions = loaded.infer(raw, noise=torch.zeros(cfg.action.chunk_size, cfg.action.max_dim))
    assert actions.shape == (cfg.action.chunk_size, 14) and np.isfinite(actions).all()


# --- the frame geometry travels from training to the policy folder -----------------------------
def test_the_exported_policy_processes_frames_as_it_was_trained(trained):
    folder, _ = trained
    assert json.loads((folder / "config.json").read_text())["processor"]["geometry"] == "letterbox"
    policy = load_policy(folder)
    assert policy.settings == ProcessorSettings(64, 15, "letterbox")
    frame = _camera(48, 80, 9)
    obs = policy.processor().observation(_raw({view: frame for view in policy.config.views}))
    want = fit_frames(np.ascontiguousarray(frame.transpose(2, 0, 1)[None]), 64, "letterbox")[0]
    torch.testing.assert_close(obs.images[0, 0, 1], torch.from_numpy(want), rtol=0, atol=0)
    rows = obs.images[0, 0, 1].amax(dim=(0, 2))  # 48×80 → 38×64 content, 13 zero rows above and below
    assert (rows[:13] == 0).all() and (rows[13:51] > 0).all() and (rows[51:] == 0).all()


@pytest.mark.parametrize("processor, want", [
    ({"image_size": 64, "history": 15}, "stretch"),  # folders exported before the key: trained stretched
    ({"image_size": 64, "history": 15, "geometry": "stretch"}, "stretch"),
    ({"image_size": 64, "history": 15, "geometry": "crop"}, r"processor\.geometry: 'crop' is not one of"),
])
def test_older_and_edited_folders(trained, tmp_path, processor, want):
    folder, _ = trained
    copy = tmp_path / "policy"
    shutil.copytree(folder, copy)
    doc = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**doc, "processor": processor}))
    if want == "stretch":
        assert load_policy(copy).settings.geometry == "stretch"
    else:
        with pytest.raises(PolicyLoadError, match=want):
            load_policy(copy)
