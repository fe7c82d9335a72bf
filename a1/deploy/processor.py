"""Raw robot observation ⇄ the model's `Observation`, and the model's chunk → raw robot actions.

A raw observation is what a robot (or an openpi client) has at time t::

    {"images": {view: frame}, "state": (D,) float, "prompt": str}

keyed by the policy's view names (a robot config maps its camera names onto them). A frame is
RGB, (H, W, 3) or (3, H, W), of any size: frame t — uint8 (0–255, what cameras give), or float
(float16/32/64) in [0, 1] (LeRobot's and torchvision's convention for float images; a float value
outside [0, 1], NaN or inf is refused, naming the view: 0–255 values must come as uint8, so a frame
in the wrong scale is an error, never a silently dark or saturated image). Both input frames of
the generation expert may be given stacked as (2, H, W, 3) / (2, 3, H, W): t−m, then t. With frame t alone,
the t−m slot is handled as in training at an episode's start (t < m): it holds the earliest frame
there is — here frame t — and is masked. `a1.deploy.runtime` keeps a per-camera history and
passes both frames.

Nothing here re-implements the training data path: the raw observation becomes an
`a1.data.sample.Sample` (frames made square by the training rule, `a1.data.sample.fit_frames`,
with the run's ``image_size`` and ``geometry``; kept float32 in the 0–255 scale, not rounded to
uint8 as training shards are, so the model sees exactly the official pipeline's values), and
the training `a1.data.collate.Collator` tokenises the prompt, normalises the state with the named
dataset's statistics and pads it to ``max_dim`` dims with a mask. The t+m slot of that sample is
empty and masked, as past an episode's end in training. Actions go back through the inverse
normalisation and are cut to the robot's dims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from a1.batch import Observation
from a1.data.collate import Collator, DatasetNorm
from a1.data.sample import GEOMETRIES, LEGACY_GEOMETRY, Geometry, Sample, check_pixel_range, fit_frames
from a1.model.config import PolicyConfig


@dataclass
class ProcessorSettings:
    """The training data settings a raw observation must go through (``data.options`` of the run)."""

    image_size: int
    """Side of the square frames of a training batch (``data.options.image_size``)."""
    history: int
    """m: frames between t−m and t (``data.options.history``; paper: 15)."""
    geometry: Geometry = LEGACY_GEOMETRY
    """How frames became ``image_size``² squares in training (``data.options.geometry``). Training
    always records it; absent only in checkpoints and policy folders written before a1 recorded it,
    which were all trained on stretched frames — hence this default."""

    def __post_init__(self) -> None:
        for name in ("image_size", "history"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"processor.{name} must be an integer >= 1, got {value!r}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"processor.geometry must be one of {list(GEOMETRIES)}, got {self.geometry!r}")


class ObservationError(ValueError):
    """A raw observation is malformed; the message names the key and what was expected."""


@dataclass
class RawObservation:
    """A checked raw observation, channels first."""

    frames: dict[str, np.ndarray]
    """Per view with a camera: (2, 3, H, W) uint8 or float32 (0–255), frames t−m and t."""
    valid: dict[str, np.ndarray]
    """Per view: (2,) bool, the frame exists (False for t−m at an episode's start)."""
    state: np.ndarray
    """(D_state,) float32 raw state."""
    prompt: str
    """The instruction."""


def pixels(frame: np.ndarray, where: str) -> np.ndarray:
    """A raw frame's values: uint8 as it is; float in [0, 1] → float32 × 255 (the 0–255 scale of the
    model's frames); any other dtype or a float value outside [0, 1]: `ObservationError`."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype.kind != "f":
        raise ObservationError(f"{where}: expected dtype uint8 (RGB 0–255) or float in [0, 1], got {frame.dtype}")
    try:
        check_pixel_range(frame, 1.0, where)
    except ValueError as err:
        raise ObservationError(f"{err} (float frames are RGB in [0, 1]; send 0–255 frames as uint8)") from None
    return frame.astype(np.float32) * np.float32(255.0)


def channels_first(frame: object, where: str) -> np.ndarray:
    """One RGB frame (H, W, 3) or (3, H, W), uint8 or float in [0, 1] → (3, H, W) uint8 or float32
    in 0–255 (`pixels`); anything else: `ObservationError`."""
    if not isinstance(frame, np.ndarray):
        raise ObservationError(f"{where}: expected a numpy array (uint8, or float in [0, 1]), got "
                               f"{type(frame).__name__}")
    frame = pixels(frame, where)
    if frame.ndim == 3 and frame.shape[0] == 3 and frame.shape[-1] != 3:
        return frame
    if frame.ndim == 3 and frame.shape[-1] == 3:
        return frame.transpose(2, 0, 1)
    raise ObservationError(f"{where}: expected an RGB frame (H, W, 3) or (3, H, W), got shape {frame.shape}")


def split_frames(value: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A camera's value → ((2, 3, H, W) frames t−m and t, (2,) validity): a single frame t, or two
    stacked on a first axis of 2. With frame t alone, the t−m slot repeats it, masked."""
    if isinstance(value, np.ndarray) and value.ndim == 4:
        if value.shape[0] != 2:
            raise ObservationError(f"{where}: stacked frames must be (2, H, W, 3) or (2, 3, H, W) (t−m, t), "
                                   f"got shape {value.shape}")
        past, now = (channels_first(value[i], f"{where}[{i}]") for i in (0, 1))
        if past.shape != now.shape:
            raise ObservationError(f"{where}: frames t−m and t differ in size: {past.shape} vs {now.shape}")
        return np.stack([past, now]), np.array([True, True])
    now = channels_first(value, where)
    return np.stack([now, now]), np.array([False, True])


def absent_views(policy_views: list[str], cameras: Mapping[str, str | None]) -> tuple[str, ...]:
    """The policy's views no camera maps to (masked in the model, as in training)."""
    fed = {view for view in cameras.values() if view is not None}
    return tuple(view for view in policy_views if view not in fed)


class Processor:
    """One embodiment's processor: raw observation → `Observation` (batch of 1) → raw actions."""

    def __init__(self, config: PolicyConfig, settings: ProcessorSettings, tokenizer, norm: DatasetNorm,
                 name: str, absent_views: tuple[str, ...] = ()) -> None:
        """
        Args:
            config: the policy's config (views, chunk length, padded dims, prompt length).
            settings: the training frame size and m.
            tokenizer: the policy's tokenizer.
            norm: the statistics of the embodiment (dataset) whose actions to produce.
            name: that normalisation's name (for messages).
            absent_views: views this robot has no camera for (masked, as in training).
        """
        unknown = sorted(set(absent_views) - set(config.views))
        if unknown:
            raise ValueError(f"absent views {unknown} are not policy views {config.views}")
        if norm.mode != "none" and (norm.state is None or norm.action is None):
            raise ValueError(f"normalisation {name!r} has no {'state' if norm.state is None else 'action'} "
                             "statistics (a human-video dataset?): it cannot drive a robot")
        self.config, self.settings, self.norm, self.name = config, settings, norm, name
        self.views = list(config.views)
        self.absent = set(absent_views)
        self.collator = Collator(tokenizer, config.understanding.max_text_tokens, config.action.chunk_size,
                                 config.action.max_dim, {0: norm})

    @property
    def state_dim(self) -> int | None:
        """Raw state dims (None: any, for ``mode: none`` without statistics)."""
        return self.norm.state.dims if self.norm.state is not None else None

    @property
    def action_dim(self) -> int:
        """Raw action dims of this embodiment."""
        if self.norm.action is not None:
            return self.norm.action.dims
        return self.state_dim or self.config.action.max_dim

    def parse(self, raw: Mapping) -> RawObservation:
        """Check a raw observation (see the module docstring); errors name the key."""
        if not isinstance(raw, Mapping):
            raise ObservationError(f"observation: expected a map with 'images', 'state', 'prompt', got "
                                   f"{type(raw).__name__}")
        for key in ("images", "state", "prompt"):
            if key not in raw:
                raise ObservationError(f"observation: missing key {key!r} (have {sorted(map(str, raw))})")
        images = raw["images"]
        if not isinstance(images, Mapping):
            raise ObservationError(f"images: expected a map of view → frame, got {type(images).__name__}")
        unknown = sorted(set(images) - set(self.views))
        if unknown:
            raise ObservationError(f"images: unknown view(s) {unknown}; the policy's views are {self.views}")
        frames, valid = {}, {}
        for view in self.views:
            if view in self.absent:
                continue
            if view not in images:
                raise ObservationError(f"images: missing view {view!r} (have {sorted(images)})")
            frames[view], valid[view] = split_frames(images[view], f"images[{view!r}]")
        if not isinstance(raw["prompt"], str):
            raise ObservationError(f"prompt: expected a string, got {type(raw['prompt']).__name__}")
        return RawObservation(frames, valid, self.check_state(raw["state"]), raw["prompt"])

    def check_state(self, state: object) -> np.ndarray:
        """(D,) finite numbers of this embodiment's state dims → float32."""
        if not isinstance(state, (np.ndarray, list, tuple)):
            raise ObservationError(f"state: expected a (D,) array, got {type(state).__name__}")
        arr = np.asarray(state)
        if arr.dtype.kind not in "fiu" or arr.ndim != 1:
            raise ObservationError(f"state: expected a (D,) float array, got shape {arr.shape} dtype {arr.dtype}")
        want = self.state_dim
        if want is not None and arr.shape[0] != want:
            raise ObservationError(f"state: expected {want} dims (normalisation {self.name!r}), got {arr.shape[0]}")
        if arr.shape[0] > self.config.action.max_dim:
            raise ObservationError(f"state: {arr.shape[0]} dims, more than the model's {self.config.action.max_dim}")
        if not np.isfinite(arr).all():
            raise ObservationError(f"state: contains NaN or inf at dim {int(np.flatnonzero(~np.isfinite(arr))[0])}")
        return arr.astype(np.float32)

    def resize(self, frames: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) uint8 or float32 (0–255) → (N, 3, S, S) float32 in 0–255, not rounded: the
        training geometry at the training frame size (`fit_frames`); frames already S² are returned
        as they are (uint8 stays uint8)."""
        return fit_frames(frames, self.settings.image_size, self.settings.geometry)

    def sample(self, raw: RawObservation) -> Sample:
        """The training-path `Sample` of a raw observation (t+m slot empty and masked). Its frames are
        float32 in 0–255 whatever the cameras' dtype and size: one dtype for the compiled model."""
        S, k = self.settings.image_size, self.config.action.chunk_size
        images = np.zeros((len(self.views), 3, 3, S, S), dtype=np.float32)
        valid = np.zeros((len(self.views), 3), dtype=bool)
        for v, view in enumerate(self.views):
            if view in raw.frames:
                images[v, :2] = self.resize(raw.frames[view])
                valid[v, :2] = raw.valid[view]
        sample = Sample(raw.prompt, images, valid, raw.state, None, np.zeros(k, dtype=bool), 0, "observation")
        sample.validate()
        return sample

    def observation(self, raw: Mapping | RawObservation) -> Observation:
        """A raw observation → the model's `Observation` with batch size 1 (CPU tensors)."""
        if not isinstance(raw, RawObservation):
            raw = self.parse(raw)
        return self.collator.observation([self.sample(raw)])

    def check_noise(self, noise: Tensor | np.ndarray) -> Tensor:
        """(k, max_dim) or (1, k, max_dim) initial noise → (1, k, max_dim) float32 tensor."""
        want = (self.config.action.chunk_size, self.config.action.max_dim)
        t = torch.as_tensor(np.asarray(noise) if not isinstance(noise, Tensor) else noise)
        if t.ndim == 3 and t.shape[0] == 1:
            t = t[0]
        if tuple(t.shape) != want or not t.is_floating_point():
            raise ValueError(f"noise: expected a float (k, max_dim) = {want} array, got {tuple(t.shape)} {t.dtype}")
        return t.float()[None]

    def raw_actions(self, chunk: Tensor | np.ndarray, state: np.ndarray) -> np.ndarray:
        """(k, max_dim) or (1, k, max_dim) normalised, padded actions and the observation's raw (D,)
        state → (k, action_dim) raw float32 (delta actions get the state added back:
        `DatasetNorm.actions_to_raw`)."""
        if isinstance(chunk, Tensor):
            chunk = chunk.detach().float().cpu().numpy()
        chunk = np.asarray(chunk)
        if chunk.ndim == 3:
            if chunk.shape[0] != 1:
                raise ValueError(f"raw_actions: one chunk at a time, got a batch of {chunk.shape[0]}")
            chunk = chunk[0]
        return self.norm.actions_to_raw(chunk[:, : self.action_dim], state)
