"""The robot adapter interface, and `make_robot`, which picks the adapter a config names.

An adapter only talks to its robot: it reports raw observations and sends the commands it is
given. Safety (limits, per-step change, watchdog, emergency stop) is `SafeRobot`'s job, one
layer up, so every adapter gets the same checks::

    robot = make_robot(load_robot_config("aloha"))
    with SafeRobot(robot) as safe:          # clamps, watchdog, Ctrl-C → emergency stop
        while safe.running:
            obs = safe.observe()            # {"images": {camera: (H, W, 3) uint8}, "state": (D,) float32}
            safe.act(next_action_or_none)   # (D,) absolute joint command, or None to hold
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from a1.deploy.robots.config import RobotConfig


class Robot(ABC):
    """One robot. ``D = config.dims``; joint order and units are those of ``config.joints``."""

    config: RobotConfig

    def __init__(self, config: RobotConfig) -> None:
        self.config = config

    @abstractmethod
    def observe(self) -> dict[str, Any]:
        """The latest raw observation: ``{"images": {camera: uint8 (H, W, 3) RGB}, "state": float32 (D,)}``,
        with the camera names of ``config.cameras`` (all of them, mapped to a view or not)."""

    @abstractmethod
    def act(self, action: np.ndarray) -> None:
        """Send one ``(D,)`` absolute joint command. The caller (`SafeRobot`) has already made it safe."""

    @abstractmethod
    def reset(self) -> None:
        """Move to ``config.home`` (blocking until there, or as close as the SDK allows)."""

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) float64 ``(D,)`` joint limits, grippers included."""
        return np.asarray(self.config.lower, dtype=np.float64), np.asarray(self.config.upper, dtype=np.float64)

    def close(self) -> None:
        """Release the hardware (stop streams, disconnect). Safe to call twice."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.name!r}, dims={self.config.dims})"


def policy_images(observation: dict[str, Any], config: RobotConfig) -> dict[str, np.ndarray]:
    """The frames of an observation keyed by a1 view (``head``, ``left_wrist``, ``right_wrist``),
    for the cameras that feed the policy (``config.views``); a missing camera is a `KeyError` naming it."""
    images = observation["images"]
    out = {}
    for view, camera in config.views.items():
        if camera not in images:
            raise KeyError(f"robot {config.name!r}: observation has no camera {camera!r} (view {view!r}); "
                           f"it has {sorted(images)}")
        out[view] = images[camera]
    return out


def make_robot(config: RobotConfig, **kwargs: Any) -> Robot:
    """The adapter ``config.adapter`` names, built with ``config`` (and ``kwargs`` for that class).

    Hardware adapters import their vendor SDK here; a missing SDK is a `MissingSDKError` naming
    the package to install and the robot's YAML.
    """
    from a1.deploy.robots import aloha, hardware, sim  # here: adapters import their SDKs lazily

    classes: dict[str, type[Robot]] = {
        "sim": sim.SimRobot,
        "genie1": hardware.Genie1Robot,
        "arx_lift2": hardware.ArxLift2Robot,
        "arx_ac_one": hardware.ArxAcOneRobot,
        "aloha": aloha.AlohaRobot,
    }
    if config.adapter not in classes:
        raise ValueError(f"robot {config.name!r}: unknown adapter {config.adapter!r}; known: {sorted(classes)}")
    return classes[config.adapter](config, **kwargs)
