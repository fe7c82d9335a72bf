"""Robot configs, the safety layer (limits, step limit, watchdog, Ctrl-C e-stop) and the simulated robot.

The hardware adapters are tested in test_robot_adapters.py."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from a1.config import ConfigError
from a1.deploy.robots import (
    ADAPTERS,
    VIEWS,
    EmergencyStop,
    RobotConfig,
    SafeRobot,
    SafetyFilter,
    SimRobot,
    Watchdog,
    available_robots,
    load_robot_config,
    make_robot,
    policy_images,
)

ROOT = Path(__file__).resolve().parents[2]
ROBOTS = ROOT / "deploy" / "robots"
SIM_YAML = ROBOTS / "sim_aloha.yaml"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def tiny(**changes) -> RobotConfig:
    """Three dims (two joints and a gripper) with round numbers for exact checks."""
    base = {"name": "tiny", "adapter": "sim", "control_rate_hz": 10.0, "cameras": {"top": "head", "side": None},
            "joints": ["a", "b", "grip"], "lower": [-1.0, -2.0, 0.0], "upper": [1.0, 2.0, 1.0],
            "max_step": [0.1, 0.5, 0.25], "grippers": [2], "watchdog_s": 0.2, "image_size": [16, 24],
            "home": [0.0, 0.0, 0.5]}
    return RobotConfig(**{**base, **changes})


def edited_yaml(tmp_path: Path, old: str, new: str) -> Path:
    text = SIM_YAML.read_text()
    assert old in text
    path = tmp_path / "robot.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


# --- configs ------------------------------------------------------------------------------------
def test_every_shipped_robot_yaml_loads_and_is_consistent():
    names = available_robots(ROBOTS)
    assert set(names) >= {"genie1", "arx_lift2", "arx_ac_one", "aloha", "sim_aloha"}
    for name in names:
        cfg = load_robot_config(name, search=ROBOTS)
        assert cfg.source == str(ROBOTS / f"{name}.yaml")
        assert cfg.adapter in ADAPTERS and cfg.control_rate_hz > 0
        d = cfg.dims
        assert d == (16 if cfg.adapter == "genie1" else 14), name
        for key in ("lower", "upper", "max_step", "home"):
            assert len(getattr(cfg, key)) == d, (name, key)
        lower, upper = np.array(cfg.lower), np.array(cfg.upper)
        assert (lower <= upper).all() and (np.array(cfg.max_step) > 0).all()
        assert ((lower <= cfg.home) & (cfg.home <= upper)).all()
        assert all(0 <= i < d for i in cfg.grippers) and len(cfg.grippers) == 2
        assert set(cfg.views) == set(VIEWS), name  # every shipped robot feeds all three views
        assert set(cfg.views.values()) <= set(cfg.cameras)
        assert len(cfg.image_size) == 2
    assert load_robot_config(SIM_YAML) == load_robot_config("sim_aloha", search=ROBOTS)
    assert dataclasses.replace(cfg, execute=4).source == cfg.source  # overrides keep the file for messages


def test_unknown_key_names_the_file_and_the_key(tmp_path):
    path = edited_yaml(tmp_path, "watchdog_s: 0.25", "watchdog_s: 0.25\nmax_speed: 3")
    with pytest.raises(ConfigError, match=rf"{path}.*unknown key\(s\) max_speed"):
        load_robot_config(path)
    path = edited_yaml(tmp_path, "watchdog_s: 0.25", "watchdog_s: 0.25\nsource: elsewhere.yaml")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) source"):  # set by the loader, not by YAML
        load_robot_config(path)


@pytest.mark.parametrize("old, new, message", [
    ("lower: [-3.14158, -1.85005,", "lower: [-1.85005,", r"robot\.lower: expected 14 values \(one per joint\), got 13"),
    ("upper: [3.14158, 1.25664, 1.60570, 3.14158", "upper: [3.14158, 1.25664, 1.60570, -3.5",
     r"robot\.lower\[3\] \(left_forearm_roll\) = -3.14158 is above robot\.upper\[3\] = -3.5"),
    ("max_step: [0.05,", "max_step: [.nan,", r"robot\.max_step\[0\] \(left_waist\): expected a finite number"),
    ("cam_high: head", "cam_high: top", r"robot\.cameras\.cam_high: 'top' is not an a1 view"),
    ("cam_left_wrist: left_wrist", "cam_left_wrist: head", r"robot\.cameras\.cam_left_wrist: view 'head' is already"),
    ("grippers: [6, 13]", "grippers: [6, 14]", r"robot\.grippers: index 14 is not a joint index"),
    ("home: [0.0, -0.96", "home: [9.0, -0.96", r"robot\.home\[0\] \(left_waist\) = 9.0 is outside"),
    ("\nadapter: sim", "\nadapter: ur5", r"robot\.adapter: 'ur5' is not one of"),
    ("control_rate_hz: 50", "control_rate_hz: 0", r"robot\.control_rate_hz: expected a finite number > 0"),
    ("image_size: [224, 224]", "image_size: [224]", r"robot\.image_size: expected \[H, W\]"),
    ("watchdog_s: 0.25\n", "", None),  # defaults are fine
])
def test_bad_yaml_values_name_the_file_and_key(tmp_path, old, new, message):
    path = edited_yaml(tmp_path, old, new)
    if message is None:
        assert load_robot_config(path).watchdog_s == 0.25
        return
    with pytest.raises(ConfigError, match=rf"{path}: .*{message}"):
        load_robot_config(path)


def test_missing_key_and_unknown_robot_name(tmp_path):
    path = edited_yaml(tmp_path, "home: [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 1.0,\n       "
                       "0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 1.0]\n", "")
    with pytest.raises(ConfigError, match=rf"{path}: missing key\(s\) home"):
        load_robot_config(path)
    with pytest.raises(ConfigError, match=r"unknown robot 'ur5e'.*available in .*: .*aloha.*sim_aloha"):
        load_robot_config("ur5e", search=ROBOTS)
    with pytest.raises(ConfigError, match="robot config file not found"):
        load_robot_config(tmp_path / "nope.yaml")


# --- safety filter ------------------------------------------------------------------------------
def test_safety_filter_clamps_to_limits_and_max_step_exactly():
    f = SafetyFilter(tiny())
    np.testing.assert_array_equal(f.reset([0.0, 0.0, 0.5]), [0.0, 0.0, 0.5])
    np.testing.assert_allclose(f([5.0, -5.0, 0.6]), [0.1, -0.5, 0.6])  # step-limited, gripper within its step
    assert f.clamped and f.clamped_dims == [0, 1]
    np.testing.assert_allclose(f([0.15, -0.6, 0.6]), [0.15, -0.6, 0.6])  # within limits and steps: unchanged
    assert not f.clamped
    for _ in range(20):
        cmd = f([5.0, -5.0, 3.0])
    np.testing.assert_allclose(cmd, [1.0, -2.0, 1.0])  # ends on the limits, never beyond
    assert f.count == 22 and f.clamp_count == 21
    # a jump back is again limited per dim
    np.testing.assert_allclose(f([-1.0, 2.0, 0.0]), [0.9, -1.5, 0.75])


def test_safety_filter_refuses_nan_and_wrong_shapes():
    f = SafetyFilter(tiny())
    with pytest.raises(RuntimeError, match=r"reset\(state\) must be called first"):
        f([0.0, 0.0, 0.0])
    f.reset([0.0, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"action\[1\] \(b\) is nan"):
        f([0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=r"action\[2\] \(grip\) is inf"):
        f([0.0, 0.0, np.inf])
    with pytest.raises(ValueError, match=r"shape \(3,\) \(one value per joint\), got \(4,\)"):
        f(np.zeros(4))
    with pytest.raises(ValueError, match=r"got \(1, 3\)"):
        f(np.zeros((1, 3)))
    np.testing.assert_array_equal(f.last, [0.0, 0.0, 0.5])  # nothing refused changed the last command
    with pytest.raises(ValueError, match=r"measured state\[0\] \(a\) = 3 is outside the limits"):
        f.reset([3.0, 0.0, 0.5])
    np.testing.assert_allclose(f.reset([1.05, 0.0, -0.1]), [1.0, 0.0, 0.0])  # just outside: clamped


# --- watchdog and SafeRobot ---------------------------------------------------------------------
def test_watchdog_holds_the_last_command_and_counts_misses():
    clock = FakeClock()
    wd = Watchdog(0.2, clock=clock)
    with pytest.raises(RuntimeError, match="no safe command yet"):
        wd.command()
    wd.fresh(np.array([1.0, 2.0]))
    clock.t = 0.1
    np.testing.assert_array_equal(wd.command(), [1.0, 2.0])
    assert wd.misses == 0 and not wd.stale
    clock.t = 0.35
    np.testing.assert_array_equal(wd.command(), [1.0, 2.0])
    np.testing.assert_array_equal(wd.command(), [1.0, 2.0])
    assert wd.misses == 2 and wd.stale
    wd.fresh(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(wd.command(), [3.0, 4.0])
    assert wd.misses == 2


def test_safe_robot_filters_holds_late_actions_and_stops_cleanly():
    clock = FakeClock()
    robot = SimRobot(tiny())
    with SafeRobot(robot, clock=clock) as safe:
        assert safe.running and robot.commands == []  # starting sends nothing
        np.testing.assert_allclose(safe.act([5.0, 5.0, 0.5]), [0.1, 0.5, 0.5])
        clock.t = 0.1
        held = safe.act(None)  # no fresh action yet, within watchdog_s: hold, not a miss
        clock.t = 0.5
        late = safe.act(None)  # past watchdog_s: hold, counted
        np.testing.assert_array_equal(held, [0.1, 0.5, 0.5])
        np.testing.assert_array_equal(late, [0.1, 0.5, 0.5])
        assert safe.watchdog.misses == 1
        with pytest.raises(ValueError, match="is nan"):
            safe.act([np.nan, 0.0, 0.0])
        np.testing.assert_allclose(safe.act([0.2, 0.5, 0.5]), [0.2, 0.5, 0.5])  # fresh again
        obs = safe.observe()
        assert obs["state"].dtype == np.float32
    assert safe.stop_reason == "finished" and robot.closed and not safe.running
    assert len(robot.commands) == 5  # 4 from the loop + the hold at stop
    np.testing.assert_allclose(robot.commands[-1], [0.2, 0.5, 0.5])
    assert safe.stats == {"commands": 5, "clamped": 1, "holds": 3, "misses": 1, "stop_reason": "finished"}
    with pytest.raises(EmergencyStop, match="is stopped"):
        safe.act([0.0, 0.0, 0.0])


def test_ctrl_c_is_an_emergency_stop():
    robot = SimRobot(tiny())
    handler_before = signal.getsignal(signal.SIGINT)
    with SafeRobot(robot) as safe:
        for i in range(10_000):
            safe.act([1.0, 1.0, 1.0])
            if i == 5:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C
        pytest.fail("SIGINT did not stop the loop")
    assert safe.stop_reason == "Ctrl-C" and robot.closed and not safe.running
    assert 7 <= len(robot.commands) < 50  # the loop stopped right away; then one hold
    np.testing.assert_array_equal(robot.commands[-1], robot.commands[-2])  # hold = last safe command
    sent = len(robot.commands)
    with pytest.raises(EmergencyStop):
        safe.act([0.0, 0.0, 0.0])
    with pytest.raises(EmergencyStop):
        safe.observe()
    assert len(robot.commands) == sent
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_ctrl_c_from_outside_stops_a_running_loop():
    script = textwrap.dedent(f"""
        import json, time
        from a1.deploy.robots import SafeRobot, SimRobot, load_robot_config
        robot = SimRobot(load_robot_config({str(SIM_YAML)!r}))
        with SafeRobot(robot) as safe:
            while safe.running:
                safe.act(robot.config.upper)
                if len(robot.commands) == 3:
                    print("ready", flush=True)
                time.sleep(0.01)
        print(json.dumps({{**safe.stats, "closed": robot.closed}}), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["stop_reason"] == "Ctrl-C" and stats["closed"] is True


def test_keepalive_holds_when_the_loop_stalls():
    robot = SimRobot(tiny(watchdog_s=0.05))
    with SafeRobot(robot, keepalive=True) as safe:
        safe.act([0.3, 0.0, 0.5])
        time.sleep(0.4)  # the loop is stuck (e.g. waiting for a slow policy server)
        holds = safe.holds
    assert holds >= 2 and safe.watchdog.misses >= 2
    assert all(np.array_equal(c, [0.1, 0.0, 0.5]) for c in robot.commands)


def test_a_robot_that_cannot_start_safely_is_closed():
    robot = SimRobot(tiny())
    robot.state = np.array([3.0, 0.0, 0.5])  # far outside the limits: the YAML does not fit this robot
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(ValueError, match=r"state\[0\] \(a\) = 3 is outside the limits"), SafeRobot(robot):
        pytest.fail("entered")
    assert robot.closed and robot.commands == []
    assert signal.getsignal(signal.SIGINT) is handler_before


# --- simulated robot ----------------------------------------------------------------------------
def test_sim_robot_moves_toward_commands_and_records_them():
    cfg = load_robot_config(SIM_YAML)
    robot = make_robot(cfg)
    assert isinstance(robot, SimRobot)
    home = np.array(cfg.home)
    target = home + 0.04
    robot.act(target)
    first = np.clip(home + 0.02, cfg.lower, cfg.upper)  # gain 0.5; the open grippers stay at their limit
    np.testing.assert_allclose(robot.observe()["state"], first, atol=1e-6)
    for _ in range(30):
        robot.act(target)
    np.testing.assert_allclose(robot.state, np.clip(target, cfg.lower, cfg.upper), atol=1e-6)
    assert robot.state[6] == 1.0  # the gripper command above its limit is clipped
    assert len(robot.commands) == 31 and np.array_equal(robot.commands[0], target)
    robot.reset()
    np.testing.assert_array_equal(robot.state, home)
    with pytest.raises(ValueError, match=r"finite \(14,\) array"):
        robot.act(np.zeros(13))


def test_sim_robot_renders_frames_that_follow_the_state():
    cfg = load_robot_config(SIM_YAML)
    robot = SimRobot(cfg)
    obs = robot.observe()
    assert set(obs["images"]) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}
    for frame in obs["images"].values():
        assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8
    frames = list(obs["images"].values())
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
    np.testing.assert_array_equal(SimRobot(cfg).observe()["images"]["cam_high"], frames[0])  # deterministic
    robot.act(np.array(cfg.home) + 0.5)
    moved = robot.observe()["images"]
    for cam, frame in obs["images"].items():
        assert not np.array_equal(moved[cam], frame), cam
    views = policy_images(obs, cfg)
    assert views["head"] is obs["images"]["cam_high"] and set(views) == set(VIEWS)
    start = time.perf_counter()
    for _ in range(200):
        robot.observe()
    per_call = (time.perf_counter() - start) / 200
    assert per_call < 0.005, f"observe took {per_call * 1e3:.2f} ms"
    robot.close()
    with pytest.raises(RuntimeError, match="closed"):
        robot.observe()


def test_sim_options_are_checked():
    with pytest.raises(ConfigError, match=r"robot\.options\.speed: not an option of the sim adapter"):
        SimRobot(tiny(options={"speed": 2}))
    with pytest.raises(ConfigError, match=r"robot\.options\.gain: expected a number in \(0, 1\]"):
        SimRobot(tiny(options={"gain": 1.5}))
