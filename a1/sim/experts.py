"""Scripted experts for the ALOHA tasks, and the demonstrations they produce.

An expert is a list of end-effector waypoints per arm (time step, gripper-link xyz, quaternion,
gripper opening), linearly interpolated and played on the mocap variant of the scene. The joint
trajectory that results (arm joint positions + the commanded grippers) is then replayed, with
rendering, in the joint-controlled scene: that replay is the demonstration, and its reward decides
success — exactly what a policy trained on it would have to reproduce.

Transfer-cube (`TransferExpert`): the right arm descends on the cube, closes, and carries it to a
meeting point above the middle of the table; the left arm comes in from the other side, closes on the
cube, the right arm lets go, and the left arm pulls back holding it.

Insertion (`InsertionExpert`): the left arm descends on the socket and the right arm on the peg, both
close and lift; they carry them to either side of a meeting point above the middle of the table, the
peg's axis in line with the socket's, then move in towards each other until the peg slides into the
socket and touches the pin.

`make_expert` picks the expert of a task; `expert_joint_trajectory`, `replay` and `demonstrate` are
the same for every task.

On the conveyor the cube moves while the right arm approaches. The anticipating expert
(``anticipate=True``) aims each grasp waypoint where the cube will be at that step (start position
+ belt velocity × time) and so tracks the belt while closing; the static expert aims at where the
cube was at reset, as on the static task, and misses once the belt has moved it far enough.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np

from a1.sim.aloha import CONTROL_DT, AlohaEnv, AlohaOptions

#: Where the two grippers meet to hand the cube over (m).
MEET_XYZ = np.array([0.0, 0.5, 0.25])
#: Steps at which the right gripper is above the cube, at grasp height, and closed on it.
APPROACH_T, DESCEND_T, CLOSE_T = 90, 130, 170
#: Insertion: the point (m) the peg and the socket are brought together above.
INSERT_MEET_XYZ = np.array([0.0, 0.5, 0.15])


def pitch(degrees: float) -> np.ndarray:
    """The (w, x, y, z) quaternion of a rotation about the y axis."""
    half = np.deg2rad(degrees) / 2
    return np.array([np.cos(half), 0.0, np.sin(half), 0.0])


@dataclass(frozen=True)
class Waypoint:
    """One end-effector target: reached at control step ``t``."""

    t: int
    xyz: np.ndarray
    quat: np.ndarray
    gripper: float
    """Normalised opening: 0 closed, 1 open."""


def interpolate(waypoints: list[Waypoint], t: int) -> np.ndarray:
    """(8,) xyz + quat + gripper at step ``t``, linear between the waypoints around it."""
    if t <= waypoints[0].t:
        w = waypoints[0]
        return np.concatenate([w.xyz, w.quat, [w.gripper]])
    for a, b in pairwise(waypoints):
        if a.t <= t <= b.t:
            f = (t - a.t) / (b.t - a.t)
            quat = (1 - f) * a.quat + f * b.quat
            pose = [(1 - f) * a.xyz + f * b.xyz, quat / np.linalg.norm(quat), [(1 - f) * a.gripper + f * b.gripper]]
            return np.concatenate(pose)
    w = waypoints[-1]
    return np.concatenate([w.xyz, w.quat, [w.gripper]])


@dataclass
class WaypointExpert(ABC):
    """An expert as two lists of end-effector waypoints (left arm, right arm), planned by `plan` from
    the scene at reset and interpolated by `action` on the mocap variant."""

    left: list[Waypoint] = field(default_factory=list, init=False)
    right: list[Waypoint] = field(default_factory=list, init=False)

    @abstractmethod
    def plan(self, env: AlohaEnv) -> None:
        """Fill ``left`` and ``right`` for the episode the mocap ``env`` was just reset into."""

    def action(self, t: int) -> np.ndarray:
        """(16,) mocap action at step ``t``: left pose + gripper, right pose + gripper."""
        if not self.left or not self.right:
            raise RuntimeError(f"{type(self).__name__}.plan(env) must be called after env.reset and before action()")
        return np.concatenate([interpolate(self.left, t), interpolate(self.right, t)])


@dataclass
class TransferExpert(WaypointExpert):
    """End-effector waypoints for transfer-cube, planned from the cube's pose at reset."""

    anticipate: bool = True
    """Aim the grasp where the cube will be (start + belt velocity × time); False aims where it was."""

    def plan(self, env: AlohaEnv) -> None:
        """Plan both arms' waypoints for the episode ``env`` was just reset into."""
        start = env.cube_position()
        velocity = np.array([0.0, env.options.belt_speed if env.options.conveyor else 0.0, 0.0])
        lead = 1.0 if self.anticipate else 0.0

        def cube_at(t: int) -> np.ndarray:
            return start + lead * velocity * t * CONTROL_DT

        down = np.array([0.0, 0.0, -0.015])
        grasp_q = pitch(-60.0)  # the right gripper tilts down onto the cube
        meet_q = pitch(60.0)  # the left gripper tilts down towards the meeting point
        ident = np.array([1.0, 0.0, 0.0, 0.0])
        left0, right0 = env.physics.data.mocap_pos.copy()
        self.right = [
            Waypoint(0, right0, ident, 0.0),
            Waypoint(APPROACH_T, cube_at(APPROACH_T) + [0, 0, 0.08], grasp_q, 1.0),
            Waypoint(DESCEND_T, cube_at(DESCEND_T) + down, grasp_q, 1.0),
            Waypoint(CLOSE_T, cube_at(CLOSE_T) + down, grasp_q, 0.0),
            Waypoint(200, MEET_XYZ + [0.05, 0, 0], ident, 0.0),
            Waypoint(220, MEET_XYZ, ident, 0.0),
            Waypoint(310, MEET_XYZ, ident, 0.0),
            Waypoint(360, MEET_XYZ + [0.1, 0, 0], ident, 1.0),
            Waypoint(400, MEET_XYZ + [0.1, 0, 0], ident, 1.0),
        ]
        self.left = [
            Waypoint(0, left0, ident, 0.0),
            Waypoint(100, MEET_XYZ + [-0.1, 0, -0.02], meet_q, 1.0),
            Waypoint(260, MEET_XYZ + [0.02, 0, -0.02], meet_q, 1.0),
            Waypoint(310, MEET_XYZ + [0.02, 0, -0.02], meet_q, 0.0),
            Waypoint(360, MEET_XYZ + [-0.1, 0, 0], meet_q, 0.0),
            Waypoint(400, MEET_XYZ + [-0.1, 0, 0], meet_q, 0.0),
        ]


@dataclass
class InsertionExpert(WaypointExpert):
    """End-effector waypoints for insertion, planned from the peg's and the socket's poses at reset."""

    grasp_dz: tuple[float, float] = (-0.002, 0.01)
    """Gripper-link height (m) above the (socket, peg) centre when closing on it."""
    meet_gap: float = 0.05
    """How far (m) from the meeting point's x each gripper link ends, the peg inside the socket."""
    right_lift: float = 0.00715
    """How much higher (m) the right gripper carries the peg than the left the socket, so that their
    axes line up (the two are grasped at different heights relative to their centres)."""

    def plan(self, env: AlohaEnv) -> None:
        """Plan both arms' waypoints for the episode ``env`` was just reset into."""
        socket, peg = env.object_position("socket"), env.object_position("peg")
        left0, right0 = env.physics.data.mocap_pos.copy()
        ident = np.array([1.0, 0.0, 0.0, 0.0])
        meet = INSERT_MEET_XYZ
        side = np.array([1.0, 0.0, 0.0])
        self.left = self._arm(left0, ident, socket, self.grasp_dz[0], pitch(60.0), meet - side * self.meet_gap, -side)
        self.right = self._arm(right0, ident, peg, self.grasp_dz[1], pitch(-60.0),
                               meet + side * self.meet_gap + [0, 0, self.right_lift], side)

    @staticmethod
    def _arm(start: np.ndarray, start_q: np.ndarray, target: np.ndarray, grasp_dz: float, q: np.ndarray,
             end: np.ndarray, outward: np.ndarray) -> list[Waypoint]:
        """One arm: above ``target``, down, close, lift to 5 cm outward of ``end``, move in to ``end``."""
        grasp = target + [0.0, 0.0, grasp_dz]
        return [
            Waypoint(0, start, start_q, 0.0),
            Waypoint(120, grasp + [0.0, 0.0, 0.11], q, 1.0),  # above the object, open
            Waypoint(170, grasp, q, 1.0),  # down
            Waypoint(220, grasp, q, 0.0),  # closed on it
            Waypoint(285, end + outward * 0.05, q, 0.0),  # lifted, in line with the other
            Waypoint(340, end, q, 0.0),  # moved in: the peg in the socket
            Waypoint(400, end, q, 0.0),
        ]


def make_expert(task: str, anticipate: bool = True) -> WaypointExpert:
    """The scripted expert of ``task`` (``anticipate``: transfer-cube's, see `TransferExpert`; nothing
    moves on its own in insertion, so it has no effect there)."""
    if task == "insertion":
        return InsertionExpert()
    if task in ("transfer_cube", "conveyor_transfer_cube"):
        return TransferExpert(anticipate=anticipate)
    raise ValueError(f"no scripted expert for task {task!r}")


def expert_joint_trajectory(options: AlohaOptions, seed: int, anticipate: bool = True) -> tuple[np.ndarray, bool]:
    """Play the task's expert on the mocap scene (no rendering); returns ((T, 14) joint actions, success
    there)."""
    opts = replace(options, render=False)
    env = AlohaEnv(opts, mocap=True)
    env.reset(seed)
    expert = make_expert(opts.task, anticipate)
    expert.plan(env)
    actions = []
    for t in range(opts.episode_steps):
        env.step(expert.action(t))
        joints, grip = env.state(), env.gripper_command()
        joints[6], joints[13] = grip
        actions.append(joints)
    return np.stack(actions), env.success


@dataclass
class Demonstration:
    """One replayed episode: what a policy sees and does at each of its T steps."""

    seed: int
    states: np.ndarray
    """(T, 14) joint positions before each action."""
    actions: np.ndarray
    """(T, 14) joint targets commanded."""
    images: dict[str, np.ndarray]
    """view -> uint8 (T, H, W, 3), seen before each action (empty when not rendering)."""
    rewards: np.ndarray
    """(T,) reward after each action."""
    success: bool


def replay(options: AlohaOptions, seed: int, actions: np.ndarray) -> Demonstration:
    """Replay a (T, 14) joint trajectory in the joint-controlled scene (rendering if options.render)."""
    env = AlohaEnv(options)
    obs = env.reset(seed)
    states, rewards = [], []
    frames: dict[str, list[np.ndarray]] = {view: [] for view in obs["images"]}
    for action in actions:
        states.append(obs["state"])
        for view, image in obs["images"].items():
            frames[view].append(image)
        obs, reward, _ = env.step(action)
        rewards.append(reward)
    images = {view: np.stack(f) for view, f in frames.items()}
    return Demonstration(seed, np.stack(states), np.asarray(actions), images, np.asarray(rewards), env.success)


def demonstrate(options: AlohaOptions, seed: int, anticipate: bool = True) -> Demonstration:
    """The expert's demonstration for ``seed``: planned on the mocap scene, replayed in joint space."""
    actions, _ = expert_joint_trajectory(options, seed, anticipate)
    return replay(options, seed, actions)
