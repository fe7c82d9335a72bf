"""One training sample before batching, and the time windows it is cut from.

A sample at frame t of an episode of ``length`` frames carries, per view, the frames t−m, t and
t+m (paper: m = 15) — indices clamped inside the episode, with a flag saying whether the
frame really exists — the state q_t and the action chunk a_{t:t+k} with a pad mask past the
episode's end. Human video has no state or actions (``has_action`` False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F


def frame_window(t: int, length: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (3,) of frames t−m, t, t+m clamped into [0, length), and (3,) bool "in range"."""
    _check_t(t, length)
    want = np.array([t - m, t, t + m])
    return np.clip(want, 0, length - 1), (want >= 0) & (want < length)


def chunk_window(t: int, length: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (k,) of steps t … t+k−1 clamped into the episode, and (k,) bool "inside"."""
    _check_t(t, length)
    want = t + np.arange(k)
    return np.minimum(want, length - 1), want < length


def _check_t(t: int, length: int) -> None:
    if not 0 <= t < length:
        raise IndexError(f"frame {t} outside an episode of {length} frames")


@dataclass
class Sample:
    """One unbatched training sample (numpy arrays; V views, k chunk steps)."""

    instruction: str
    """The language instruction."""
    images: np.ndarray
    """(V, 3, 3, H, W) uint8: per view, frames t−m, t, t+m (RGB, channels first)."""
    image_valid: np.ndarray
    """(V, 3) bool: the view exists and the frame lies inside the episode."""
    state: np.ndarray | None
    """(Ds,) float32 raw state q_t, or None for human video."""
    actions: np.ndarray | None
    """(k, Da) float32 raw actions a_{t:t+k}, or None for human video."""
    action_valid: np.ndarray
    """(k,) bool: the chunk step lies inside the episode (all False without actions)."""
    dataset_id: int
    """Index of the source dataset in the mixture."""
    source: str = ""
    """Where it came from (dataset/episode/frame), for error messages and logs."""
    skipped: np.ndarray | None = None
    """(num_datasets,) int64: bad samples per dataset the stream skipped since its previous sample
    (set by the stream, summed into ``Batch.skipped``); None when the source does not count."""

    @property
    def has_action(self) -> bool:
        return self.actions is not None

    def validate(self) -> None:
        """Raise ValueError naming ``source`` and the field on NaN/inf or inconsistent shapes."""
        V = self.images.shape[0]
        if self.images.dtype != np.uint8 or self.images.ndim != 5 or self.images.shape[1:3] != (3, 3):
            raise ValueError(f"{self.source}: images must be (V, 3, 3, H, W) uint8, got "
                             f"{self.images.shape} {self.images.dtype}")
        if self.image_valid.shape != (V, 3):
            raise ValueError(f"{self.source}: image_valid must be ({V}, 3), got {self.image_valid.shape}")
        for name in ("state", "actions"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                raise ValueError(f"{self.source}: {name} contains NaN or inf")
        if self.actions is not None and self.actions.shape[0] != self.action_valid.shape[0]:
            raise ValueError(f"{self.source}: {self.actions.shape[0]} actions but "
                             f"{self.action_valid.shape[0]} action_valid flags")


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, 3, H, W) uint8 → (N, 3, size, size) uint8 (bilinear, antialiased); no-op at size."""
    if frames.shape[-2:] == (size, size):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


class EpisodeData(Protocol):
    """What a sample is cut from: one episode, however it is stored (folder, shard, video)."""

    length: int
    """Number of frames."""

    def instruction(self, t: int) -> str:
        """The language instruction at frame t."""

    def vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(length, Ds) float32 states and (length, Da) float32 actions, or None (human video)."""

    def frames(self, view: str, indices: np.ndarray) -> np.ndarray | None:
        """(N, 3, H, W) uint8 frames of ``view`` at ``indices``, or None when the view is absent."""


def make_sample(
    episode: EpisodeData, t: int, views: list[str], m: int, k: int, dataset_id: int, source: str, image_size: int
) -> Sample:
    """Cut the sample at frame t: windows t−m/t/t+m per view (resized to ``image_size``²),
    state q_t, chunk a_{t:t+k}."""
    idx, in_range = frame_window(t, episode.length, m)
    images = np.zeros((len(views), 3, 3, image_size, image_size), dtype=np.uint8)
    valid = np.zeros((len(views), 3), dtype=bool)
    for v, view in enumerate(views):
        frames = episode.frames(view, idx)
        if frames is None:
            continue
        images[v], valid[v] = resize(frames, image_size), in_range
    vectors = episode.vectors()
    state = actions = None
    action_valid = np.zeros(k, dtype=bool)
    if vectors is not None:
        states, all_actions = vectors
        steps, action_valid = chunk_window(t, episode.length, k)
        state, actions = states[t].astype(np.float32), all_actions[steps].astype(np.float32)
    sample = Sample(episode.instruction(t), images, valid, state, actions, action_valid, dataset_id, source)
    sample.validate()
    return sample
