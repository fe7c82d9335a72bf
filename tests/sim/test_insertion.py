"""The insertion task of the MuJoCo ALOHA environment (a1/sim/aloha.py) and its scripted expert."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede the mujoco import

import numpy as np
import pytest

import a1.sim.aloha  # noqa: F401 - first: it loads triton before MuJoCo's renderer (see _load_triton_first)

pytest.importorskip("mujoco", reason='MuJoCo ALOHA tests need the `sim` extra: pip install -e ".[sim]"')
pytest.importorskip("dm_control", reason='MuJoCo ALOHA tests need the `sim` extra: pip install -e ".[sim]"')
pytest.importorskip("gym_aloha", reason='MuJoCo ALOHA tests need the `sim` extra: pip install -e ".[sim]"')

from a1.sim import aloha_scene as scene
from a1.sim.aloha import TASK_PROMPTS, TASKS, AlohaEnv, AlohaOptions
from a1.sim.experts import InsertionExpert, TransferExpert, demonstrate, expert_joint_trajectory, make_expert, replay

OPTIONS = AlohaOptions(task="insertion", render=False)


@pytest.fixture(scope="module")
def trajectory() -> np.ndarray:
    """The expert's (400, 14) joint trajectory for seed 0."""
    actions, success = expert_joint_trajectory(OPTIONS, 0)
    assert success, "the expert should succeed on the mocap scene for seed 0"
    return actions


def _hold(env: AlohaEnv) -> np.ndarray:
    """(16,) mocap action that keeps both grippers where they are, closed."""
    d = env.physics.data
    return np.concatenate([d.mocap_pos[0], d.mocap_quat[0], [0.0], d.mocap_pos[1], d.mocap_quat[1], [0.0]])


def test_insertion_is_a_task_with_a_prompt():
    assert "insertion" in TASKS and "peg" in TASK_PROMPTS["insertion"]
    assert isinstance(make_expert("insertion"), InsertionExpert)
    assert isinstance(make_expert("conveyor_transfer_cube", anticipate=False), TransferExpert)
    with pytest.raises(ValueError, match="stack_cubes"):
        make_expert("stack_cubes")


def test_reset_and_step_shapes_both_variants():
    env = AlohaEnv(AlohaOptions(task="insertion"))
    obs = env.reset(seed=4)
    assert set(obs["images"]) == {"head", "left_wrist", "right_wrist"}
    for image in obs["images"].values():
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8 and image.std() > 5
    head = obs["images"]["head"].astype(int)
    assert ((head[..., 0] > 150) & (head[..., 1] < 60) & (head[..., 2] < 60)).any(), "no red peg in the head view"
    assert ((head[..., 2] > 150) & (head[..., 0] < 60) & (head[..., 1] < 60)).any(), "no blue socket in the head view"
    obs, reward, done = env.step(obs["state"])
    assert obs["state"].shape == (14,) and reward == 0 and not done
    mocap = AlohaEnv(OPTIONS, mocap=True)
    mocap.reset(seed=4)
    obs, reward, done = mocap.step(_hold(mocap))
    assert obs["state"].shape == (14,) and obs["images"] == {} and reward == 0 and not done


def test_objects_rest_on_their_sides_of_the_table_per_seed():
    env = AlohaEnv(OPTIONS)
    env.reset(5)
    peg, socket = env.object_position("peg"), env.object_position("socket")
    assert 0.1 <= peg[0] <= 0.2 and -0.2 <= socket[0] <= -0.1 and 0.4 <= peg[1] <= 0.6 and 0.4 <= socket[1] <= 0.6
    obs = env.reset(5)
    for _ in range(25):  # resting, not dropped: half a second later nothing has moved
        obs, _, _ = env.step(obs["state"])
    np.testing.assert_allclose(env.object_position("peg"), peg, atol=2e-3)
    np.testing.assert_allclose(env.object_position("socket"), socket, atol=2e-3)
    assert peg[2] == pytest.approx(scene.PEG_REST_Z) and socket[2] == pytest.approx(scene.SOCKET_REST_Z)
    env.reset(6)
    assert np.linalg.norm(env.object_position("peg") - peg) > 1e-3
    with pytest.raises(KeyError, match="no object 'cube'"):
        env.cube_position()


def test_bad_insertion_options_name_the_key():
    with pytest.raises(ValueError, match="AlohaOptions.peg_x"):
        AlohaOptions(task="insertion", peg_x=(0.2, 0.1))
    with pytest.raises(ValueError, match="AlohaOptions.socket_y"):
        AlohaOptions(task="insertion", socket_y=0.5)
    with pytest.raises(ValueError, match="task must be one of"):
        scene.scene_xml("stack_cubes", "joint")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_succeeds_in_the_joint_replay(seed: int):
    demo = demonstrate(OPTIONS, seed)
    assert demo.success, f"seed {seed}: max reward {demo.rewards.max()}"
    assert demo.actions.shape == (400, 14) and demo.states.shape == (400, 14)


def test_reward_stages_come_in_order(trajectory: np.ndarray):
    """0 at the start; both grasped (1) before both lifted (2) before the peg reaches the pin (4); the
    objects are off the table at stage 2; stopping before the arms move in leaves it at 2."""
    env = AlohaEnv(OPTIONS)
    env.reset(0)
    rewards, lifted = [], []
    for action in trajectory[:300]:
        _, reward, _ = env.step(action)
        rewards.append(reward)
        lifted.append(min(env.object_position("peg")[2] - scene.PEG_REST_Z,
                          env.object_position("socket")[2] - scene.SOCKET_REST_Z))
    rewards = np.array(rewards)
    first = {stage: int(np.argmax(rewards == stage)) for stage in (1, 2)}
    assert (rewards[:100] == 0).all() and rewards[first[1]] == 1 and rewards[first[2]] == 2
    assert 0 < first[1] < first[2]
    assert lifted[first[2] + 20] > 0.01, "stage 2 means both objects are held off the table"
    assert rewards.max() == 2, "300 steps in, the arms are still moving in: the peg is not in yet"
    demo = replay(OPTIONS, 0, trajectory)
    assert demo.success and demo.rewards.max() == 4 and int(np.argmax(demo.rewards == 4)) > first[2]


def test_misaligned_peg_jams_against_the_socket():
    """Carried 3 cm too high, the peg hits the socket's rim (stage 3) and never reaches the pin."""
    env = AlohaEnv(OPTIONS, mocap=True)
    env.reset(0)
    expert = InsertionExpert(right_lift=0.03)
    expert.plan(env)
    for t in range(OPTIONS.episode_steps):
        env.step(expert.action(t))
    assert env.max_reward == 3 and not env.success
