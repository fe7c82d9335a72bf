"""Random, correctly shaped batches for tests, benchmarks and notebooks (no data on disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from a1.batch import Batch, Observation
from a1.model.config import PolicyConfig
from a1.model.prompt import load_tokenizer, tokenize

INSTRUCTIONS = [
    "fold the towel",
    "pick up the red cube and place it in the bowl",
    "open the drawer",
    "grab the box riding on the conveyor",
]


def _smooth_images(g: torch.Generator, shape: tuple[int, ...], size: int) -> torch.Tensor:
    """uint8 images (*shape, 3, size, size) of spatially smooth noise (like camera frames)."""
    coarse = torch.rand(*shape, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(coarse.flatten(0, -4), size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8).view(*shape, 3, size, size)


def _smooth_actions(g: torch.Generator, batch: int, k: int, dims: int) -> torch.Tensor:
    """(B, k, dims) action chunks: smooth per-dim sinusoids, unit-scale like normalised actions."""
    t = torch.linspace(0, 1, k)[None, :, None]
    amp, freq, phase = (torch.rand(batch, 1, dims, generator=g) * s for s in (1.5, 6.0, 6.28))
    return amp * torch.sin(freq * t + phase)


def random_batch(
    cfg: PolicyConfig, batch_size: int, image_size: int = 64, state_dims: int = 14, seed: int = 0
) -> Batch:
    """A batch of smooth random images, real tokenised instructions, smooth action chunks with
    ``state_dims`` real dims (the rest zero-padded and masked)."""
    g = torch.Generator().manual_seed(seed)
    V, T = len(cfg.views), cfg.generation.num_frames
    k, D = cfg.action.chunk_size, cfg.action.max_dim
    tok = load_tokenizer(cfg.understanding.pretrained)
    texts = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(batch_size)]
    tokens, token_mask = tokenize(tok, texts, cfg.understanding.max_text_tokens)
    dim_mask = torch.zeros(batch_size, D, dtype=torch.bool)
    dim_mask[:, :state_dims] = True
    actions = torch.zeros(batch_size, k, D)
    actions[:, :, :state_dims] = _smooth_actions(g, batch_size, k, state_dims)
    state = torch.zeros(batch_size, D)
    state[:, :state_dims] = actions[:, 0, :state_dims] + 0.05 * torch.randn(batch_size, state_dims, generator=g)
    obs = Observation(
        images=_smooth_images(g, (batch_size, V, T), image_size),
        image_mask=torch.ones(batch_size, V, T, dtype=torch.bool),
        tokens=tokens,
        token_mask=token_mask,
        state=state,
        state_mask=dim_mask.clone(),
    )
    return Batch(
        observation=obs,
        future_images=_smooth_images(g, (batch_size, V), image_size),
        future_mask=torch.ones(batch_size, V, dtype=torch.bool),
        actions=actions,
        action_mask=torch.ones(batch_size, k, dtype=torch.bool),
        action_dim_mask=dim_mask,
        has_action=torch.ones(batch_size, dtype=torch.bool),
        dataset_id=torch.zeros(batch_size, dtype=torch.long),
    )


class BatchList(Dataset):
    """Ready-made batches as a Dataset: ``DataLoader(BatchList(batches), batch_size=None)``."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return self.batches[i]


def random_stats(dims: int, seed: int = 0) -> dict[str, list[float]]:
    """Plausible joint statistics (mean, std, q01, q99) of ``dims`` dims, as in a ``stats.json``."""
    rng = np.random.default_rng(seed)
    mean, std = rng.uniform(-0.5, 0.5, dims), rng.uniform(0.1, 0.6, dims)
    return {"mean": mean.tolist(), "std": std.tolist(), "q01": (mean - 2.3 * std).tolist(),
            "q99": (mean + 2.3 * std).tolist()}


def random_policy(config: str | Path | list[str | Path] = "configs/tiny.yaml", dims: int = 14,
                  name: str = "sim_aloha", image_size: int = 64, history: int = 15, seed: int = 0,
                  device: str | torch.device = "cpu"):
    """A `LoadedPolicy` of a random-weight model (a config's real architecture — a list of files is
    layered like ``a1.fit --config A --config B`` — built on ``device``) with one ``mean_std``
    normalisation ``name`` of ``dims`` dims: the deploy path end to end without a training run or a
    file (tests, benchmarks, demos). Its actions are meaningless."""
    from a1.config import policy_config
    from a1.data.collate import DatasetNorm
    from a1.data.normalize import FeatureStats
    from a1.data.sample import DEFAULT_GEOMETRY
    from a1.deploy.processor import ProcessorSettings
    from a1.model.policy import InternVLAA1
    from a1.policy_folder import LoadedPolicy

    torch.manual_seed(seed)
    configs = config if isinstance(config, list) else [config]
    cfg = policy_config(*configs)
    with torch.device(device):
        model = InternVLAA1(cfg).eval()
    stats = FeatureStats.from_dict(random_stats(dims, seed), f"random statistics {name!r}")
    meta = {"version": "random", "source": f"random init of {' + '.join(map(str, configs))}", "global_step": 0,
            "ema": False}
    return LoadedPolicy(model, cfg, {name: DatasetNorm(stats, stats, "mean_std")}, model.understanding.tokenizer,
                        meta, ProcessorSettings(image_size, history, DEFAULT_GEOMETRY))


def random_policy_folder(out: str | Path, config: str | Path | list[str | Path] = "configs/tiny.yaml",
                         **kwargs) -> Path:
    """Write `random_policy` (same keyword arguments) as a policy folder."""
    from dataclasses import asdict

    from a1.policy_folder import write_policy_folder

    p = random_policy(config, **kwargs)
    weights = {k: v.detach().float().contiguous().clone() for k, v in p.policy.state_dict().items()}
    normalization = {n: d.to_dict() for n, d in p.normalization.items()}
    return write_policy_folder(Path(out), weights, asdict(p.config), normalization, asdict(p.settings),
                               p.metadata, p.tokenizer)
