"""Datasets as lists of episodes: LeRobot folders (v3.0 / v2.1) and action-free human video.

Each source exposes ``episodes`` — objects implementing :class:`a1.data.sample.EpisodeData` —
from which :func:`a1.data.sample.make_sample` cuts training samples. Which camera feeds which
of the model's views (head, left wrist, right wrist) and which columns hold state and action is
configured per dataset; a view mapped to ``null`` is a missing view (masked in the model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from a1.data.lerobot import Episode, LeRobotReader
from a1.data.normalize import ACTION_MODES, ActionMode, Mode, delta_dims
from a1.data.video import decode_frames, video_info

CAMERA_PREFIX = "observation.images."
HUMAN_CAMERA = "clip"
"""What the head view of human video reads (its clips), in ``cameras`` maps and manifests."""


@dataclass
class DatasetConfig:
    """One dataset of the training mixture."""

    name: str
    """Unique name (also the key of its statistics and logs)."""
    weight: float
    """Sampling weight in the mixture (normalised over all datasets)."""
    frames: int | None = None
    """Size proxy for balancing datasets over workers (paper §3.4); ``None``: counted on disk."""
    kind: Literal["lerobot", "human_video"] = "lerobot"
    """``lerobot`` (a LeRobot v3.0/v2.1 folder) or ``human_video`` (mp4 clips + annotations.jsonl)."""
    path: str | None = None
    """Folder of the dataset (LeRobot root, or the human-video folder)."""
    shards: str | None = None
    """Folder of webdataset shards made by ``python -m a1.data.convert`` (read instead of ``path``)."""
    cameras: dict[str, str | None] | None = None
    """Model view → camera key of the dataset (``null``: the robot has no such camera, the view is
    masked). Unset: every model view V reads the camera ``observation.images.V``."""
    state_key: str = "observation.state"
    """Column holding the proprioceptive state."""
    action_key: str = "action"
    """Column holding the actions."""
    normalization: Mode = "mean_std"
    """How state and actions are normalised: ``mean_std`` ((x − mean)/std, a dim with std ≈ 0 only
    centred), ``mean_std_eps`` (the official InternVLA-A1 rule, (x − mean)/(std + 1e-6)),
    ``quantile`` (q01/q99 → ±1; needs statistics with percentiles) or ``none``."""
    action_mode: ActionMode = "absolute"
    """``absolute``: the model predicts the action columns as they are. ``delta``: it predicts
    action − state (the state at the chunk's first frame) on every action dim not in
    ``absolute_dims``, with statistics computed on those deltas; the state is added back at
    inference. The official InternVLA-A1 pre-training and RoboTwin runs use ``delta``. Needs a state
    covering every delta dim. Ignored by human video (no actions)."""
    absolute_dims: list[int] = field(default_factory=list)
    """Action dims (0-based) that stay absolute in ``delta`` mode, e.g. the grippers ``[6, 13]`` of
    an ALOHA-style 14-dim arm; distinct and inside the action dims."""
    stats: str | None = None
    """Statistics file written by ``python -m a1.data.stats`` (with this dataset's action_mode,
    absolute_dims and, for delta, the chunk size); unset: looked up in a1's cache, then LeRobot's
    ``meta/stats.json`` (absolute actions only), else computed (and cached)."""

    def __post_init__(self) -> None:
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"dataset {self.name!r}: action_mode must be one of {list(ACTION_MODES)}, "
                             f"got {self.action_mode!r}")
        dims = self.absolute_dims
        if not isinstance(dims, (list, tuple)) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0
                                                      for d in dims):
            raise ValueError(f"dataset {self.name!r}: absolute_dims must be a list of action dims (integers "
                             f">= 0), got {dims!r}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"dataset {self.name!r}: absolute_dims {list(dims)} name a dim twice")
        self.absolute_dims = list(dims)

    def check_action_dims(self, state_dim: int | None, action_dim: int | None, where: str) -> None:
        """In ``delta`` mode, ``absolute_dims`` must be action dims and the state must cover every
        delta dim (a dataset with actions but no state is an error); names the dataset and
        ``where``. Without actions (human video) there is nothing to check."""
        if self.action_mode == "delta" and action_dim is not None:
            delta_dims(action_dim, state_dim, self.absolute_dims, f"dataset {self.name!r} ({where})")

    def camera_map(self, views: list[str]) -> dict[str, str | None]:
        """The effective view → camera key mapping for the model's ``views``."""
        if self.cameras is None:
            return {v: CAMERA_PREFIX + v for v in views}
        return dict(self.cameras)


@dataclass
class LeRobotEpisode:
    """One episode of a LeRobot folder, read lazily."""

    reader: LeRobotReader
    episode: Episode
    cameras: dict[str, str | None]
    state_key: str
    action_key: str

    @property
    def length(self) -> int:
        return self.episode.length

    def instruction(self, t: int) -> str:
        return self.reader.instruction(self.episode, t)

    @cached_property
    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        cols = self.reader.columns(self.episode, [self.state_key, self.action_key])
        return cols[self.state_key], cols[self.action_key]

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return self._vectors

    def frames(self, view: str, indices: np.ndarray) -> np.ndarray | None:
        key = self.cameras.get(view)
        return None if key is None else self.reader.images(key, self.episode, indices)


class ViewError(ValueError):
    """A dataset's cameras do not give the model its views; the message names the dataset and the fix."""


VIEW_HINTS = {"head": ("head", "high", "top", "front", "ego", "center"), "left_wrist": ("left",),
               "right_wrist": ("right",)}


def suggest_cameras(views: list[str], keys: list[str]) -> dict[str, str | None]:
    """A view → camera mapping guessed from camera names, for error messages only (never applied):
    one matching camera → it; none → ``None``; several → ``<a|b>``."""
    out: dict[str, str | None] = {}
    for v in views:
        hits = [k for k in keys if any(h in k.lower() for h in VIEW_HINTS.get(v, (v,)))]
        out[v] = hits[0] if len(hits) == 1 else (None if not hits else "<" + "|".join(hits) + ">")
    return out


def _suggest(views: list[str], keys: list[str]) -> str:
    """The guess as a YAML ``cameras:`` mapping."""
    return "{" + ", ".join(f"{v}: {k or 'null'}" for v, k in suggest_cameras(views, keys).items()) + "}"


def check_cameras(cfg: DatasetConfig, views: list[str], available: list[str], where: str) -> dict[str, str | None]:
    """The effective view → camera mapping of ``cfg``, checked against the cameras it ``available``-s.

    Every model view must map to one of the dataset's cameras, or explicitly to ``null`` (the
    robot has no such camera); at least one view must be real. Anything else would train blind
    (a view silently masked in every batch), so it is an error naming the dataset, its cameras
    and the mapping to write.
    """
    mapping = cfg.camera_map(views)
    unknown = [v for v in mapping if v not in views]
    unmapped = [v for v in views if v not in mapping]
    missing = {v: k for v, k in mapping.items() if v in views and k is not None and k not in available}
    fix = (f"Map each model view to one of its cameras (null: the robot has no such camera) in the dataset "
           f"entry, e.g. cameras: {_suggest(views, available)} — or with python -m a1.data.convert "
           f"--cameras VIEW=KEY,...")
    if unknown:
        raise ViewError(f"dataset {cfg.name!r} ({where}): cameras name views {unknown} that the model does not "
                        f"have; the model's views are {views}")
    if unmapped:
        raise ViewError(f"dataset {cfg.name!r} ({where}): views {unmapped} are not mapped to a camera. {fix}")
    if missing:
        said = ", ".join(f"{v} → {k}" for v, k in missing.items())
        raise ViewError(f"dataset {cfg.name!r} ({where}) has no camera for {said}; its cameras are "
                        f"{available}. {fix}")
    if all(mapping[v] is None for v in views):
        raise ViewError(f"dataset {cfg.name!r} ({where}): every view maps to null — it has no image at all. {fix}")
    return {v: mapping[v] for v in views}


def check_shard_views(cfg: DatasetConfig, views: list[str], manifest: dict, where: str) -> dict[str, str | None]:
    """View → source camera of a shard set (``manifest.json`` of ``python -m a1.data.convert``).

    The camera mapping was fixed at conversion: a ``cameras`` entry in the config must repeat it
    (or be left out), and every model view must be in the shards or have been mapped to null.
    """
    recorded = list(manifest.get("views") or [])
    cameras = dict(manifest.get("cameras") or {})
    if cfg.cameras is not None and dict(cfg.cameras) != cameras:
        raise ViewError(f"dataset {cfg.name!r} ({where}): its shards were converted with cameras {cameras}, the "
                        f"config says {dict(cfg.cameras)}; remove 'cameras' from the entry or re-convert the "
                        f"shards with python -m a1.data.convert --cameras ... --overwrite")
    human = manifest.get("kind") in ("human", "human_video")
    lost = [v for v in views if v not in recorded and not (human or (v in cameras and cameras[v] is None))]
    if lost or not any(v in recorded for v in views):
        raise ViewError(f"dataset {cfg.name!r} ({where}): the shards hold views {recorded}, the model's views are "
                        f"{views} ({lost or views} missing). Re-convert with python -m a1.data.convert SRC OUT "
                        f"--cameras {','.join(v + '=<camera key or null>' for v in views)} --overwrite")
    return {v: (cameras.get(v, v) if v in recorded else None) for v in views}


class LeRobotSource:
    """A LeRobot folder as episodes; checks the camera mapping against the dataset."""

    def __init__(self, cfg: DatasetConfig, views: list[str]) -> None:
        if cfg.path is None:
            raise ValueError(f"dataset {cfg.name!r}: 'path' is required for kind=lerobot")
        self.cfg = cfg
        self.reader = LeRobotReader(cfg.path)
        self.cameras = check_cameras(cfg, views, list(self.reader.camera_keys), str(cfg.path))
        for key in (cfg.state_key, cfg.action_key):
            if key not in self.reader.features:
                raise KeyError(f"dataset {cfg.name!r} ({cfg.path}): no feature {key!r} in meta/info.json "
                               f"(features: {sorted(self.reader.features)}); set state_key / action_key")
        self.episodes = [LeRobotEpisode(self.reader, ep, self.cameras, cfg.state_key, cfg.action_key)
                         for ep in self.reader.episodes]

    def dims(self) -> tuple[int, int]:
        """(state dims, action dims) from meta/info.json."""
        return tuple(int(np.prod(self.reader.features[k].get("shape") or [1]))
                     for k in (self.cfg.state_key, self.cfg.action_key))


@dataclass
class HumanClip:
    """One action-free clip: a single egocentric view, fed to the head view."""

    path: Path
    text: str
    fps: float
    length: int

    def instruction(self, t: int) -> str:
        return self.text

    def vectors(self) -> None:
        return None

    def frames(self, view: str, indices: np.ndarray) -> np.ndarray | None:
        if view != "head":
            return None
        frames = decode_frames(self.path, [float(i) / self.fps for i in indices])  # (N, H, W, 3)
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


class HumanVideoSource:
    """An EgoDex-style folder: ``annotations.jsonl`` lines {"clip", "instruction", "fps", "frames"}."""

    def __init__(self, cfg: DatasetConfig, views: list[str]) -> None:
        if cfg.path is None:
            raise ValueError(f"dataset {cfg.name!r}: 'path' is required for kind=human_video")
        root = Path(cfg.path)
        index = root / "annotations.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"dataset {cfg.name!r}: {index} not found")
        if "head" not in views:
            raise ViewError(f"dataset {cfg.name!r} ({cfg.path}): human video feeds the 'head' view, which the "
                            f"model (views {views}) does not have")
        if cfg.cameras is not None:
            raise ViewError(f"dataset {cfg.name!r} ({cfg.path}): human video has one egocentric camera (the "
                            f"'head' view); remove its 'cameras' mapping")
        self.cfg = cfg
        self.cameras = {v: (HUMAN_CAMERA if v == "head" else None) for v in views}
        self.episodes = [self._clip(root, index, n, line) for n, line in enumerate(index.read_text().splitlines(), 1)
                         if line.strip()]

    def dims(self) -> tuple[None, None]:
        """Human video has no state or actions."""
        return None, None

    @staticmethod
    def _clip(root: Path, index: Path, lineno: int, line: str) -> HumanClip:
        try:
            entry = json.loads(line)
            path = root / entry["clip"]
            text, fps = str(entry["instruction"]), float(entry["fps"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{index}:{lineno}: bad annotation ({err!r}); need clip, instruction, fps") from err
        frames = entry.get("frames")
        if frames is None:
            frames = video_info(path)[0]
        return HumanClip(path, text, fps, int(frames))


def open_source(cfg: DatasetConfig, views: list[str]) -> LeRobotSource | HumanVideoSource:
    """The folder-backed source of one dataset."""
    if cfg.kind == "lerobot":
        return LeRobotSource(cfg, views)
    if cfg.kind == "human_video":
        return HumanVideoSource(cfg, views)
    raise ValueError(f"dataset {cfg.name!r}: unknown kind {cfg.kind!r}")
