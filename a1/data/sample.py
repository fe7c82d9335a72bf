"""One training sample before batching, and the time windows it is cut from.

A sample at frame t of an episode of ``length`` frames carries, per view, the frames t−m, t and
t+m (paper: m = 15) — indices clamped inside the episode, with a flag saying whether the
frame really exists — the state q_t and the action chunk a_{t:t+k} with a pad mask past the
episode's end. Human video has no state or actions (``has_action`` False).

Frame geometry: every camera frame becomes a square ``image_size``² frame by one rule,
`fit_frames`, shared by training samples, shard conversion and deployment
(`a1.deploy.processor`). ``letterbox`` (the default) keeps the aspect ratio and pads with zeros,
exactly as the InternVLA-A1 code does; ``stretch`` scales each axis on its own. Training stores the
result rounded to uint8 (`resize`); deployment keeps it float32, so the model sees exactly the
values the official pipeline computes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import numpy as np
import torch
import torch.nn.functional as F

Geometry = Literal["stretch", "letterbox"]
"""How a camera frame becomes a square ``size``² frame (see `fit_frames`)."""
GEOMETRIES: tuple[str, ...] = get_args(Geometry)
DEFAULT_GEOMETRY: Geometry = "letterbox"
"""The one default (``DataOptions.geometry``, ``python -m a1.data.convert --geometry``): the released
InternVLA-A1 weights were trained on letterboxed frames, and real robots' cameras are rarely square."""
LEGACY_GEOMETRY: Geometry = "stretch"
"""What an absent ``geometry`` means in what a1 wrote before it recorded the geometry (shard manifests,
checkpoints, policy folders' ``processor``): ``stretch``, the only geometry there was then. Not a
default for anything new (that is `DEFAULT_GEOMETRY`)."""
FRAME_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
"""Frame dtypes of a `Sample` / `a1.batch.Observation`: uint8, or float32 in the same 0–255 scale."""


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
    """(V, 3, 3, H, W): per view, frames t−m, t, t+m (RGB, channels first). uint8 in training;
    float32 in the 0–255 scale at deployment (frames after `fit_frames`, not rounded)."""
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
        if self.images.dtype not in FRAME_DTYPES or self.images.ndim != 5 or self.images.shape[1:3] != (3, 3):
            raise ValueError(f"{self.source}: images must be (V, 3, 3, H, W) uint8 or float32, got "
                             f"{self.images.shape} {self.images.dtype}")
        if self.images.dtype == np.float32:
            check_pixel_range(self.images, 255.0, f"{self.source}: images")
        if self.image_valid.shape != (V, 3):
            raise ValueError(f"{self.source}: image_valid must be ({V}, 3), got {self.image_valid.shape}")
        for name in ("state", "actions"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                raise ValueError(f"{self.source}: {name} contains NaN or inf")
        if self.actions is not None and self.actions.shape[0] != self.action_valid.shape[0]:
            raise ValueError(f"{self.source}: {self.actions.shape[0]} actions but "
                             f"{self.action_valid.shape[0]} action_valid flags")


def check_pixel_range(frames: np.ndarray, top: float, where: str) -> None:
    """Raise ValueError naming ``where`` unless every value of float ``frames`` is finite in [0, top]."""
    lo, hi = (float(frames.min()), float(frames.max())) if frames.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= top):
        raise ValueError(f"{where}: {frames.dtype} pixel values must lie in [0, {top:g}], got min {lo:g}, "
                         f"max {hi:g}")


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) of a ``height`` × ``width`` frame scaled, aspect ratio kept, to fit ``size``²: both
    sides times min(size/height, size/width) in double precision, rounded with Python's ``round``
    (halves to even), as the InternVLA-A1 code does."""
    height, width = int(height), int(width)  # Python numbers: the official arithmetic, not numpy's
    scale = min(size / height, size / width)
    h, w = round(height * scale), round(width * scale)  # Python's round: halves to even
    if h < 1 or w < 1:
        raise ValueError(f"a {height}×{width} frame cannot be letterboxed to {size}²: a side would be 0 pixels")
    return h, w


def letterbox(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) float (0–255) → (N, 3, size, size) float: scaled to `letterbox_size` (bilinear,
    no antialias, half-pixel centres), zero-padded around it — the odd pixel of a padding goes to the
    bottom/right — and clamped to [0, 255]."""
    h, w = letterbox_size(x.shape[-2], x.shape[-1], size)
    scaled = F.interpolate(x, size=(h, w), mode="bilinear", antialias=False, align_corners=False)
    top, left = (size - h) // 2, (size - w) // 2
    out = x.new_zeros((*x.shape[:-2], size, size))
    out[..., top:top + h, left:left + w] = scaled
    return out.clamp_(0.0, 255.0)


def stretch(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) float (0–255) → (N, 3, size, size) float: each axis scaled on its own (bilinear,
    antialiased), clamped to [0, 255]."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 255.0)


def fit_frames(frames: np.ndarray, size: int, geometry: Geometry) -> np.ndarray:
    """(N, 3, H, W) uint8 or float32 (0–255) frames → (N, 3, size, size) float32 in 0–255, not
    rounded (what deployment feeds the model). Frames already ``size``² are returned unchanged (a
    uint8 frame stays uint8). ``geometry``: ``letterbox`` (`letterbox`) or ``stretch`` (`stretch`)."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {list(GEOMETRIES)}, got {geometry!r}")
    if frames.dtype not in FRAME_DTYPES or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (N, 3, H, W) uint8 or float32, got {frames.shape} {frames.dtype}")
    if frames.shape[-2:] == (size, size):
        return frames
    return np.ascontiguousarray((letterbox if geometry == "letterbox" else stretch)(_float_nchw(frames), size).numpy())


def _float_nchw(frames: np.ndarray) -> torch.Tensor:
    """(N, 3, H, W) frames → float32 (N, 3, H, W) tensor laid out channels-last (how cameras give
    frames: no transposing copy, and torch's fast channels-last resampling kernels — ~17× faster on a
    480×640 frame than a channels-first copy, same values)."""
    hwc = np.ascontiguousarray(frames.transpose(0, 2, 3, 1))
    with warnings.catch_warnings():  # read-only arrays (decoded messages): nothing writes into them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(hwc).permute(0, 3, 1, 2).float()


def resize(frames: np.ndarray, size: int, geometry: Geometry) -> np.ndarray:
    """(N, 3, H, W) uint8 → (N, 3, size, size) uint8: `fit_frames` rounded (training samples and
    shards store uint8); a no-op on frames already ``size``²."""
    if frames.dtype != np.uint8:
        raise ValueError(f"resize: expected uint8 frames, got {frames.dtype}")
    out = fit_frames(frames, size, geometry)
    return out if out.dtype == np.uint8 else np.rint(out).astype(np.uint8)


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
    episode: EpisodeData, t: int, views: list[str], m: int, k: int, dataset_id: int, source: str, image_size: int,
    geometry: Geometry = DEFAULT_GEOMETRY,
) -> Sample:
    """Cut the sample at frame t: windows t−m/t/t+m per view (made ``image_size``² by `resize` with
    ``geometry``), state q_t, chunk a_{t:t+k}."""
    idx, in_range = frame_window(t, episode.length, m)
    images = np.zeros((len(views), 3, 3, image_size, image_size), dtype=np.uint8)
    valid = np.zeros((len(views), 3), dtype=bool)
    for v, view in enumerate(views):
        frames = episode.frames(view, idx)
        if frames is None:
            continue
        images[v], valid[v] = resize(frames, image_size, geometry), in_range
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
