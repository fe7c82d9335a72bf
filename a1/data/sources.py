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
from a1.data.normalize import Mode
from a1.data.video import decode_frames, video_info

DEFAULT_CAMERAS = {
    "head": "observation.images.head",
    "left_wrist": "observation.images.left_wrist",
    "right_wrist": "observation.images.right_wrist",
}


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
    cameras: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_CAMERAS))
    """Model view → camera key of the dataset (``null``: the robot has no such camera)."""
    state_key: str = "observation.state"
    """Column holding the proprioceptive state."""
    action_key: str = "action"
    """Column holding the actions."""
    normalization: Mode = "mean_std"
    """How state and actions are normalised: ``mean_std``, ``quantile`` (q01/q99 → ±1) or ``none``."""


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


class LeRobotSource:
    """A LeRobot folder as episodes; checks the camera mapping against the dataset."""

    def __init__(self, cfg: DatasetConfig, views: list[str]) -> None:
        if cfg.path is None:
            raise ValueError(f"dataset {cfg.name!r}: 'path' is required for kind=lerobot")
        self.cfg = cfg
        self.reader = LeRobotReader(cfg.path)
        unknown = [v for v in cfg.cameras if v not in views]
        if unknown:
            raise ValueError(f"dataset {cfg.name!r}: cameras name unknown views {unknown}; views are {views}")
        for view, key in cfg.cameras.items():
            if key is not None and key not in self.reader.camera_keys:
                raise KeyError(f"dataset {cfg.name!r} ({cfg.path}): unknown camera key {key!r} for view "
                               f"{view!r}; available: {sorted(self.reader.camera_keys)}")
        for key in (cfg.state_key, cfg.action_key):
            if key not in self.reader.features:
                raise KeyError(f"dataset {cfg.name!r} ({cfg.path}): no feature {key!r} in meta/info.json")
        self.episodes = [LeRobotEpisode(self.reader, ep, cfg.cameras, cfg.state_key, cfg.action_key)
                         for ep in self.reader.episodes]


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

    def __init__(self, cfg: DatasetConfig) -> None:
        if cfg.path is None:
            raise ValueError(f"dataset {cfg.name!r}: 'path' is required for kind=human_video")
        root = Path(cfg.path)
        index = root / "annotations.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"dataset {cfg.name!r}: {index} not found")
        self.cfg = cfg
        self.episodes = [self._clip(root, index, n, line) for n, line in enumerate(index.read_text().splitlines(), 1)
                         if line.strip()]

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
        return HumanVideoSource(cfg)
    raise ValueError(f"dataset {cfg.name!r}: unknown kind {cfg.kind!r}")
