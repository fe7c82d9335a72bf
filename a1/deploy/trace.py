"""Recording a policy driving a robot: the latency of every request and the actions executed.

`drive` is the control loop of ``deploy/run_robot.py --server`` — built from the same parts,
`a1.deploy.control.ServerChunks` and `Pacer` — with a recorder attached: every tick it reads the
robot, asks the policy for a new chunk when the previous reply's actions are used up, and sends this
tick's action through `SafeRobot` (joint limits, largest change per step)::

    with PolicyClient("ws://127.0.0.1:8000") as client, SafeRobot(make_robot(cfg)) as safe:
        trace = drive(safe, client.infer, steps=150, prompt="fold the towel", rate_hz=cfg.control_rate_hz)
    trace.latency_ms        # (R,) client round trip of each request
    trace.commands          # (T, D) what the robot was sent, tick by tick
    trace.summary()         # requests, p50/p99 latency, achieved rate, ...

``infer`` is anything with the policy server's reply shape — ``observation → {"actions": (n, D),
"server_timing": {"infer_ms": ...}}`` — e.g. `a1.deploy.client.PolicyClient.infer` or an openpi
``WebsocketClientPolicy.infer``; a local `a1.deploy.runtime.Episode` fits as
``lambda obs: {"actions": episode.request(obs)}`` once its images are keyed by view.

Every request blocks the loop for its round trip (as run_robot does; with ``SafeRobot(keepalive=True)``
the robot holds its last command meanwhile), so the tick times show what latency costs at a fixed
control rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from a1.deploy.control import Infer, Pacer, ServerChunks
from a1.deploy.robots.safety import SafeRobot


@dataclass
class Request:
    """One request to the policy and its reply."""

    step: int
    """Control tick at which the observation was taken; the reply's first action runs at this tick."""
    time_s: float
    """When it was sent, seconds since `drive` began."""
    latency_ms: float
    """Round trip seen by the robot: send → reply (network, queueing, pre-processing, the model)."""
    infer_ms: float
    """The model alone, as the server reports it (``server_timing.infer_ms``); NaN when absent."""
    actions: np.ndarray
    """(n, D) float32 raw robot actions returned (before the safety layer)."""
    observation: dict[str, Any] | None = None
    """The robot's observation that was sent ({"images": {camera: (H, W, 3) uint8}, "state": (D,)}),
    when `drive` keeps them."""


@dataclass
class Trace:
    """Everything `drive` recorded; T ticks, R requests, D joints."""

    requests: list[Request] = field(default_factory=list)
    tick_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(T,) when each tick began, seconds since `drive` began."""
    states: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """(T, D) measured joint state at each tick, before acting."""
    planned: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """(T, D) the policy's action for each tick (raw, before the safety layer)."""
    commands: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """(T, D) float64 command the robot was sent at each tick (after `SafeRobot`)."""
    clamped: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """(T,) whether the safety layer changed that tick's action."""

    @property
    def latency_ms(self) -> np.ndarray:
        """(R,) round trip of each request, milliseconds."""
        return np.array([r.latency_ms for r in self.requests], dtype=np.float64)

    @property
    def infer_ms(self) -> np.ndarray:
        """(R,) model time of each request as reported by the server (NaN where not reported)."""
        return np.array([r.infer_ms for r in self.requests], dtype=np.float64)

    @property
    def request_steps(self) -> np.ndarray:
        """(R,) tick at which each request was sent (where each executed chunk starts)."""
        return np.array([r.step for r in self.requests], dtype=np.int64)

    def summary(self) -> dict[str, float]:
        """Counts and latency percentiles: ``steps, requests, latency_p50_ms, latency_p99_ms,
        latency_max_ms, infer_p50_ms, rate_hz`` (ticks per second achieved), ``clamped_fraction``."""
        lat, inf = self.latency_ms, self.infer_ms
        steps = len(self.tick_s)
        duration = float(self.tick_s[-1] - self.tick_s[0]) if steps > 1 else 0.0
        pct = (lambda a, q: float(np.percentile(a, q)) if a.size else float("nan"))
        finite = inf[np.isfinite(inf)]
        return {
            "steps": steps,
            "requests": len(self.requests),
            "latency_p50_ms": pct(lat, 50),
            "latency_p99_ms": pct(lat, 99),
            "latency_max_ms": float(lat.max()) if lat.size else float("nan"),
            "infer_p50_ms": pct(finite, 50),
            "rate_hz": (steps - 1) / duration if duration > 0 else float("nan"),
            "clamped_fraction": float(self.clamped.mean()) if steps else float("nan"),
        }


def drive(safe: SafeRobot, infer: Infer, steps: int, prompt: str | None = None, *, rate_hz: float | None = None,
          reset_episode: bool = True, keep_observations: bool = True,
          clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> Trace:
    """Run ``steps`` control ticks of a started `SafeRobot` with actions from ``infer``; record them.

    Each tick: ``safe.observe()``; if the previous reply's actions are used up, send
    ``{"images", "state" (float32), "prompt"}`` to ``infer`` (the first request also carries
    ``"reset": True``, the a1 server's new-episode flag, unless ``reset_episode`` is False) and time
    the round trip; then ``safe.act`` this tick's action and, with ``rate_hz``, wait for the next
    tick (a late tick does not cause a burst of catch-up ticks).

    Args:
        safe: the robot behind its safety layer, started (``with SafeRobot(robot) as safe``).
        infer: observation → reply with ``"actions"`` (n, D), n ≥ 1, and optionally ``"server_timing"``.
        steps: control ticks to run (T).
        prompt: the instruction sent with each observation (None: left out; the server's default).
        rate_hz: control rate to keep (None: as fast as the policy answers).
        reset_episode: send ``"reset": True`` with the first request.
        keep_observations: keep each request's observation in `Request.observation` (frames included).
        clock, sleep: time source and sleep (tests).

    Returns:
        the `Trace` of T ticks and every request.

    Raises:
        ValueError: a reply without ``"actions"`` of shape (n, D) with n ≥ 1 (D = the robot's joints).
        Whatever ``infer`` raises (e.g. `a1.deploy.client.ServerError`) and `EmergencyStop` (Ctrl-C
        under `SafeRobot`) propagate; the ``with SafeRobot`` block then stops the robot.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if rate_hz is not None and not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0 (or None), got {rate_hz}")
    dims = safe.config.dims
    chunks = ServerChunks(infer, dims, prompt, reset_episode, clock)
    pacer = Pacer(rate_hz, clock, sleep) if rate_hz is not None else None
    trace = Trace()
    ticks, states, planned, commands, clamped = [], [], [], [], []
    start = clock()
    for _ in range(steps):
        ticks.append(clock() - start)
        obs = safe.observe()
        action = chunks.action(obs)
        if chunks.requested:
            kept = {"images": obs["images"], "state": np.asarray(obs["state"], np.float32)} if keep_observations else None
            trace.requests.append(Request(len(ticks) - 1, chunks.sent_at - start, chunks.latency_ms, chunks.infer_ms,
                                          chunks.queue, kept))
        commands.append(safe.act(action))
        states.append(np.asarray(obs["state"], dtype=np.float32))
        planned.append(action)
        clamped.append(safe.filter.clamped)
        if pacer is not None:
            pacer.wait()
    trace.tick_s = np.array(ticks, dtype=np.float64)
    trace.states = np.array(states, dtype=np.float32).reshape(len(ticks), dims)
    trace.planned = np.array(planned, dtype=np.float32).reshape(len(ticks), dims)
    trace.commands = np.array(commands, dtype=np.float64).reshape(len(ticks), dims)
    trace.clamped = np.array(clamped, dtype=bool)
    return trace
