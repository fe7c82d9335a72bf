"""Safety in the loop: joint limits, a largest change per step, a watchdog, and the emergency stop.

Every command reaching a robot goes through `SafeRobot`, which a fixed-rate control loop uses
like this (one tick per ``1 / control_rate_hz`` seconds)::

    with SafeRobot(make_robot(cfg)) as safe:    # reads the state, arms Ctrl-C → emergency stop
        while safe.running:
            obs = safe.observe()
            action = get_action(obs)             # from the policy: may be late, or None if none is ready
            safe.act(action)                     # None → hold the last safe command
    print(safe.stats)                            # commands, clamped, holds, misses, stop reason

- `SafetyFilter` clamps each action to ``[lower, upper]``, then moves it at most ``max_step``
  from the previous command, per dim. NaN/inf or a wrong shape is a ``ValueError`` naming the dim.
- `Watchdog` holds the last safe command when no fresh action arrived within ``watchdog_s`` and
  counts those ticks as misses. With ``keepalive=True`` a background thread also sends that hold
  when the loop itself stalls (e.g. blocked on a slow policy server) for longer than ``watchdog_s``.
- Ctrl-C (SIGINT) inside the ``with`` block is an emergency stop: the robot is sent its last
  (safe) command once more — it holds where it was going and grippers keep their grip, where
  commanding the measured position would loosen a grasp — nothing is commanded after that, ``robot.close()`` is called and the ``with`` block ends cleanly
  (``safe.stop_reason == "Ctrl-C"``). Any other exception leaving the block stops the same way,
  then propagates.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from a1.deploy.robots.base import Robot
from a1.deploy.robots.config import RobotConfig

log = logging.getLogger(__name__)


class EmergencyStop(KeyboardInterrupt):
    """Raised into the control loop by Ctrl-C under `SafeRobot`, and by any use of a stopped robot.

    A `KeyboardInterrupt`, so an ``except Exception`` in the loop cannot swallow it.
    """


class SafetyFilter:
    """Makes actions safe: clamp to the joint limits, then limit the change from the last command.

    ``reset(state)`` must be called first (with the measured joint state); each call then returns
    a float64 ``(D,)`` command with ``lower <= cmd <= upper`` and ``|cmd - last| <= max_step``.
    ``clamped`` tells whether the last call changed the action (``clamped_dims``: which dims).
    """

    def __init__(self, config: RobotConfig) -> None:
        self.config = config
        self.lower = np.asarray(config.lower, dtype=np.float64)
        self.upper = np.asarray(config.upper, dtype=np.float64)
        self.max_step = np.asarray(config.max_step, dtype=np.float64)
        self.last: np.ndarray | None = None
        """The last safe command (None before `reset`)."""
        self.clamped = False
        self.clamped_dims: list[int] = []
        self.count = 0
        """Actions filtered since construction."""
        self.clamp_count = 0
        """Of those, how many were changed by the limits or the step limit."""

    def check(self, values: Any, what: str = "action") -> np.ndarray:
        """``values`` as a float64 ``(D,)`` array; wrong shape or NaN/inf: ``ValueError`` naming the dim."""
        d, name = self.config.dims, self.config.name
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"robot {name!r}: {what} is not numeric: {err}") from err
        if arr.shape != (d,):
            raise ValueError(f"robot {name!r}: {what} must have shape ({d},) (one value per joint), "
                             f"got {arr.shape}")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"robot {name!r}: {what}[{i}] ({self.config.joints[i]}) is {arr[i]}; "
                             f"refusing a non-finite command")
        return arr

    def reset(self, state: Any) -> np.ndarray:
        """Start from the measured ``state``; returns it as the first safe command.

        A state just outside the limits (by at most ``max_step``: sensor noise, a gripper closed on
        nothing) is clamped; further out means the YAML limits do not fit this robot — `ValueError`.
        """
        state = self.check(state, "state")
        out = (state < self.lower - self.max_step) | (state > self.upper + self.max_step)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(
                f"robot {self.config.name!r}: measured state[{i}] ({self.config.joints[i]}) = {state[i]:.4g} is "
                f"outside the limits [{self.lower[i]:.4g}, {self.upper[i]:.4g}] of {self.config.source or 'its config'}"
                f"; check lower/upper against the robot")
        self.last = np.clip(state, self.lower, self.upper)
        return self.last.copy()

    def __call__(self, action: Any) -> np.ndarray:
        if self.last is None:
            raise RuntimeError(f"robot {self.config.name!r}: SafetyFilter.reset(state) must be called first")
        target = self.check(action)
        cmd = np.clip(target, self.lower, self.upper)
        cmd = self.last + np.clip(cmd - self.last, -self.max_step, self.max_step)
        changed = np.flatnonzero(cmd != target)
        self.clamped, self.clamped_dims = bool(changed.size), changed.tolist()
        self.count += 1
        self.clamp_count += int(self.clamped)
        self.last = cmd
        return cmd.copy()


class Watchdog:
    """Decides what to send when no fresh action comes: the last safe command (a hold).

    ``fresh(cmd)`` registers a new safe command. ``command()`` returns the last one; when it is
    older than ``timeout_s`` that return is a missed deadline, counted in ``misses``. Thread-safe.
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"Watchdog timeout must be a finite number > 0, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.clock = clock
        self.misses = 0
        """Holds sent after the deadline (no fresh action within ``timeout_s``)."""
        self._command: np.ndarray | None = None
        self._since = -math.inf
        self._lock = threading.Lock()

    def fresh(self, command: np.ndarray) -> None:
        """A fresh safe command was just sent; the deadline restarts."""
        with self._lock:
            self._command = np.array(command, dtype=np.float64)
            self._since = self.clock()

    @property
    def age(self) -> float:
        """Seconds since the last fresh command."""
        return self.clock() - self._since

    @property
    def stale(self) -> bool:
        """No fresh command within ``timeout_s``."""
        return self.age > self.timeout_s

    def command(self) -> np.ndarray:
        """The command to hold: the last safe one. Counts a miss when it is stale."""
        with self._lock:
            if self._command is None:
                raise RuntimeError("Watchdog: no safe command yet (fresh() was never called)")
            if self.clock() - self._since > self.timeout_s:
                self.misses += 1
            return self._command.copy()


class SafeRobot:
    """``robot`` behind the `SafetyFilter`, the `Watchdog` and the emergency stop (usage: module docstring).

    Use it as a context manager from the main thread (it installs the SIGINT handler), or call
    `start` / `stop` yourself (then Ctrl-C is not handled here). ``keepalive=True`` starts a thread
    that sends the hold when no command at all was sent for ``watchdog_s`` (the loop stalled).
    """

    def __init__(self, robot: Robot, *, keepalive: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.robot = robot
        self.config = robot.config
        self.filter = SafetyFilter(self.config)
        self.watchdog = Watchdog(self.config.watchdog_s, clock)
        self.keepalive = keepalive
        self.clock = clock
        self.stop_reason: str | None = None
        """Why it stopped: ``"Ctrl-C"``, ``"finished"``, an error, or the reason given to `stop`."""
        self.commands = 0
        """Commands sent to the robot (fresh, held or kept alive)."""
        self.holds = 0
        """Of those, holds of the last safe command (``act(None)`` and keepalive)."""
        self.last_sent: np.ndarray | None = None
        """The last command the robot was sent (what a stop holds)."""
        self._lock = threading.RLock()
        self._started = self._stopping = self._closed = False
        self._sent_at = -math.inf
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._previous_handler: Any = None

    # --- the loop's API ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Started and not stopped: the loop may go on."""
        return self._started and not self._stopping

    def observe(self) -> dict[str, Any]:
        """The robot's observation (`Robot.observe`); `EmergencyStop` once stopped."""
        self._ensure_running()
        return self.robot.observe()

    def act(self, action: Any | None) -> np.ndarray:
        """Send this tick's command and return it: ``action`` made safe, or for ``None`` a hold of
        the last safe command (a watchdog miss when no fresh action came within ``watchdog_s``).
        A NaN/inf or wrongly shaped action is a ``ValueError`` and nothing is sent."""
        self._ensure_running()
        with self._lock:
            if action is None:
                cmd = self.watchdog.command()
                self.holds += 1
            else:
                cmd = self.filter(action)
                self.watchdog.fresh(cmd)
            self._send(cmd)
        return cmd

    def reset(self) -> None:
        """Move the robot home (`Robot.reset`) and restart the filter and watchdog from there."""
        self._ensure_running()
        with self._lock:
            self.robot.reset()
            self.start()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for the loop's log: commands, clamped, holds, misses, stop_reason."""
        return {"commands": self.commands, "clamped": self.filter.clamp_count, "holds": self.holds,
                "misses": self.watchdog.misses, "stop_reason": self.stop_reason}

    # --- start / stop -----------------------------------------------------------------------------
    def start(self) -> np.ndarray:
        """Read the measured state and make it the last safe command (nothing is sent)."""
        state = self.robot.observe()["state"]
        cmd = self.filter.reset(state)
        self.watchdog.fresh(cmd)
        self.last_sent = None  # e.g. after a reset: a stop must not send a pre-reset command
        self._started = True
        if self.keepalive and self._thread is None:
            self._thread = threading.Thread(target=self._keep_alive, name="a1-robot-keepalive", daemon=True)
            self._thread.start()
        return cmd

    def stop(self, reason: str = "stopped") -> None:
        """Emergency stop: send the last command once more (hold), then nothing; close the robot.

        Idempotent; never raises (failures are logged) so the robot is always closed."""
        if self._closed:
            return
        self._stopping = True
        self.stop_reason = self.stop_reason or reason
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        try:
            if self.last_sent is not None:  # never commanded: nothing to hold
                with self._lock:
                    self.robot.act(self.last_sent.copy())
                    self.commands += 1
                    self.holds += 1
        except Exception:  # the robot must still be closed
            log.exception("robot %r: the hold command at stop failed", self.config.name)
        finally:
            self._closed = True
            try:
                self.robot.close()
            except Exception:
                log.exception("robot %r: close() failed", self.config.name)
        level = logging.INFO if self.stop_reason == "finished" else logging.WARNING
        log.log(level, "robot %r stopped (%s): %s", self.config.name, self.stop_reason, self.stats)

    def __enter__(self) -> SafeRobot:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("SafeRobot must be entered from the main thread (it handles Ctrl-C)")
        self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self.start()
        except BaseException as err:
            self.stop_reason = f"start failed: {type(err).__name__}: {err}"
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        self._stopping = True  # from here on Ctrl-C is ignored: the stop must finish
        if exc is None:
            reason = "finished"
        elif isinstance(exc, EmergencyStop):
            reason = str(exc) or "emergency stop"
        else:
            reason = f"error: {type(exc).__name__}: {exc}"
        try:
            self.stop(reason)
        finally:
            previous = self._previous_handler
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        return isinstance(exc, EmergencyStop)

    # --- internals --------------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stopping:  # a second Ctrl-C while stopping: let the stop finish
            return
        self._stopping = True
        self.stop_reason = "Ctrl-C"
        raise EmergencyStop("Ctrl-C")

    def _ensure_running(self) -> None:
        if self._stopping or self._closed:
            raise EmergencyStop(f"robot {self.config.name!r} is stopped ({self.stop_reason}); nothing more is sent")
        if not self._started:
            raise RuntimeError("SafeRobot is not started: use `with SafeRobot(robot) as safe:` or call start()")

    def _send(self, cmd: np.ndarray) -> None:
        self.robot.act(cmd)
        self.last_sent = cmd
        self._sent_at = self.clock()
        self.commands += 1

    def _keep_alive(self) -> None:
        """Background: hold the last safe command whenever the loop sent nothing for ``watchdog_s``."""
        timeout = self.config.watchdog_s
        while not self._wake.wait(timeout / 2):
            with self._lock:
                if self._stopping:
                    return
                if self.last_sent is None or self.clock() - self._sent_at <= timeout:
                    continue  # nothing commanded yet (nothing to keep alive), or the loop is on time
                try:
                    self._send(self.watchdog.command())
                    self.holds += 1
                except Exception:
                    log.exception("robot %r: keepalive hold failed; keepalive stops", self.config.name)
                    return
