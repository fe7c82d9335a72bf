"""The parts of a robot's control loop around a remote policy, shared by ``deploy/run_robot.py
--server`` and `a1.deploy.trace.drive`:

* `ServerChunks`: a policy server's replies as one action per control tick — a request whenever the
  previous reply's actions are used up (the episode's first request carries ``"reset": True``);
* `Pacer`: a fixed control rate, where a late tick does not cause a burst of catch-up ticks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Infer = Callable[[dict[str, Any]], Mapping[str, Any]]
"""observation ``{"images": {camera: frame}, "state": (D,), "prompt": str}`` → reply ``{"actions": (n, D), ...}``."""


class ServerChunks:
    """One action per tick from a chunk-returning policy (`a1.deploy.client.PolicyClient.infer`, an
    openpi ``WebsocketClientPolicy.infer``, …) for a robot of ``dims`` joints."""

    def __init__(self, infer: Infer, dims: int, prompt: str | None = None, reset_episode: bool = True,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.infer, self.dims, self.prompt, self.reset_episode, self.clock = infer, dims, prompt, reset_episode, clock
        self.queue = np.zeros((0, dims), np.float32)
        """(n, D) float32 actions of the last reply."""
        self.index = 0
        """Actions of ``queue`` used so far."""
        self.requests = 0
        self.requested = False
        """Whether the last `action` call sent a request."""
        self.sent_at = self.latency_ms = self.infer_ms = float("nan")
        """Of the last request: when it was sent (``clock``), its round trip and the server's model time
        (``server_timing.infer_ms``; NaN when absent)."""

    def action(self, obs: Mapping[str, Any]) -> np.ndarray:
        """(D,) this tick's action for the robot observation ``{"images", "state"}``."""
        self.requested = self.index >= len(self.queue)
        if self.requested:
            message: dict[str, Any] = {"images": obs["images"], "state": np.asarray(obs["state"], np.float32)}
            if self.prompt is not None:
                message["prompt"] = self.prompt
            if self.reset_episode and self.requests == 0:
                message["reset"] = True
            self.sent_at = self.clock()
            reply = self.infer(message)
            self.latency_ms = (self.clock() - self.sent_at) * 1e3
            self.queue, self.index = reply_actions(reply, self.dims), 0
            self.infer_ms = float((reply.get("server_timing") or {}).get("infer_ms", float("nan")))
            self.requests += 1
        self.index += 1
        return self.queue[self.index - 1]


def reply_actions(reply: Mapping[str, Any], dims: int) -> np.ndarray:
    """The reply's ``actions`` as an (n, dims) float32 array, n ≥ 1; a clear error otherwise."""
    if not isinstance(reply, Mapping) or "actions" not in reply:
        got = sorted(reply) if isinstance(reply, Mapping) else type(reply).__name__
        raise ValueError(f"policy reply has no 'actions' (got {got})")
    actions = np.asarray(reply["actions"], dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != dims:
        raise ValueError(f"policy reply 'actions' must have shape (n >= 1, {dims}), got {actions.shape}")
    return actions


class Pacer:
    """Ticks at ``rate_hz``: `wait` sleeps until the next tick is due; after a late tick at most one
    tick follows at once, then the rate resumes (no burst of catch-up ticks)."""

    def __init__(self, rate_hz: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.period, self.clock, self.sleep = 1.0 / rate_hz, clock, sleep
        self.next = clock()

    def wait(self) -> None:
        self.next += self.period
        self.sleep(max(0.0, self.next - self.clock()))
        self.next = max(self.next, self.clock() - self.period)
