"""Samples → the model's :class:`a1.batch.Batch`: tokenise, normalise, pad, stack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from a1.batch import Batch, Observation
from a1.data.normalize import FeatureStats, Mode, normalize, pad
from a1.data.sample import Sample
from a1.model.prompt import tokenize


@dataclass
class DatasetNorm:
    """How one dataset's state and actions are normalised."""

    state: FeatureStats | None
    action: FeatureStats | None
    mode: Mode = "mean_std"

    def to_dict(self) -> dict:
        """Plain data, as stored in checkpoints and ``normalization.json``."""
        return {"mode": self.mode, **{f: getattr(self, f).to_dict() if getattr(self, f) is not None else None
                                       for f in ("state", "action")}}


class Collator:
    """Callable for ``DataLoader(collate_fn=...)``; picklable for worker processes."""

    def __init__(self, tokenizer, max_text_tokens: int, chunk_size: int, max_dim: int,
                 norms: dict[int, DatasetNorm]) -> None:
        self.tokenizer = tokenizer
        self.max_text_tokens = max_text_tokens
        self.chunk_size = chunk_size
        self.max_dim = max_dim
        self.norms = norms

    def _vectors(self, s: Sample) -> tuple[np.ndarray, ...]:
        """Normalised, padded (state, state_mask, actions, action_dim_mask) of one sample; absent
        vectors (human video has neither; a deployed observation has no actions) are zeros, masked."""
        D, k = self.max_dim, self.chunk_size
        state, state_mask = np.zeros(D, np.float32), np.zeros(D, bool)
        actions, action_mask = np.zeros((k, D), np.float32), np.zeros(D, bool)
        if s.state is None and s.actions is None:
            return state, state_mask, actions, action_mask
        norm = self.norms[s.dataset_id]
        if s.state is not None:
            state, state_mask = pad(normalize(s.state, norm.state, norm.mode), D)
        if s.actions is not None:
            if s.actions.shape[0] != k:
                raise ValueError(f"{s.source}: {s.actions.shape[0]} actions, the model predicts {k}")
            actions, action_mask = pad(normalize(s.actions, norm.action, norm.mode), D)
        return state, state_mask, actions, action_mask

    def __call__(self, samples: list[Sample]) -> Batch:
        tokens, token_mask = tokenize(self.tokenizer, [s.instruction for s in samples], self.max_text_tokens)
        vectors = [self._vectors(s) for s in samples]
        state, state_mask, actions, action_dim_mask = (torch.from_numpy(np.stack(v)) for v in zip(*vectors))
        images = torch.from_numpy(np.stack([s.images for s in samples]))  # (B, V, 3, 3, H, W)
        valid = torch.from_numpy(np.stack([s.image_valid for s in samples]))  # (B, V, 3)
        action_valid = torch.from_numpy(np.stack([
            s.action_valid if s.has_action else np.zeros(self.chunk_size, bool) for s in samples]))
        obs = Observation(
            images=images[:, :, :2].contiguous(),
            image_mask=valid[:, :, :2].contiguous(),
            tokens=tokens,
            token_mask=token_mask,
            state=state,
            state_mask=state_mask,
        )
        return Batch(
            observation=obs,
            future_images=images[:, :, 2].contiguous(),
            future_mask=valid[:, :, 2].contiguous(),
            actions=actions,
            action_mask=action_valid,
            action_dim_mask=action_dim_mask,
            has_action=torch.tensor([s.has_action for s in samples]),
            dataset_id=torch.tensor([s.dataset_id for s in samples], dtype=torch.long),
            skipped=_skipped(samples),
        )


def _skipped(samples: list[Sample]) -> torch.Tensor | None:
    """(num_datasets,) int64: the samples' skip counts summed, or None when none carries counts."""
    counts = [s.skipped for s in samples if s.skipped is not None]
    if not counts:
        return None
    sizes = {len(c) for c in counts}
    if len(sizes) != 1:
        raise ValueError(f"samples count skips over different numbers of datasets: {sorted(sizes)} "
                         f"(e.g. {samples[0].source})")
    return torch.from_numpy(np.sum(counts, axis=0).astype(np.int64))
