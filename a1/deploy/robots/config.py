"""A robot's description: joints, limits, cameras → a1 views, control rate (``deploy/robots/*.yaml``).

One YAML file per robot holds every number a lab must check against its own unit; the adapter
code holds none. Loading is strict: an unknown key, a list whose length is not one per joint, a
lower limit above its upper limit, a non-finite number or a camera mapped to a view a1 does not
have is a `ConfigError` naming the file and the key — a robot never runs on a half-read config.

    >>> cfg = load_robot_config("sim_aloha")            # deploy/robots/sim_aloha.yaml
    >>> cfg.dims, cfg.views["head"]
    (14, 'cam_high')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a1.config import ConfigError, from_dict, load_yaml

VIEWS = ("head", "left_wrist", "right_wrist")
"""The policy's view names a camera can be mapped to."""

ADAPTERS = ("sim", "genie1", "arx_lift2", "arx_ac_one", "aloha")
"""Adapter names a config can select (`a1.deploy.robots.make_robot`)."""

SEARCH = Path("deploy") / "robots"
"""Where robot names are looked up, relative to the working directory (scripts run from the repo root)."""

_REPO_SEARCH = Path(__file__).resolve().parents[3] / "deploy" / "robots"


@dataclass(kw_only=True)
class RobotConfig:
    """One robot: what it observes, how it is commanded and the limits every command must respect.

    Joint values are absolute, in the units of the robot's SDK (radians for revolute joints; each
    gripper in the range of its ``lower``/``upper`` entries). The state a robot reports and the
    action it accepts have the same ``D = len(joints)`` dims in the same order.
    """

    name: str
    """Robot name, e.g. ``aloha``; shown in messages."""
    adapter: str
    """Which adapter class drives it: ``sim``, ``genie1``, ``arx_lift2``, ``arx_ac_one`` or ``aloha``."""
    control_rate_hz: float
    """Commands per second of the control loop."""
    cameras: dict[str, str | None]
    """Robot camera name → a1 view (``head``, ``left_wrist``, ``right_wrist``), or null for a camera
    that is read but not fed to the policy. A view no camera maps to is masked in the model."""
    joints: list[str]
    """Names of the state/action dims, in order."""
    lower: list[float]
    """Per-dim lower joint limit (grippers included)."""
    upper: list[float]
    """Per-dim upper joint limit (grippers included)."""
    max_step: list[float]
    """Per-dim largest change of the command in one control step (same units as the joints)."""
    grippers: list[int] = field(default_factory=list)
    """Indices of the gripper dims (their range is their ``lower``/``upper``)."""
    normalization: str | None = None
    """Which of the policy's normalisations (its ``normalization.json`` key: the dataset or
    embodiment it was trained on) to use; null: the policy's default."""
    watchdog_s: float = 0.25
    """Hold the last safe command when no fresh action arrived within this many seconds."""
    execute: int | None = None
    """Actions executed from each predicted chunk before replanning; null: the runtime's default."""
    image_size: list[int] = field(default_factory=lambda: [480, 640])
    """(H, W) of the frames the cameras deliver (the simulated robot renders this size)."""
    home: list[float]
    """Reset pose, one value per joint, inside the limits."""
    options: dict[str, Any] = field(default_factory=dict)
    """Adapter-specific settings: SDK interface names, CAN ports, ROS topics, camera devices…"""
    source: str | None = field(default=None, repr=False, compare=False, metadata={"yaml": False})
    """The YAML file this config was read from (set by `load_robot_config`, not a YAML key; messages name it)."""

    def __post_init__(self) -> None:
        _check(self)

    @property
    def dims(self) -> int:
        """D: number of state/action dims."""
        return len(self.joints)

    @property
    def views(self) -> dict[str, str]:
        """a1 view → robot camera, for the cameras that feed the policy."""
        return {view: cam for cam, view in self.cameras.items() if view is not None}


def load_robot_config(name_or_path: str | Path, search: Path | None = None) -> RobotConfig:
    """The robot config of a YAML file, or of a NAME looked up as ``<search>/NAME.yaml``.

    ``search`` defaults to ``deploy/robots`` under the working directory (falling back to the
    repository's own folder). Errors name the file and key; an unknown name lists the names there.
    """
    path = _resolve(name_or_path, search)
    data = load_yaml(path)
    fields = [f for f in dataclasses.fields(RobotConfig) if f.metadata.get("yaml", True)]
    names = {f.name for f in fields}
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}")
    try:
        cfg = from_dict(RobotConfig, data, "robot")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    cfg.source = str(path)
    return cfg


def available_robots(search: Path | None = None) -> list[str]:
    """Names of the robot YAML files in ``search`` (default: see `load_robot_config`)."""
    folder = _search_folder(search)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _search_folder(search: Path | None) -> Path:
    if search is not None:
        return Path(search)
    return SEARCH if SEARCH.is_dir() else _REPO_SEARCH


def _resolve(name_or_path: str | Path, search: Path | None) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"robot config file not found: {path}")
        return path
    folder = _search_folder(search)
    path = folder / f"{text}.yaml"
    if not path.is_file():
        names = available_robots(search)
        raise ConfigError(f"unknown robot {text!r}: no {path}; available in {folder}: "
                          f"{', '.join(names) if names else '(none)'}")
    return path


# --- validation ---------------------------------------------------------------------------------
def _check(cfg: RobotConfig) -> None:
    """Raise `ConfigError` naming ``robot.<key>`` for anything inconsistent."""
    if not isinstance(cfg.name, str) or not cfg.name:
        raise ConfigError(f"robot.name: expected a non-empty string, got {cfg.name!r}")
    if cfg.adapter not in ADAPTERS:
        raise ConfigError(f"robot.adapter: {cfg.adapter!r} is not one of {list(ADAPTERS)}")
    _positive("control_rate_hz", cfg.control_rate_hz)
    _positive("watchdog_s", cfg.watchdog_s)
    _check_joints(cfg)
    _check_cameras(cfg)
    if cfg.execute is not None and (isinstance(cfg.execute, bool) or not isinstance(cfg.execute, int)
                                    or cfg.execute < 1):
        raise ConfigError(f"robot.execute: expected null or an integer >= 1, got {cfg.execute!r}")
    size = cfg.image_size
    if (not isinstance(size, list) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)):
        raise ConfigError(f"robot.image_size: expected [H, W] with two integers >= 1, got {size!r}")
    if not isinstance(cfg.options, dict):
        raise ConfigError(f"robot.options: expected a mapping, got {cfg.options!r}")
    if cfg.normalization is not None and (not isinstance(cfg.normalization, str) or not cfg.normalization):
        raise ConfigError(f"robot.normalization: expected null or a non-empty string, got {cfg.normalization!r}")


def _positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"robot.{key}: expected a finite number > 0, got {value!r}")


def _check_joints(cfg: RobotConfig) -> None:
    joints = cfg.joints
    if not isinstance(joints, list) or not joints or not all(isinstance(j, str) and j for j in joints):
        raise ConfigError(f"robot.joints: expected a non-empty list of names, got {joints!r}")
    repeated = sorted({j for j in joints if joints.count(j) > 1})
    if repeated:
        raise ConfigError(f"robot.joints: repeated name(s) {', '.join(repeated)}")
    d = len(joints)
    for key in ("lower", "upper", "max_step", "home"):
        values = getattr(cfg, key)
        if not isinstance(values, list) or len(values) != d:
            got = len(values) if isinstance(values, list) else repr(values)
            raise ConfigError(f"robot.{key}: expected {d} values (one per joint), got {got}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"robot.{key}[{i}] ({joints[i]}): expected a finite number, got {v!r}")
    for i, (lo, hi, step, home) in enumerate(zip(cfg.lower, cfg.upper, cfg.max_step, cfg.home)):
        if lo > hi:
            raise ConfigError(f"robot.lower[{i}] ({joints[i]}) = {lo} is above robot.upper[{i}] = {hi}")
        if step <= 0:
            raise ConfigError(f"robot.max_step[{i}] ({joints[i]}): expected > 0, got {step}")
        if not lo <= home <= hi:
            raise ConfigError(f"robot.home[{i}] ({joints[i]}) = {home} is outside [{lo}, {hi}]")
    for i in cfg.grippers:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < d:
            raise ConfigError(f"robot.grippers: index {i!r} is not a joint index in [0, {d - 1}]")
    if len(set(cfg.grippers)) != len(cfg.grippers):
        raise ConfigError(f"robot.grippers: repeated index in {cfg.grippers}")


def _check_cameras(cfg: RobotConfig) -> None:
    if not isinstance(cfg.cameras, dict) or not cfg.cameras:
        raise ConfigError(f"robot.cameras: expected a mapping camera → view, got {cfg.cameras!r}")
    seen: dict[str, str] = {}
    for cam, view in cfg.cameras.items():
        if view is None:
            continue
        if view not in VIEWS:
            raise ConfigError(f"robot.cameras.{cam}: {view!r} is not an a1 view {list(VIEWS)} (or null)")
        if view in seen:
            raise ConfigError(f"robot.cameras.{cam}: view {view!r} is already fed by camera {seen[view]!r}")
        seen[view] = cam
