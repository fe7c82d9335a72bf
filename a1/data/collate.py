"""Samples → the model's :class:`a1.batch.Batch`: tokenise, normalise, pad, stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from a1.batch import Batch, Observation
from a1.data.normalize import (
    ACTION_MODES,
    MODES,
    ActionMode,
    FeatureStats,
    Mode,
    apply,
    check_mode,
    delta_dims,
    from_delta,
    normalize,
    pad,
    to_delta,
)
from a1.data.sample import Sample
from a1.model.prompt import tokenize

NORM_KEYS = ("mode", "state", "action", "action_mode", "absolute_dims")
"""The keys of a serialised `DatasetNorm` (checkpoints' ``a1_normalization``, ``normalization.json``)."""


@dataclass
class DatasetNorm:
    """How one dataset's state and actions become the model's vectors, and back: the one place the
    delta-action transform and the normalisation are applied to actions (`actions_to_model`,
    `actions_to_raw`). Checked on creation (mode, quantiles for ``quantile``, delta dims)."""

    state: FeatureStats | None
    action: FeatureStats | None
    mode: Mode = "mean_std"
    action_mode: ActionMode = "absolute"
    """``delta``: the model predicts action − state on every dim not in ``absolute_dims``."""
    absolute_dims: list[int] = field(default_factory=list)
    """Action dims that stay absolute in ``delta`` mode (e.g. grippers)."""

    def __post_init__(self) -> None:
        where = self.action.where if self.action is not None else "normalisation"
        for stats in (self.state, self.action):
            check_mode(stats, self.mode)
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"{where}: action_mode {self.action_mode!r} is not one of {list(ACTION_MODES)}")
        if not isinstance(self.absolute_dims, (list, tuple)):
            raise TypeError(f"{where}: absolute_dims must be a list of action dims, got {self.absolute_dims!r}")
        self.absolute_dims = list(self.absolute_dims)
        if self.action_mode == "delta" and self.action is not None and self.state is not None:
            delta_dims(self.action.dims, self.state.dims, self.absolute_dims, where)

    def to_dict(self) -> dict:
        """Plain data, as stored in checkpoints and ``normalization.json`` (keys `NORM_KEYS`)."""
        return {"mode": self.mode, **{f: getattr(self, f).to_dict() if getattr(self, f) is not None else None
                                       for f in ("state", "action")},
                "action_mode": self.action_mode, "absolute_dims": list(self.absolute_dims)}

    @classmethod
    def from_dict(cls, entry: Any, where: str) -> DatasetNorm:
        """Inverse of `to_dict`; an entry written before delta actions existed (no ``action_mode``/
        ``absolute_dims``) is absolute. Bad entries — among them a key not in `NORM_KEYS` (a misspelt
        ``action_mode`` would otherwise silently mean absolute actions) — raise ``ValueError``/
        ``KeyError`` naming ``where`` (and the key or feature)."""
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            raise ValueError(f"{where}: expected {{'mode': one of {list(MODES)}, 'state', 'action'}}, got {entry!r}")
        unknown = [k for k in entry if k not in NORM_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown} (known keys: {list(NORM_KEYS)})")
        stats = {f: FeatureStats.from_dict(entry[f], f"{where}: {f}") if entry.get(f) is not None else None
                 for f in ("state", "action")}
        action_mode, absolute = entry.get("action_mode", "absolute"), entry.get("absolute_dims", [])
        if action_mode not in ACTION_MODES or not isinstance(absolute, list):
            raise ValueError(f"{where}: expected action_mode one of {list(ACTION_MODES)} and absolute_dims a list "
                             f"of action dims, got {action_mode!r} and {absolute!r}")
        return cls(stats["state"], stats["action"], entry["mode"], action_mode, absolute)

    def _delta_dims(self, actions: np.ndarray, state: np.ndarray | None) -> np.ndarray:
        where = self.action.where if self.action is not None else "normalisation"
        if state is None:
            raise ValueError(f"{where}: delta actions need the raw state, got none")
        return delta_dims(np.shape(actions)[-1], np.shape(state)[-1], self.absolute_dims, where)

    def actions_to_model(self, actions: np.ndarray, state: np.ndarray | None) -> np.ndarray:
        """(k, Da) raw actions and the (Ds,) raw state q_t → (k, Da) normalised float32 model actions:
        minus the state on the delta dims (``delta`` mode), then normalised. ``state`` may be None
        only in ``absolute`` mode."""
        a = np.asarray(actions, dtype=np.float64)
        if self.action_mode == "delta":
            a = to_delta(a, state, self._delta_dims(a, state))
        return normalize(a, self.action, self.mode)

    def actions_to_raw(self, y: np.ndarray, state: np.ndarray | None) -> np.ndarray:
        """Exact inverse of `actions_to_model`: (k, Da) normalised model actions and the (Ds,) raw
        state → (k, Da) raw float32 actions (the state added back on the delta dims)."""
        a = apply(y, self.action, self.mode, inverse=True)
        if self.action_mode == "delta":
            a = from_delta(a, state, self._delta_dims(a, state))
        return a.astype(np.float32)


class Collator:
    """Callable for ``DataLoader(collate_fn=...)``; picklable for worker processes."""

    def __init__(self, tokenizer, max_text_tokens: int, chunk_size: int, max_dim: int,
                 norms: dict[int, DatasetNorm]) -> None:
        self.tokenizer = tokenizer
        self.max_text_tokens = max_text_tokens
        self.chunk_size = chunk_size
        self.max_dim = max_dim
        self.norms = norms

    def _state(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Normalised, padded (state, state_mask) of one sample; zeros, masked, without a state."""
        D = self.max_dim
        if s.state is None:  # human video
            return np.zeros(D, np.float32), np.zeros(D, bool)
        norm = self.norms[s.dataset_id]
        return pad(normalize(s.state, norm.state, norm.mode), D)

    def _actions(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Normalised, padded (actions, action_dim_mask) of one sample; zeros, masked, without actions
        (human video, a deployed observation)."""
        D, k = self.max_dim, self.chunk_size
        if s.actions is None:
            return np.zeros((k, D), np.float32), np.zeros(D, bool)
        if s.actions.shape[0] != k:
            raise ValueError(f"{s.source}: {s.actions.shape[0]} actions, the model predicts {k}")
        return pad(self.norms[s.dataset_id].actions_to_model(s.actions, s.state), D)

    def observation(self, samples: list[Sample]) -> Observation:
        """The model inputs of ``samples`` (frames t−m and t, prompt, state): all deployment needs;
        `__call__` adds the training targets."""
        tokens, token_mask = tokenize(self.tokenizer, [s.instruction for s in samples], self.max_text_tokens)
        state, state_mask = (torch.from_numpy(np.stack(v)) for v in zip(*(self._state(s) for s in samples)))
        return Observation(
            images=torch.from_numpy(np.stack([s.images[:, :2] for s in samples])),  # (B, V, 2, 3, H, W)
            image_mask=torch.from_numpy(np.stack([s.image_valid[:, :2] for s in samples])),  # (B, V, 2)
            tokens=tokens,
            token_mask=token_mask,
            state=state,
            state_mask=state_mask,
        )

    def __call__(self, samples: list[Sample]) -> Batch:
        actions, action_dim_mask = (torch.from_numpy(np.stack(v)) for v in zip(*(self._actions(s) for s in samples)))
        action_valid = torch.from_numpy(np.stack([
            s.action_valid if s.has_action else np.zeros(self.chunk_size, bool) for s in samples]))
        return Batch(
            observation=self.observation(samples),
            future_images=torch.from_numpy(np.stack([s.images[:, 2] for s in samples])),  # (B, V, 3, H, W)
            future_mask=torch.from_numpy(np.stack([s.image_valid[:, 2] for s in samples])),  # (B, V)
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
