"""``A1DataModule``: sources, shards, weighted mixture, balanced workers, normalisation, batches.

Every (rank × DataLoader worker) slot opens only the datasets the load-balanced assignment
gives it (paper §3.4) and draws from them with per-slot probabilities that make the realised
mixture equal the configured weights (``a1.data.mixture``). Streams are seeded from (seed, rank,
worker, epoch), so a run's data order is reproducible. An isolated bad sample (a corrupt frame,
a NaN) is skipped, counted and logged, and the run goes on; a dataset that is wrong as a whole
(missing folder, unknown camera key, missing column) fails in ``setup`` naming file and key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from a1.data.assign import DatasetSpec
from a1.data.collate import Collator, DatasetNorm
from a1.data.lerobot import DatasetError
from a1.data.mixture import SlotMixture, build_mixture
from a1.data.normalize import FeatureStats
from a1.data.pools import EpisodePool, StreamPool, split_episodes
from a1.data.sample import Sample, make_sample
from a1.data.sources import DatasetConfig, open_source
from a1.data.stats import STATS_FILE, compute_stats, load_stats
from a1.data.video import VideoError
from a1.model.prompt import load_tokenizer

log = logging.getLogger(__name__)
SAMPLE_ERRORS = (ValueError, KeyError, IndexError, OSError, VideoError, DatasetError)


@dataclass
class DataOptions:
    """What every dataset's samples share (kept in step with the model's config)."""

    views: list[str] = field(default_factory=lambda: ["head", "left_wrist", "right_wrist"])
    """Model views, in order."""
    history: int = 15
    """m: frames between t−m, t and t+m (paper: 15)."""
    chunk_size: int = 50
    """k: actions per sample."""
    max_dim: int = 32
    """State/action vectors are padded to this many dims."""
    image_size: int = 224
    """Side of the square frames put in a batch (the model resizes again for its experts)."""
    max_text_tokens: int = 48
    """Instruction length in tokens."""
    tokenizer: str | None = None
    """Pretrained folder whose tokenizer to use; ``None``: the local byte tokenizer (tiny configs)."""


class MixtureStream(IterableDataset):
    """Endless training samples of one rank; each worker serves its own slot."""

    def __init__(self, datasets: list[DatasetConfig], mixture: SlotMixture, opts: DataOptions, rank: int,
                 seed: int, val_fraction: float) -> None:
        self.datasets, self.mixture, self.opts = datasets, mixture, opts
        self.rank, self.seed, self.val_fraction = rank, seed, val_fraction
        self.epoch = 0
        self.skipped = 0
        self.start_batch = 0  # batches this rank already consumed (set on resume)
        self.batch_size = 1

    def _samples_to_skip(self, worker: int, num_workers: int) -> int:
        """Samples this worker produced before ``start_batch`` (a DataLoader takes batches
        round-robin from its workers), so a resumed run continues the same data order."""
        batches = sum(1 for j in range(self.start_batch) if j % num_workers == worker)
        return batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pool(self, d: int, worker: int) -> EpisodePool | StreamPool:
        cfg = self.datasets[d]
        rng = np.random.default_rng([self.seed, self.rank, worker, self.epoch, d])
        if cfg.shards is not None:
            from a1.data.shards import manifest_urls, read_episodes

            def endless():
                for rnd in range(10**9):  # a new shard order every pass
                    yield from read_episodes(manifest_urls(cfg.shards), shuffle=True,
                                             seed=int(rng.integers(2**31)) + rnd, on_error="skip")
            return StreamPool(endless(), rng)
        source = open_source(cfg, self.opts.views)
        return EpisodePool(source.episodes, split_episodes(cfg.name, source.episodes, self.val_fraction, "train"), rng)

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        sampler = self.mixture.sampler(self.rank, worker, num_workers, seed=self.seed, epoch=self.epoch)
        pools: dict[int, EpisodePool | StreamPool] = {}  # opened lazily: only this slot's datasets
        o = self.opts
        skip = self._samples_to_skip(worker, num_workers)
        for d in sampler:
            if d not in pools:
                pools[d] = self._pool(d, worker)
            episode, t, index = pools[d].draw()
            if skip > 0:  # fast-forward without decoding (exact unless a skipped draw was a bad sample)
                skip -= 1
                continue
            where = f"{self.datasets[d].name}/episode {index}/frame {t}"
            try:
                yield make_sample(episode, t, o.views, o.history, o.chunk_size, d, where, o.image_size)
            except SAMPLE_ERRORS as err:
                self.skipped += 1
                log.warning("skipping bad sample %s: %s (%d skipped by this worker)", where, err, self.skipped)


class FixedSamples(Dataset):
    """A deterministic list of (dataset, episode, t) from the validation episodes."""

    def __init__(self, datasets: list[DatasetConfig], opts: DataOptions, per_dataset: int, seed: int,
                 val_fraction: float) -> None:
        self.datasets, self.opts = datasets, opts
        self.items: list[tuple[int, int, int]] = []
        rng = np.random.default_rng(seed)
        for d, cfg in enumerate(datasets):
            if cfg.shards is not None and cfg.path is None:
                continue  # validation reads folders; shard-only datasets are training-only
            source = open_source(cfg, opts.views)
            episodes = split_episodes(cfg.name, source.episodes, val_fraction, "val")
            for _ in range(per_dataset if episodes else 0):
                e = episodes[int(rng.integers(len(episodes)))]
                self.items.append((d, e, int(rng.integers(source.episodes[e].length))))
        self._sources: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        d, e, t = self.items[i]
        if d not in self._sources:
            self._sources[d] = open_source(self.datasets[d], self.opts.views)
        o = self.opts
        return make_sample(self._sources[d].episodes[e], t, o.views, o.history, o.chunk_size, d,
                           f"{self.datasets[d].name}/episode {e}/frame {t}", o.image_size)


class A1DataModule(L.LightningDataModule):
    """The training data of InternVLA-A1."""

    def __init__(self, datasets: list[DatasetConfig], options: DataOptions | None = None, batch_size: int = 8,
                 num_workers: int = 2, seed: int = 0, val_fraction: float = 0.1, val_samples: int = 32,
                 synthetic: str | None = None) -> None:
        """
        Args:
            datasets: the mixture (name, weight, frames, kind, path/shards, cameras, keys, normalization).
            options: sample layout shared with the model (views, m, k, dims, image size, tokenizer).
            batch_size: samples per batch on each device.
            num_workers: DataLoader workers per device (each a slot of the balanced assignment).
            seed: base seed of every sampling stream.
            val_fraction: fraction of episodes held out for validation (split by episode hash).
            val_samples: validation samples per dataset.
            synthetic: folder where the embedded synthetic world is generated on first use
                (datasets refer to ``<synthetic>/robot`` and ``<synthetic>/human``); ``None``: off.
        """
        super().__init__()
        if not datasets:
            raise ValueError("data.datasets: at least one dataset is required")
        self.datasets, self.opts = list(datasets), options or DataOptions()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.val_fraction, self.val_samples, self.synthetic = val_fraction, val_samples, synthetic
        self.mixture: SlotMixture | None = None
        self.norms: dict[int, DatasetNorm] = {}

    def prepare_data(self) -> None:
        if self.synthetic is not None and not (Path(self.synthetic) / "robot" / "meta" / "info.json").is_file():
            from a1.data.synthetic import generate

            log.info("generating the synthetic dataset into %s", self.synthetic)
            generate(Path(self.synthetic), overwrite=True)

    def setup(self, stage: str | None = None) -> None:
        sizes = [self._validate(d, cfg) for d, cfg in enumerate(self.datasets)]
        specs = [DatasetSpec(c.name, float(s), c.weight) for c, s in zip(self.datasets, sizes)]
        world = self.trainer.world_size if self.trainer is not None else 1
        self.rank = self.trainer.global_rank if self.trainer is not None else 0
        self.mixture = build_mixture(specs, world * max(self.num_workers, 1), seed=self.seed)
        self.tokenizer = load_tokenizer(self.opts.tokenizer)

    def _validate(self, d: int, cfg: DatasetConfig) -> int:
        """Open a dataset once (fails early, naming file and key); return its size; load stats."""
        if cfg.shards is not None:
            manifest = json.loads((Path(cfg.shards) / "manifest.json").read_text())
            stats = manifest.get("stats") or {}
            if stats.get("state"):
                self.norms[d] = DatasetNorm(FeatureStats.from_dict(stats["state"], f"{cfg.shards}: state"),
                                            FeatureStats.from_dict(stats["action"], f"{cfg.shards}: action"),
                                            cfg.normalization)
            return int(cfg.frames or manifest["frames"])
        source = open_source(cfg, self.opts.views)
        if cfg.kind == "lerobot":
            source.reader.validate(cfg.state_key, cfg.action_key)
            self.norms[d] = DatasetNorm(*self._stats(cfg), cfg.normalization)
        return int(cfg.frames or sum(e.length for e in source.episodes))

    @staticmethod
    def _stats(cfg: DatasetConfig) -> tuple[FeatureStats, FeatureStats]:
        """``a1_stats.json`` beside the data; else LeRobot's ``meta/stats.json`` when it has
        mean/std/q01/q99; else computed in memory (the data folder is never written to)."""
        path = Path(cfg.path)
        if (path / STATS_FILE).is_file():
            return load_stats(path)
        meta = path / "meta" / "stats.json"
        if meta.is_file():
            data = json.loads(meta.read_text())
            try:
                return (FeatureStats.from_dict(data[cfg.state_key], f"{meta}:{cfg.state_key}"),
                        FeatureStats.from_dict(data[cfg.action_key], f"{meta}:{cfg.action_key}"))
            except KeyError:
                pass  # older stats without percentiles: compute our own
        log.warning("%s has no %s: computing statistics in memory (run `python -m a1.data.stats %s` to "
                    "store them)", path, STATS_FILE, path)
        stats = compute_stats(path, cfg.state_key, cfg.action_key)
        return (FeatureStats.from_dict(stats["state"], cfg.name), FeatureStats.from_dict(stats["action"], cfg.name))

    def collator(self) -> Collator:
        o = self.opts
        return Collator(self.tokenizer, o.max_text_tokens, o.chunk_size, o.max_dim, self.norms)

    def train_dataloader(self) -> DataLoader:
        stream = MixtureStream(self.datasets, self.mixture, self.opts, self.rank, self.seed, self.val_fraction)
        stream.batch_size = self.batch_size
        if self.trainer is not None:  # resuming: continue the data order where the run stopped
            stream.start_batch = self.trainer.global_step * self.trainer.accumulate_grad_batches
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=self.collator(), persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        samples = FixedSamples(self.datasets, self.opts, self.val_samples, self.seed, self.val_fraction)
        return DataLoader(samples, batch_size=self.batch_size, num_workers=min(self.num_workers, 1),
                          collate_fn=self.collator())


def realized_frequencies(batches, num_datasets: int) -> np.ndarray:
    """Fraction of samples per dataset id over an iterable of batches (for checks and logs)."""
    counts = np.zeros(num_datasets)
    for b in batches:
        counts += torch.bincount(b.dataset_id, minlength=num_datasets).numpy()
    return counts / max(counts.sum(), 1)


def datamodule_from_config(path: str | Path) -> A1DataModule:
    """Build the ``data`` section of a YAML config (strict keys, interpolation resolved)."""
    from a1.config import ConfigError, from_dict, load_yaml

    section = dict(load_yaml(path).get("data") or {})
    if "datasets" not in section:
        raise ConfigError(f"{path}: missing key data.datasets")
    known = {"datasets", "options", "batch_size", "num_workers", "seed", "val_fraction", "val_samples", "synthetic"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join('data.' + k for k in unknown)}")
    try:
        section["datasets"] = [from_dict(DatasetConfig, d, f"data.datasets[{i}]") for i, d in enumerate(section["datasets"])]
        section["options"] = from_dict(DataOptions, section.get("options", {}), "data.options")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return A1DataModule(**section)
