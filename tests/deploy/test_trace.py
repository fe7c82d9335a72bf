"""a1.deploy.trace: `drive` records every request (latency, chunk) and every tick (state, planned
and executed command) of the simulated robot, with a fake policy and through a real policy server."""

from __future__ import annotations

import numpy as np
import pytest

from a1.deploy.robots import SafeRobot, load_robot_config, make_robot
from a1.deploy.trace import drive
from tests.conftest import ROOT

SIM = ROOT / "deploy" / "robots" / "sim_aloha.yaml"
N = 4  # actions per reply


class FakePolicy:
    """Replies with N actions a little below the state (dim 0 jumps by 1 rad: clamped)."""

    def __init__(self, clock=None, latency_s: float = 0.0) -> None:
        self.messages, self.clock, self.latency_s = [], clock, latency_s

    def __call__(self, obs: dict) -> dict:
        self.messages.append(obs)
        if self.clock is not None:
            self.clock.now += self.latency_s
        actions = np.repeat(obs["state"][None], N, axis=0) - 0.01 * np.arange(1, N + 1)[:, None]
        actions[0, 0] += 1.0
        return {"actions": actions.astype(np.float32), "server_timing": {"infer_ms": 5.0}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_requests_ticks_and_safety():
    cfg = load_robot_config(SIM)
    robot = make_robot(cfg)
    policy = FakePolicy()
    with SafeRobot(robot) as safe:
        trace = drive(safe, policy, steps=10, prompt="fold the towel")
    assert trace.request_steps.tolist() == [0, 4, 8]
    first, second = policy.messages[0], policy.messages[1]
    assert first["reset"] is True and "reset" not in second and first["prompt"] == "fold the towel"
    assert set(first["images"]) == set(cfg.cameras) and first["state"].dtype == np.float32
    r0 = trace.requests[0]
    assert r0.actions.shape == (N, 14) and r0.infer_ms == 5.0 and r0.latency_ms >= 0
    assert r0.observation["state"] is not None and set(r0.observation["images"]) == set(cfg.cameras)
    for shape_of in (trace.states, trace.planned, trace.commands):
        assert shape_of.shape == (10, 14)
    np.testing.assert_array_equal(trace.planned[4:8], trace.requests[1].actions)
    np.testing.assert_array_equal(trace.commands, np.stack(robot.commands[:10]))  # what the robot got
    # The 1-rad jump of each chunk's first action is cut to max_step by the safety layer.
    assert trace.clamped[[0, 4, 8]].all()
    assert trace.commands[0, 0] - trace.states[0, 0] == pytest.approx(cfg.max_step[0], abs=1e-6)
    s = trace.summary()
    assert s["steps"] == 10 and s["requests"] == 3 and s["infer_p50_ms"] == 5.0
    assert 0 < s["clamped_fraction"] < 1


def test_rate_and_latency():
    clock = FakeClock()
    with SafeRobot(make_robot(load_robot_config(SIM))) as safe:
        fast = drive(safe, FakePolicy(clock), steps=8, rate_hz=50, clock=clock, sleep=clock.sleep)
    np.testing.assert_allclose(fast.tick_s, 0.02 * np.arange(8), atol=1e-12)
    assert fast.summary()["rate_hz"] == pytest.approx(50)

    clock = FakeClock()
    with SafeRobot(make_robot(load_robot_config(SIM))) as safe:
        slow = drive(safe, FakePolicy(clock, latency_s=0.1), steps=8, rate_hz=50, clock=clock, sleep=clock.sleep,
                     keep_observations=False)
    np.testing.assert_allclose(slow.latency_ms, [100.0, 100.0])
    assert slow.requests[0].observation is None
    assert slow.summary()["rate_hz"] < 40, "each request stalls the loop for its round trip"


@pytest.mark.parametrize("reply", [{}, {"actions": np.zeros((0, 14))}, {"actions": np.zeros((4, 7))}])
def test_bad_reply(reply):
    with pytest.raises(ValueError, match="actions"), SafeRobot(make_robot(load_robot_config(SIM))) as safe:
        drive(safe, lambda obs: reply, steps=2)


def test_through_the_policy_server(tmp_path):
    from a1.deploy.client import PolicyClient
    from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
    from a1.deploy.server import PolicyServer
    from a1.testing import random_policy_folder

    cfg = load_robot_config(SIM)
    runtime = PolicyRuntime.load(random_policy_folder(tmp_path / "tiny"), cameras=cfg.cameras,
                                 options=RuntimeOptions(compile=False, warmup=0))
    server = PolicyServer(runtime, cfg.cameras, execute=3, port=0)
    with server.running() as (host, port), PolicyClient(f"ws://{host}:{port}") as client, \
            SafeRobot(make_robot(cfg)) as safe:
        trace = drive(safe, client.infer, steps=7, prompt="fold the towel")
    assert trace.request_steps.tolist() == [0, 3, 6]
    assert np.isfinite(trace.commands).all() and (trace.infer_ms > 0).all()
    assert (trace.latency_ms >= trace.infer_ms).all(), "the round trip includes the model's time"
