"""Robots: one YAML per robot (``deploy/robots/``), an adapter per SDK, and safety in the loop.

- `config`: `RobotConfig` / `load_robot_config` — joints, limits, cameras → a1 views, rate.
- `base`: the `Robot` interface (observe, act, reset, limits, close) and `make_robot`.
- `safety`: `SafetyFilter` (limits + per-step change), `Watchdog` (hold), `SafeRobot` (Ctrl-C → e-stop).
- `sim`: `SimRobot`, a deterministic simulated robot for tests and demos.
- `hardware` / `aloha`: Genie-1, ARX Lift-2, ARX AC One and ALOHA / AgileX on their vendor SDKs.
"""

from a1.deploy.robots.base import Robot, make_robot, policy_images
from a1.deploy.robots.config import ADAPTERS, VIEWS, RobotConfig, available_robots, load_robot_config
from a1.deploy.robots.hardware import MissingSDKError
from a1.deploy.robots.safety import EmergencyStop, SafeRobot, SafetyFilter, Watchdog
from a1.deploy.robots.sim import SimRobot

__all__ = [
    "ADAPTERS", "VIEWS", "EmergencyStop", "MissingSDKError", "Robot", "RobotConfig", "SafeRobot", "SafetyFilter",
    "SimRobot", "Watchdog", "available_robots", "load_robot_config", "make_robot", "policy_images",
]
