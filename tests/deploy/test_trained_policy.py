"""From training to the robot: a real `python -m a1.fit` run on the synthetic world, exported, then
driven with raw camera frames — the processor settings and statistics travel with the policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from a1.data.collate import Collator
from a1.data.sample import make_sample
from a1.data.sources import DatasetConfig, open_source
from a1.policy_folder import load_policy
from tests.conftest import CONFIGS, ROOT


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
    assert doc["processor"] == {"image_size": 64, "history": 15}
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
