"""Recording ALOHA episodes for pictures (a1/eval/filmstrip.py): kept frames, object and gripper
tracks, reward stages — around the evaluation harness, with the same outcomes."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede the mujoco import

import numpy as np
import pytest

import a1.sim.aloha  # noqa: F401 - first: it loads triton before MuJoCo's renderer (see _load_triton_first)

pytest.importorskip("dm_control", reason='the MuJoCo simulator needs the `sim` extra: pip install -e ".[sim]"')

from a1.eval.filmstrip import RecordingEnv, planned_grasp, record_expert  # noqa: E402
from a1.eval.sim import EvalOptions, run_episode, run_expert_episode  # noqa: E402
from a1.sim.aloha import CONTROL_DT, AlohaEnv, AlohaOptions  # noqa: E402

SMALL = {"task": "conveyor_transfer_cube", "belt_speed": 0.03, "height": 24, "width": 32}


def test_it_keeps_every_nth_frame_and_tracks_the_cube_on_the_belt():
    env = RecordingEnv(AlohaEnv(AlohaOptions(episode_steps=12, **SMALL)), every=5, views=("head", "right_wrist"))
    obs = env.reset(seed=3)
    done = False
    while not done:
        obs, _, done = env.step(obs["state"])  # hold the start pose
    film = env.recording
    assert env.steps == 12 and not env.success  # the wrapped env's attributes
    assert film.steps.tolist() == [0, 5, 10] and film.seed == 3 and film.task == SMALL["task"]
    assert set(film.frames) == {"head", "right_wrist"}
    assert film.frames["head"].shape == (3, 24, 32, 3) and film.frames["head"].dtype == np.uint8
    assert set(film.positions) == {"cube", "left_gripper", "right_gripper"}
    assert all(p.shape == (13, 3) for p in film.positions.values())
    assert film.rewards.shape == (12,) and film.stage_steps == {} and not film.success
    moved = film.positions["cube"][-1, 1] - film.positions["cube"][0, 1]
    assert moved == pytest.approx(0.03 * 12 * CONTROL_DT, rel=0.2)  # the belt carries it along +y
    np.testing.assert_array_equal(film.frame(5)["head"], film.frames["head"][1])
    with pytest.raises(KeyError, match="no frame kept at step 3"):
        film.frame(3)


def test_it_records_the_harness_policy_episode_unchanged():
    """`a1.eval.sim.run_episode` drives a RecordingEnv like the env itself (a stand-in runtime that
    holds the measured state)."""

    class Hold:
        def step(self, raw):
            assert set(raw) == {"images", "state", "prompt"} and raw["images"]["head"].shape == (24, 32, 3)
            return raw["state"]

        def close(self):
            pass

    class Runtime:
        def episode(self, execute=None, ensemble=None):
            return Hold()

    opts = EvalOptions(policy="unused", episode_steps=7, execute=4)
    env = RecordingEnv(AlohaEnv(AlohaOptions(episode_steps=7, **SMALL)), every=3)
    result = run_episode(Runtime(), env, 5, opts, "a prompt", None)
    film = env.recording
    assert result["steps"] == 7 and result["seed"] == 5 and not result["success"]
    assert film.steps.tolist() == [0, 3, 6] and len(film.rewards) == 7
    assert set(film.frames) == {"head", "left_wrist", "right_wrist"}


def test_the_recorded_expert_has_the_scored_outcome_and_its_stages():
    options = AlohaOptions(task="conveyor_transfer_cube", belt_speed=0.03, render=False)
    film = record_expert(options, 0, anticipate=True, every=100, views=("head",))
    assert film.success == run_expert_episode(options, 0, True, None)["success"] is True
    assert sorted(film.stage_steps) == [1, 2, 3, 4]
    stages = [film.stage_steps[s] for s in (1, 2, 3, 4)]
    assert stages == sorted(stages)
    assert set(stages) | {0, 100, 200, 300, 400} == set(film.steps.tolist())  # every 100th + the stages
    assert film.frames["head"].shape[1:] == (96, 128, 3) and film.frames["head"].std() > 5
    static = record_expert(options, 0, anticipate=False, every=400, views=())
    assert not static.success and static.frames == {} and len(static.positions["cube"]) == 401


def test_the_planned_grasp_aims_ahead_of_the_cube_only_when_anticipating():
    options = AlohaOptions(task="conveyor_transfer_cube", belt_speed=0.03, render=False)
    start = AlohaEnv(options).sample_cube(2)
    ahead, static = planned_grasp(options, 2, True), planned_grasp(options, 2, False)
    assert static.close_xyz[1] == pytest.approx(start[1]) and static.descend_xyz[1] == pytest.approx(start[1])
    assert ahead.close_xyz[1] == pytest.approx(start[1] + 0.03 * ahead.close_t * CONTROL_DT)
    with pytest.raises(ValueError, match="transfer-cube"):
        planned_grasp(AlohaOptions(task="insertion"), 0)


def test_bad_arguments():
    env = AlohaEnv(AlohaOptions(**SMALL))
    with pytest.raises(ValueError, match="every must be >= 1"):
        RecordingEnv(env, every=0)
    with pytest.raises(ValueError, match="not cameras"):
        RecordingEnv(env, views=("top",))
    with pytest.raises(RuntimeError, match="reset"):
        RecordingEnv(env).step(np.zeros(14))
