"""``A1DataModule``: sources, shards, weighted mixture, balanced workers, normalisation, batches.

Every (rank × DataLoader worker) slot opens only the datasets the load-balanced assignment
gives it (paper §3.4) and draws from them with per-slot probabilities that make the realised
mixture equal the configured weights (``a1.data.mixture``). Streams are seeded from (seed, rank,
worker, epoch), so a run's data order is reproducible. An isolated bad sample (a corrupt frame,
a NaN) is skipped and counted per dataset (``Batch.skipped``, the metrics), and the run goes on; a
dataset whose samples keep failing stops the run (``bad_samples``, see
:class:`a1.data.pools.BadSampleLimit`). A dataset that is wrong as a whole (missing folder, a view
with no camera, a missing column, too many dims, bad statistics) fails in :meth:`inspect` — before
the model is built — naming the dataset, the file and the fix. :meth:`inspect` also builds each
dataset's `a1.data.collate.DatasetNorm` (normalisation mode, statistics, ``action_mode`` and
``absolute_dims``): statistics of a ``delta`` dataset are those of its deltas for the model's chunk
size (`a1.data.stats.dataset_stats`; from shards, the manifest's must record the same settings).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from a1.data.assign import DatasetSpec
from a1.data.collate import Collator, DatasetNorm
from a1.data.lerobot import DatasetError
from a1.data.mixture import SlotMixture, build_mixture
from a1.data.normalize import FeatureStats
from a1.data.pools import BadSampleLimit, split_episodes
from a1.data.shards import read_manifest
from a1.data.sources import DatasetConfig, check_shard_views, open_source
from a1.data.stats import check_stats_record, dataset_record, dataset_stats
from a1.data.streams import DataOptions, FixedSamples, MixtureStream
from a1.model.prompt import load_tokenizer

log = logging.getLogger(__name__)



@dataclass
class DatasetInfo:
    """What :meth:`A1DataModule.inspect` found in one dataset (the start-up report's entry)."""

    cfg: DatasetConfig
    source: str
    """``path X`` or ``shards X``."""
    cameras: dict[str, str | None]
    """Model view → camera it reads (``None``: no such camera, the view is masked)."""
    episodes_train: int
    episodes_val: int
    frames_train: int
    frames_val: int
    state_dim: int | None
    action_dim: int | None
    stats: str = "none"
    """Where the normalisation statistics came from."""

    def as_dict(self, weight: float, realised: float) -> dict:
        c = self.cfg
        return {"name": c.name, "kind": c.kind, "source": self.source,
                "episodes": {"train": self.episodes_train, "val": self.episodes_val},
                "frames": {"train": self.frames_train, "val": self.frames_val},
                "views": {"found": {v: k for v, k in self.cameras.items() if k is not None},
                          "missing": [v for v, k in self.cameras.items() if k is None]},
                "state_dim": self.state_dim, "action_dim": self.action_dim,
                "normalization": c.normalization if self.action_dim is not None else None, "stats": self.stats,
                "action_mode": c.action_mode if self.action_dim is not None else None,
                "absolute_dims": list(c.absolute_dims) if self.action_dim is not None else None,
                "weight": {"configured": weight, "realised": realised}}


class A1DataModule(L.LightningDataModule):
    """The training data of InternVLA-A1."""

    def __init__(self, datasets: list[DatasetConfig], options: DataOptions = DataOptions(), batch_size: int = 8,
                 num_workers: int = 2, seed: int = 0, val_fraction: float = 0.1, val_samples: int = 32,
                 synthetic: str | None = None, bad_samples: BadSampleLimit = BadSampleLimit()) -> None:
        """
        Args:
            datasets: the mixture (name, weight, frames, kind, path/shards, cameras, keys, normalization,
                action_mode and absolute_dims).
            options: sample layout shared with the model (views, m, k, dims, image size, tokenizer).
            batch_size: samples per batch on each device.
            num_workers: DataLoader workers per device (each a slot of the balanced assignment).
            seed: base seed of every sampling stream.
            val_fraction: fraction of episodes held out for validation (split by episode hash).
            val_samples: validation samples per dataset.
            synthetic: folder where the embedded synthetic world is generated on first use
                (datasets refer to ``<synthetic>/robot`` and ``<synthetic>/human``); ``None``: off.
            bad_samples: when a dataset whose samples keep failing stops the run (instead of being
                skipped forever): see :class:`a1.data.pools.BadSampleLimit`.
        """
        super().__init__()
        if not datasets:
            raise ValueError("data.datasets: at least one dataset is required")
        names = [c.name for c in datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"data.datasets: names must be unique, got {names}")
        for key, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                ("val_samples", val_samples, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"data.{key} must be an integer >= {low}, got {value!r}")
        self.datasets, self.opts = list(datasets), dataclasses.replace(options)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.val_fraction, self.val_samples, self.synthetic = val_fraction, val_samples, synthetic
        self.bad_samples = dataclasses.replace(bad_samples)
        self.mixture: SlotMixture | None = None
        self.norms: dict[int, DatasetNorm] = {}
        self.infos: list[DatasetInfo] | None = None

    def prepare_data(self) -> None:
        if self.synthetic is not None and not (Path(self.synthetic) / "robot" / "meta" / "info.json").is_file():
            from a1.sim.synthetic import generate

            log.info("generating the synthetic dataset into %s", self.synthetic)
            generate(Path(self.synthetic), overwrite=True)

    def inspect(self) -> list[DatasetInfo]:
        """Open every dataset once — before any model is built — and check it against the model:
        folders exist, every view maps to a real camera (or explicitly to null), state/action fit
        ``max_dim``, statistics are finite. Errors name the dataset, the file and the fix."""
        if self.infos is None:
            missing = [f"{c.name}: {c.shards or c.path}" for c in self.datasets
                       if not Path(c.shards or c.path or "").exists()]
            if missing:
                raise DatasetError(f"dataset folder(s) not found: {'; '.join(missing)}. The pre-/post-training "
                                   f"configs read them from $A1_DATA_ROOT (default /data), $A1_POSTTRAIN_DATA or "
                                   f"$A1_ROBOTWIN; set the variable or override data.datasets")
            self.infos = [self._inspect(d, cfg) for d, cfg in enumerate(self.datasets)]
        return self.infos

    def _inspect(self, d: int, cfg: DatasetConfig) -> DatasetInfo:
        views = self.opts.views
        if cfg.shards is not None:
            manifest = read_manifest(cfg.shards)
            cameras = check_shard_views(cfg, views, manifest, cfg.shards)
            info = DatasetInfo(cfg, f"shards {cfg.shards}", cameras, manifest["episodes"], 0, manifest["frames"], 0,
                               manifest.get("state_dim"), manifest.get("action_dim"))
            stats = manifest.get("stats") or {}
            if stats.get("state"):
                cfg.check_action_dims(info.state_dim, info.action_dim, info.source)
                self.norms[d] = self._shard_norm(cfg, stats)
                info.stats = f"manifest {Path(cfg.shards) / 'manifest.json'}"
        else:
            source = open_source(cfg, views)
            train, val = (split_episodes(cfg.name, source.episodes, self.val_fraction, s) for s in ("train", "val"))
            frames = [sum(source.episodes[i].length for i in part) for part in (train, val)]
            info = DatasetInfo(cfg, f"path {cfg.path}", source.cameras, len(train), len(val), frames[0], frames[1],
                               *source.dims())
            if cfg.kind == "lerobot":
                source.reader.validate(cfg.state_key, cfg.action_key)
                cfg.check_action_dims(info.state_dim, info.action_dim, info.source)
                state, action, info.stats = dataset_stats(cfg, self.opts.chunk_size)
                self.norms[d] = DatasetNorm(state, action, cfg.normalization, cfg.action_mode, cfg.absolute_dims)
        for key, dim in ((cfg.state_key, info.state_dim), (cfg.action_key, info.action_dim)):
            if dim is not None and dim > self.opts.max_dim:
                raise DatasetError(f"dataset {cfg.name!r} ({info.source}): {key} has {dim} dims, more than the "
                                   f"model's {self.opts.max_dim} (model.policy.action.max_dim)")
        return info

    def _shard_norm(self, cfg: DatasetConfig, stats: dict) -> DatasetNorm:
        """The normalisation of a shard set from its manifest's statistics, which must have been
        computed for the dataset's action settings (delta: its absolute dims and the model's k)."""
        where = f"{Path(cfg.shards) / 'manifest.json'}: stats"
        check_stats_record(stats, dataset_record(cfg, self.opts.chunk_size), where)
        return DatasetNorm(FeatureStats.from_dict(stats["state"], f"{cfg.shards}: stats.state"),
                           FeatureStats.from_dict(stats["action"], f"{cfg.shards}: stats.action"),
                           cfg.normalization, cfg.action_mode, cfg.absolute_dims)

    def describe(self) -> list[dict]:
        """Per dataset, what the start-up report shows (after ``setup``: with realised weights)."""
        realised = self.mixture.realized_weights() if self.mixture is not None else [float("nan")] * len(self.datasets)
        weights = np.array([c.weight for c in self.datasets], dtype=float)
        return [info.as_dict(float(w), float(r)) for info, w, r in zip(self.inspect(), weights / weights.sum(), realised)]

    def setup(self, stage: str | None = None) -> None:
        infos = self.inspect()
        sizes = [cfg.frames or (i.frames_train + i.frames_val) for cfg, i in zip(self.datasets, infos)]
        specs = [DatasetSpec(c.name, float(s), c.weight) for c, s in zip(self.datasets, sizes)]
        world = self.trainer.world_size if self.trainer is not None else 1
        self.rank = self.trainer.global_rank if self.trainer is not None else 0
        self.mixture = build_mixture(specs, world * max(self.num_workers, 1), seed=self.seed)
        self.tokenizer = load_tokenizer(self.opts.tokenizer)

    def collator(self) -> Collator:
        o = self.opts
        return Collator(self.tokenizer, o.max_text_tokens, o.chunk_size, o.max_dim, self.norms)

    def train_dataloader(self) -> DataLoader:
        stream = MixtureStream(self.datasets, self.mixture, self.opts, self.rank, self.seed, self.val_fraction,
                               limit=self.bad_samples)
        stream.batch_size = self.batch_size
        if self.trainer is not None:  # resuming: continue the data order where the run stopped
            stream.start_batch = self.trainer.global_step * self.trainer.accumulate_grad_batches
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=self.collator(), persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        samples = FixedSamples(self.datasets, self.opts, self.val_samples, self.seed, self.val_fraction,
                               limit=self.bad_samples)
        return DataLoader(samples, batch_size=self.batch_size, num_workers=min(self.num_workers, 1),
                          collate_fn=self.collator())


def realized_frequencies(batches, num_datasets: int) -> np.ndarray:
    """Fraction of samples per dataset id over an iterable of batches (for checks and logs)."""
    counts = np.zeros(num_datasets)
    for b in batches:
        counts += torch.bincount(b.dataset_id, minlength=num_datasets).numpy()
    return counts / max(counts.sum(), 1)
