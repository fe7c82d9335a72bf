"""The MuJoCo ALOHA environment (a1/sim/aloha.py) and its scripted experts (a1/sim/experts.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede the mujoco import

import numpy as np
import pytest

import a1.sim.aloha  # noqa: F401 - first: it loads triton before MuJoCo's renderer (see _load_triton_first)

pytest.importorskip("mujoco", reason='MuJoCo ALOHA tests need the `sim` extra: pip install -e ".[sim]"')
pytest.importorskip("dm_control", reason='MuJoCo ALOHA tests need the `sim` extra: pip install -e ".[sim]"')
pytest.importorskip("gym_aloha", reason='MuJoCo ALOHA tests need the `sim` extra: pip install -e ".[sim]"')

from a1.sim.aloha import AlohaEnv, AlohaOptions
from a1.sim.experts import demonstrate, expert_joint_trajectory, replay

VIEWS = {"head", "left_wrist", "right_wrist"}


@pytest.fixture(scope="module")
def conveyor_env() -> AlohaEnv:
    return AlohaEnv(AlohaOptions(task="conveyor_transfer_cube", belt_speed=0.03))


def test_reset_and_step_shapes(conveyor_env: AlohaEnv):
    obs = conveyor_env.reset(seed=3)
    assert set(obs["images"]) == VIEWS
    for image in obs["images"].values():
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert image.std() > 5, "a rendered view should not be blank"
    assert obs["state"].shape == (14,)
    np.testing.assert_allclose(obs["state"][[0, 1, 2, 7, 8, 9]], [0, -0.96, 1.16, 0, -0.96, 1.16], atol=1e-6)
    obs, reward, done = conveyor_env.step(obs["state"])
    assert obs["state"].shape == (14,) and obs["state"].dtype == np.float64
    assert reward == 0 and not done


def test_image_size_is_configurable():
    env = AlohaEnv(AlohaOptions(height=48, width=64, cameras={"head": "angle"}))
    obs = env.reset(0)
    assert list(obs["images"]) == ["head"] and obs["images"]["head"].shape == (48, 64, 3)


def test_same_seed_same_start_different_seed_different_cube():
    env = AlohaEnv(AlohaOptions(render=False))
    env.reset(7)
    a = env.cube_position()
    env.reset(7)
    np.testing.assert_array_equal(env.cube_position(), a)
    env.reset(8)
    assert np.linalg.norm(env.cube_position() - a) > 1e-3


def test_belt_carries_the_cube(conveyor_env: AlohaEnv):
    conveyor_env.options.render = False
    try:
        obs = conveyor_env.reset(seed=1)
        start = conveyor_env.cube_position()
        for _ in range(100):  # 2 s at 0.03 m/s: 6 cm along +y
            obs, _, _ = conveyor_env.step(obs["state"])
        moved = conveyor_env.cube_position() - start
    finally:
        conveyor_env.options.render = True
    assert moved[1] == pytest.approx(0.06, abs=0.01)
    assert abs(moved[0]) < 0.005


def test_bad_options_and_actions_name_the_key():
    with pytest.raises(ValueError, match="AlohaOptions.task"):
        AlohaOptions(task="stack_cubes")
    with pytest.raises(ValueError, match="AlohaOptions.height"):
        AlohaOptions(height=0)
    with pytest.raises(ValueError, match="AlohaOptions.belt_speed"):
        AlohaOptions(belt_speed=1.0)
    with pytest.raises(ValueError, match=r"AlohaOptions.cameras\['head'\]"):
        AlohaEnv(AlohaOptions(cameras={"head": "nope"}))
    env = AlohaEnv(AlohaOptions(render=False))
    env.reset(0)
    with pytest.raises(ValueError, match=r"shape \(14,\)"):
        env.step(np.zeros(16))


def test_speed_bound_50_steps_three_views():
    env = AlohaEnv(AlohaOptions())
    obs = env.reset(0)
    env.step(obs["state"])  # the first render creates the GL context
    start = time.perf_counter()
    for _ in range(50):
        obs, _, _ = env.step(obs["state"])
    elapsed = time.perf_counter() - start
    # Measured ~25-35 ms per step on 2 CPU cores; the stock gym-aloha wrapper takes ~220 ms.
    assert elapsed < 10.0, f"50 rendered steps took {elapsed:.1f} s"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_succeeds_on_transfer_cube(seed: int):
    demo = demonstrate(AlohaOptions(render=False), seed)
    assert demo.success, f"seed {seed}: max reward {demo.rewards.max()}"
    assert demo.actions.shape == (400, 14) and demo.states.shape == (400, 14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anticipating_expert_succeeds_on_the_conveyor(seed: int):
    options = AlohaOptions(task="conveyor_transfer_cube", belt_speed=0.03, render=False)
    demo = demonstrate(options, seed, anticipate=True)
    assert demo.success, f"seed {seed}: max reward {demo.rewards.max()}"


def test_static_expert_misses_the_moving_cube():
    options = AlohaOptions(task="conveyor_transfer_cube", belt_speed=0.03, render=False)
    for seed in (0, 1):
        actions, _ = expert_joint_trajectory(options, seed, anticipate=False)
        demo = replay(options, seed, actions)
        assert not demo.success and demo.rewards.max() == 0, f"seed {seed}: the static expert should miss"


def test_demonstration_records_rendered_views():
    options = AlohaOptions(episode_steps=20)
    actions, _ = expert_joint_trajectory(options, 0)
    demo = replay(options, 0, actions)
    assert set(demo.images) == VIEWS
    assert demo.images["head"].shape == (20, 96, 128, 3) and demo.images["head"].dtype == np.uint8
    # the arms move between the first and the last frame
    assert np.abs(demo.images["head"][-1].astype(int) - demo.images["head"][0].astype(int)).mean() > 0.5


def test_recorded_demonstrations_load_through_the_a1_data_pipeline(tmp_path):
    """`python -m a1.sim.record` → a LeRobot v3.0 folder that a1's sources and sample windows read
    unchanged (default camera keys, 14 dims, the task's instruction)."""
    from a1.data.sample import make_sample
    from a1.data.sources import DatasetConfig, open_source
    from a1.sim.aloha import TASK_PROMPTS
    from tests.conftest import ROOT, tiny_qwen

    out = tmp_path / "demos"
    cmd = [sys.executable, "-m", "a1.sim.record", str(out), "--task", "conveyor_transfer_cube", "--episodes", "2",
           "--episode-steps", "40", "--keep-failures", "--height", "48", "--width", "64"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["episodes"] == 2
    views = tiny_qwen().views
    source = open_source(DatasetConfig(name="sim", weight=1.0, path=str(out)), views)
    assert len(source.episodes) == 2 and source.episodes[0].length == 40
    sample = make_sample(source.episodes[1], 20, views, 15, 16, 0, "test", 64, "letterbox")
    assert sample.images.shape == (3, 3, 3, 64, 64) and sample.image_valid.all()
    assert sample.instruction == TASK_PROMPTS["conveyor_transfer_cube"]
    assert sample.state.shape == (14,) and sample.actions.shape == (16, 14)
    record = json.loads((out / "meta" / "a1_record.json").read_text())
    assert [e["seed"] for e in record["episodes"]] == [0, 1]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 2 and "not empty" in again.stderr  # never over a recording
