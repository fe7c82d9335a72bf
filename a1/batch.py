"""The one observation/batch structure used by data, model, training and deployment.

Shapes use B = batch, V = camera views (head, left wrist, right wrist), T = input frames
(t−m, t), L = instruction tokens, k = action chunk length, D = padded state/action dims (32).

Images are RGB, channels first, in the 0–255 scale: ``uint8`` in training (frames stored rounded)
or ``float32`` at deployment (frames after the letterbox/stretch, not rounded: the model sees the
exact values of the official pipeline); the model converts either with ``.float()``. A view that
a robot does not have, or a frame that does not exist, is marked ``False`` in its mask and its
pixels are ignored (masked out of attention and of the losses).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

IMAGE_DTYPES = (torch.uint8, torch.float32)
"""Dtypes of ``images`` / ``future_images`` (both in the 0–255 scale)."""


def _check(name: str, t: Tensor, dtype: torch.dtype | tuple[torch.dtype, ...], shape: tuple[int | None, ...]) -> None:
    """Raise a ValueError naming ``name`` when ``t`` has the wrong dtype, rank or sizes."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    dtypes = dtype if isinstance(dtype, tuple) else (dtype,)
    if t.dtype not in dtypes:
        raise ValueError(f"{name}: expected dtype {' or '.join(map(str, dtypes))}, got {t.dtype}")
    if t.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")


class _TensorStruct:
    """Shared helpers: move to a device, index a sub-batch."""

    def to(self, device: torch.device | str) -> Any:
        return replace(self, **{f.name: _move(getattr(self, f.name), device) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return getattr(self, fields(self)[0].name).shape[0]


def _move(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, (Tensor, _TensorStruct)):
        return value.to(device)
    return value


@dataclass
class Observation(_TensorStruct):
    """What the policy sees at time t."""

    images: Tensor
    """(B, V, T, 3, H, W) uint8, or float32 in 0–255 (deployment), RGB: every view at frames t−m and t."""
    image_mask: Tensor
    """(B, V, T) bool: the view exists at that frame."""
    tokens: Tensor
    """(B, L) int64: instruction tokens (the model adds image placeholders itself)."""
    token_mask: Tensor
    """(B, L) bool: real (non-padding) instruction tokens."""
    state: Tensor
    """(B, D) float32: normalised proprioceptive state q_t, zero-padded to D dims."""
    state_mask: Tensor
    """(B, D) bool: real state dims."""

    def validate(self, num_views: int, max_dim: int) -> None:
        """Check dtypes and shapes; raise ValueError naming the offending field."""
        B = self.images.shape[0] if isinstance(self.images, Tensor) else None
        _check("images", self.images, IMAGE_DTYPES, (B, num_views, None, 3, None, None))
        T = self.images.shape[2]
        _check("image_mask", self.image_mask, torch.bool, (B, num_views, T))
        _check("tokens", self.tokens, torch.int64, (B, None))
        _check("token_mask", self.token_mask, torch.bool, (B, self.tokens.shape[1]))
        _check("state", self.state, torch.float32, (B, max_dim))
        _check("state_mask", self.state_mask, torch.bool, (B, max_dim))
        if not torch.isfinite(self.state).all():
            raise ValueError("state: contains NaN or inf")


@dataclass
class Batch(_TensorStruct):
    """A training batch: the observation plus the targets of both losses."""

    observation: Observation
    """The inputs."""
    future_images: Tensor
    """(B, V, 3, H, W), the dtype of ``observation.images``: every view at frame t+m (target of the
    generation expert)."""
    future_mask: Tensor
    """(B, V) bool: that future view exists (False past the episode end or for absent views)."""
    actions: Tensor
    """(B, k, D) float32: normalised action chunk a_{t:t+k}, zero-padded to D dims."""
    action_mask: Tensor
    """(B, k) bool: chunk steps inside the episode (False past its end)."""
    action_dim_mask: Tensor
    """(B, D) bool: real action dims."""
    has_action: Tensor
    """(B,) bool: the sample carries actions (False for human video: L_gen only)."""
    dataset_id: Tensor
    """(B,) int64: index of the source dataset / embodiment."""
    skipped: Tensor | None = None
    """(num_datasets,) int64, or None: bad samples per dataset (index = ``dataset_id``) the data
    workers skipped while producing this batch — not per sample; summed into the training metrics."""

    @property
    def batch_size(self) -> int:
        return self.observation.batch_size

    def validate(self, num_views: int, chunk_size: int, max_dim: int) -> None:
        """Check dtypes and shapes of every field; raise ValueError naming the field."""
        self.observation.validate(num_views, max_dim)
        B = self.batch_size
        H, W = self.observation.images.shape[-2:]
        _check("future_images", self.future_images, self.observation.images.dtype, (B, num_views, 3, H, W))
        _check("future_mask", self.future_mask, torch.bool, (B, num_views))
        _check("actions", self.actions, torch.float32, (B, chunk_size, max_dim))
        _check("action_mask", self.action_mask, torch.bool, (B, chunk_size))
        _check("action_dim_mask", self.action_dim_mask, torch.bool, (B, max_dim))
        _check("has_action", self.has_action, torch.bool, (B,))
        _check("dataset_id", self.dataset_id, torch.int64, (B,))
        if self.skipped is not None:
            _check("skipped", self.skipped, torch.int64, (None,))
        if not torch.isfinite(self.actions).all():
            raise ValueError("actions: contains NaN or inf")
