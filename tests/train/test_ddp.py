"""DDP on CPU: two gloo processes train a few steps of the tiny config; each rank's workers open
only the datasets the balanced assignment gives their slots."""

import itertools
import os
import subprocess
import sys

import numpy as np

from a1.data.assign import DatasetSpec
from a1.data.datamodule import A1DataModule, DataOptions
from a1.data.mixture import build_mixture
from a1.data.sources import DatasetConfig
from a1.data.streams import MixtureStream
from a1.sim.synthetic import generate
from tests.conftest import CONFIGS, ROOT


def test_two_process_ddp_trains_the_tiny_config(tmp_path):
    env = {**os.environ, "A1_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "a1.fit", "--config", str(CONFIGS / "tiny.yaml"), "--trainer.strategy=ddp",
         "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_steps=3", "--trainer.logger=false",
         "--trainer.limit_val_batches=0", "--trainer.enable_checkpointing=false", "--data.num_workers=1",
         "--data.batch_size=2", f"--trainer.default_root_dir={tmp_path}", "--trainer.callbacks=[]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    assert "max_steps=3` reached" in out


class _Recording(MixtureStream):
    opened: list

    def _pool(self, d, worker):
        self.opened.append(d)
        return super()._pool(d, worker)


def test_each_rank_opens_only_its_slots_datasets(tmp_path):
    roots = [generate(tmp_path / f"d{i}", episodes=2, human_clips=0, image_size=32, frames_per_episode=20, seed=i)
             for i in range(3)]
    datasets = [DatasetConfig(name=f"d{i}", weight=w, frames=f, path=str(r["robot"]))
                for i, (r, w, f) in enumerate(zip(roots, (0.5, 0.3, 0.2), (1000, 600, 400)))]
    dm = A1DataModule(datasets, DataOptions(chunk_size=4, image_size=32, max_text_tokens=8), batch_size=2)
    dm.setup("fit")
    mixture = build_mixture([DatasetSpec(d.name, d.frames, d.weight) for d in datasets], 2)  # 2 ranks × 1 worker
    for rank in (0, 1):
        stream = _Recording(datasets, mixture, dm.opts, rank, seed=0, val_fraction=0.0)
        stream.opened = []
        samples = list(itertools.islice(iter(stream), 30))
        allowed = set(np.flatnonzero(mixture.probs[rank]).tolist())
        assert set(stream.opened) == allowed and {s.dataset_id for s in samples} <= allowed
    # the point of the balanced assignment: no rank holds every dataset
    assert all(np.count_nonzero(mixture.probs[r]) < 3 for r in (0, 1))
