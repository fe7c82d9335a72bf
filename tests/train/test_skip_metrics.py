"""Skipped samples reach the metrics: worker skip counts → Batch.skipped → A1Module's per-dataset
running totals (``data/skipped/<dataset>``, kept across checkpoints) and ``val/skipped/<dataset>``;
the progress-bar losses; what ``init_from`` loaded."""

import lightning as L
import pytest
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from a1.data.datamodule import A1DataModule
from a1.data.pools import BadSampleLimit, split_episodes
from a1.data.sources import DatasetConfig
from a1.data.streams import DataOptions, FixedSamples
from a1.sim.synthetic import generate
from a1.train.module import A1Module
from tests.conftest import tiny_qwen
from tests.data.test_bad_data import human_entries

OPTS = DataOptions(chunk_size=16, image_size=64, max_text_tokens=24)  # configs/tiny.yaml


class _ValLimit(A1DataModule):
    """Validation with a looser bad-sample limit (a quarter of these validation clips is bad)."""

    def val_dataloader(self) -> DataLoader:
        samples = FixedSamples(self.datasets, self.opts, self.val_samples, self.seed, self.val_fraction,
                               limit=BadSampleLimit(max_fraction=0.5))
        return DataLoader(samples, batch_size=self.batch_size, num_workers=1, collate_fn=self.collator())


class _SeenSkips(L.Callback):
    def __init__(self) -> None:
        self.total = torch.zeros(2, dtype=torch.long)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.total += batch.skipped


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skips")
    synth = generate(tmp / "synth", episodes=6, human_clips=3, image_size=32, frames_per_episode=36)
    split = {part: split_episodes("ego", range(8), 0.5, part) for part in ("train", "val")}
    ego = human_entries(synth, tmp / "ego", entries=8, bad={*split["train"][:2], split["val"][0]})
    # half the training clips and a quarter of the validation clips are bad
    datasets = [DatasetConfig(name="robot", weight=0.5, path=str(synth["robot"])),
                DatasetConfig(name="ego", weight=0.5, kind="human_video", path=str(ego))]
    dm = _ValLimit(datasets, OPTS, batch_size=4, num_workers=2, val_fraction=0.5, val_samples=4)
    dm.prepare_data()
    return dm


def _trainer(root, **kw) -> L.Trainer:
    kw = {"limit_val_batches": 0, **kw}
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=root, num_sanity_val_steps=0, log_every_n_steps=1, **kw)


def test_skip_counts_reach_the_metrics_and_survive_a_checkpoint(datamodule, tmp_path):
    torch.manual_seed(0)
    module, seen = A1Module(tiny_qwen()), _SeenSkips()
    trainer = _trainer(tmp_path, max_steps=3, callbacks=[seen], enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    totals = module.skipped_totals()
    assert totals == {"robot": 0, "ego": int(seen.total[1])} and totals["ego"] > 0
    assert trainer.callback_metrics["data/skipped/ego"] == totals["ego"]
    assert {"train/loss", "train/loss_act", "train/loss_gen"} <= set(trainer.progress_bar_metrics)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    resumed = A1Module(tiny_qwen())
    resumed.on_load_checkpoint(torch.load(tmp_path / "run.ckpt", map_location="cpu", weights_only=False))
    assert resumed.skipped_totals() == totals

    (metrics,) = _trainer(tmp_path, limit_val_batches=1.0).validate(module, datamodule=datamodule)
    expected = sum(int(b.skipped[1]) for b in datamodule.val_dataloader())  # the same fixed list
    assert metrics["val/skipped/ego"] == expected > 0 and metrics["val/skipped/robot"] == 0


def test_init_from_is_reported(tmp_path):
    source = A1Module(tiny_qwen())
    state = {k: v.clone().contiguous() for k, v in source.policy.state_dict().items()}  # tied: own copies
    save_file(state, str(tmp_path / "model.safetensors"))
    module = A1Module(tiny_qwen(), init_from=str(tmp_path))
    assert module.init_report == {"path": str(tmp_path / "model.safetensors"), "tensors": len(state)}
    assert source.init_report is None
