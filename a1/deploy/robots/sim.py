"""A simulated robot (``adapter: sim``): no hardware, deterministic, fast — for tests and demos.

Joints follow a first-order model: each command moves the state a fraction ``gain`` of the way
to it (``state += gain * (cmd - state)``, then clipped to the limits), one step per `act`. Each
camera renders a frame of ``image_size`` with numpy only: a background colour of its own and one
vertical bar per joint whose height is that joint's position within its limits — the head camera
shows every joint, a ``left_wrist`` / ``right_wrist`` camera the first / second half. Frames thus
change with the state and differ per camera. Every command received is kept in ``commands``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from a1.config import ConfigError
from a1.deploy.robots.base import Robot
from a1.deploy.robots.config import RobotConfig

OPTIONS = {"gain": "fraction of the way to the command the joints move per step, in (0, 1] (default 0.5)"}
MARGIN = 2
"""Pixels left empty above and below the bars."""


@dataclass
class _Camera:
    background: np.ndarray  # (H, W, 3) uint8
    dims: np.ndarray  # joint indices drawn
    columns: list[tuple[int, int]]  # x-range of each bar
    colours: np.ndarray  # (len(dims), 3) uint8


class SimRobot(Robot):
    """The simulated robot. ``state`` (float64) is its joint state; ``commands`` every command received."""

    def __init__(self, config: RobotConfig, *, gain: float | None = None) -> None:
        super().__init__(config)
        where = config.source or f"robot {config.name!r}"
        unknown = sorted(set(config.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"{where}: robot.options.{unknown[0]}: not an option of the sim adapter "
                              f"(known: {', '.join(OPTIONS)})")
        self.gain = float(config.options.get("gain", 0.5) if gain is None else gain)
        if not 0.0 < self.gain <= 1.0:
            raise ConfigError(f"{where}: robot.options.gain: expected a number in (0, 1], got {self.gain}")
        self.lower, self.upper = self.limits()
        self.home = np.asarray(config.home, dtype=np.float64)
        self.state = self.home.copy()
        self.commands: list[np.ndarray] = []
        self.resets = 0
        self.closed = False
        self._cameras = {cam: self._camera(i, view) for i, (cam, view) in enumerate(config.cameras.items())}

    def observe(self) -> dict:
        self._check_open()
        images = {cam: self._render(spec) for cam, spec in self._cameras.items()}
        return {"images": images, "state": self.state.astype(np.float32)}

    def act(self, action: np.ndarray) -> None:
        self._check_open()
        cmd = np.asarray(action, dtype=np.float64)
        if cmd.shape != (self.config.dims,) or not np.isfinite(cmd).all():
            raise ValueError(f"sim robot {self.config.name!r}: command must be a finite ({self.config.dims},) "
                             f"array, got shape {cmd.shape}")
        self.commands.append(cmd.copy())
        self.state = np.clip(self.state + self.gain * (cmd - self.state), self.lower, self.upper)

    def reset(self) -> None:
        self._check_open()
        self.state = self.home.copy()
        self.resets += 1

    def close(self) -> None:
        self.closed = True

    # --- rendering --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"sim robot {self.config.name!r} is closed")

    def _camera(self, index: int, view: str | None) -> _Camera:
        h, w = self.config.image_size
        d = self.config.dims
        dims = {"left_wrist": np.arange(d // 2), "right_wrist": np.arange(d // 2, d)}.get(view, np.arange(d))
        rng = np.random.default_rng(index)  # fixed per camera: deterministic, different per camera
        background = np.empty((h, w, 3), dtype=np.uint8)
        background[:] = rng.integers(20, 90, 3, dtype=np.uint8)
        width = max(1, w // (2 * len(dims) + 1))
        columns = [(min(w - 1, (2 * k + 1) * width), min(w, (2 * k + 2) * width)) for k in range(len(dims))]
        colours = rng.integers(120, 256, (len(dims), 3), dtype=np.uint8)
        colours[np.isin(dims, self.config.grippers)] = 255  # grippers: white bars
        return _Camera(background, dims, columns, colours)

    def _render(self, cam: _Camera) -> np.ndarray:
        img = cam.background.copy()
        h = img.shape[0]
        lo, hi = self.lower[cam.dims], self.upper[cam.dims]
        span = np.where(hi > lo, hi - lo, 1.0)
        frac = np.clip((self.state[cam.dims] - lo) / span, 0.0, 1.0)
        heights = np.rint(frac * max(h - 2 * MARGIN, 1)).astype(int) + 1
        bottom = h - MARGIN
        for (x0, x1), height, colour in zip(cam.columns, heights, cam.colours):
            img[max(bottom - height, 0):bottom, x0:x1] = colour
        return img
