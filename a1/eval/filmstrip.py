"""Record what happens in an ALOHA episode, for pictures of closed-loop rollouts (notebook 07): the
camera frames every ``every`` steps and at the first step of each reward stage, and where the objects
and the two grippers are at every step.

Two ways in, both around the harness rather than beside it:

* `RecordingEnv` wraps an `a1.sim.aloha.AlohaEnv` and records while anything drives it — e.g. the
  evaluation's own policy episode, unchanged::

      env = RecordingEnv(AlohaEnv(options), every=10)
      result = a1.eval.sim.run_episode(runtime, env, seed, eval_options, prompt, None)
      film = env.recording          # an EpisodeRecording

* `record_policy_episode` does exactly that for an `a1.eval.sim.EvalOptions`: one episode of
  `a1.eval.sim.evaluate`'s (same env options, prompt, statistics and runtime options), recorded;
* `record_expert` replays the scripted expert's joint trajectory — the demonstration that
  `a1.eval.sim.run_expert_episode` scores — rendering only the frames it keeps (~1 s an episode).

`planned_grasp` says where the transfer expert plans to close the right gripper: on the conveyor,
where the cube will be (anticipating) or where it was at reset (static).

Headless rendering needs ``MUJOCO_GL=egl`` set before mujoco is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from a1.sim.aloha import MAX_REWARD, AlohaEnv, AlohaOptions

#: Each gripper's position is the midpoint of its two finger links (where it closes on an object).
GRIPPER_FINGERS = {
    "left_gripper": ("vx300s_left/left_finger_link", "vx300s_left/right_finger_link"),
    "right_gripper": ("vx300s_right/left_finger_link", "vx300s_right/right_finger_link"),
}
#: What each reward stage of the transfer-cube tasks means (gym-aloha's; see `a1.sim.aloha`).
TRANSFER_STAGES = {
    1: "the right gripper touches the cube",
    2: "the right gripper lifts it",
    3: "the left gripper touches it",
    4: "the left gripper holds it up: success",
}


@dataclass
class EpisodeRecording:
    """One recorded episode. Step s means "after s actions" (0: right after the reset)."""

    seed: int
    task: str
    every: int
    """Frames of every ``every``-th step were kept (and those of ``stage_steps``)."""
    steps: np.ndarray
    """(F,) int: the step of each kept frame, ascending."""
    frames: dict[str, np.ndarray]
    """view -> uint8 (F, H, W, 3): the frames seen at ``steps``."""
    positions: dict[str, np.ndarray]
    """name -> (T + 1, 3) xyz (m) at steps 0 … T: the task's objects (cube; peg, socket) and
    ``left_gripper`` / ``right_gripper`` (the midpoint of the fingers)."""
    rewards: np.ndarray
    """(T,) int: the reward stage (0–4) after each action."""
    stage_steps: dict[int, int]
    """reward stage -> the first step that reached it (stages never reached are absent); the frames
    of these steps are always kept."""

    @property
    def success(self) -> bool:
        """Whether the episode reached the full reward (`a1.sim.aloha.MAX_REWARD`)."""
        return len(self.rewards) > 0 and int(self.rewards.max()) == MAX_REWARD

    def best_reward(self, step: int) -> int:
        """The highest reward stage reached by ``step`` (0 at step 0)."""
        return int(self.rewards[:step].max(initial=0))

    def frame(self, step: int) -> dict[str, np.ndarray]:
        """view -> (H, W, 3) the kept frame of ``step`` (KeyError when that step was not kept)."""
        hits = np.flatnonzero(self.steps == step)
        if not len(hits):
            raise KeyError(f"no frame kept at step {step}; kept: {self.steps.tolist()}")
        return {view: f[hits[0]] for view, f in self.frames.items()}


class RecordingEnv:
    """An `AlohaEnv` that records an `EpisodeRecording` of each episode (``.recording``) while it is
    driven through ``reset`` / ``step``; every other attribute is the wrapped env's.

    Args:
        env: the environment to drive. Without rendering (``options.render=False``) only the kept
            frames are rendered; with it, they are taken from the observations.
        every: keep the frames of every ``every``-th step (and of the first step of each reward stage).
        views: the views to keep (None: all of ``env.options.cameras``).
    """

    def __init__(self, env: AlohaEnv, every: int = 10, views: tuple[str, ...] | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        views = tuple(env.options.cameras) if views is None else tuple(views)
        unknown = [v for v in views if v not in env.options.cameras]
        if unknown:
            raise ValueError(f"views {unknown} are not cameras of the env ({list(env.options.cameras)})")
        self.env, self.every, self.views = env, every, views
        self._seed: int | None = None

    def __getattr__(self, name: str):
        return getattr(self.env, name)

    def reset(self, seed: int = 0) -> dict:
        obs = self.env.reset(seed)
        self._seed, self._best = seed, 0
        self._steps: list[int] = []
        self._frames: dict[str, list[np.ndarray]] = {v: [] for v in self.views}
        self._positions: dict[str, list[np.ndarray]] = {name: [] for name in self._tracked()}
        self._rewards: list[int] = []
        self._stages: dict[int, int] = {}
        self._record(obs, keep=True)
        return obs

    def step(self, action: np.ndarray) -> tuple[dict, int, bool]:
        if self._seed is None:
            raise RuntimeError("RecordingEnv.reset(seed) must be called before step()")
        obs, reward, done = self.env.step(action)
        self._rewards.append(int(reward))
        new_stage = reward > self._best
        for stage in range(self._best + 1, reward + 1):  # a jump 1 -> 3 reaches 2 at the same step
            self._stages[stage] = self.env.steps
        self._best = max(self._best, reward)
        self._record(obs, keep=new_stage or self.env.steps % self.every == 0)
        return obs, reward, done

    @property
    def recording(self) -> EpisodeRecording:
        """The episode recorded since the last ``reset``."""
        if self._seed is None:
            raise RuntimeError("nothing recorded yet: call reset(seed) and step()")
        o = self.env.options
        empty = np.zeros((0, o.height, o.width, 3), np.uint8)
        return EpisodeRecording(
            seed=self._seed, task=o.task, every=self.every, steps=np.asarray(self._steps, dtype=np.int64),
            frames={v: np.stack(f) if f else empty for v, f in self._frames.items()},
            positions={k: np.stack(p) for k, p in self._positions.items()},
            rewards=np.asarray(self._rewards, dtype=np.int64), stage_steps=dict(self._stages))

    def _tracked(self) -> list[str]:
        from a1.sim.aloha import OBJECT_JOINTS

        return [*OBJECT_JOINTS[self.env.options.task], *GRIPPER_FINGERS]

    def _record(self, obs: dict, keep: bool) -> None:
        xpos = self.env.physics.named.data.xpos
        for name in self._positions:
            if name in GRIPPER_FINGERS:
                a, b = GRIPPER_FINGERS[name]
                self._positions[name].append((xpos[a] + xpos[b]) / 2)
            else:
                self._positions[name].append(self.env.object_position(name))
        if keep and self.views:
            images = obs["images"] if obs.get("images") else self.env.images()
            self._steps.append(self.env.steps)
            for v in self.views:
                self._frames[v].append(np.array(images[v], copy=True))


def record_expert(options: AlohaOptions, seed: int, anticipate: bool = True, every: int = 25,
                  views: tuple[str, ...] | None = None) -> EpisodeRecording:
    """The scripted expert's episode for ``seed``: its joint trajectory (planned on the mocap scene,
    `a1.sim.experts.expert_joint_trajectory`) replayed in the joint-controlled scene for all
    ``options.episode_steps`` steps, as `a1.sim.experts.replay` does — the same physics, so the same
    outcome as `a1.eval.sim.run_expert_episode` — rendering only the kept frames."""
    from a1.sim.experts import expert_joint_trajectory

    actions, _ = expert_joint_trajectory(options, seed, anticipate)
    env = RecordingEnv(AlohaEnv(replace(options, render=False)), every, views)
    env.reset(seed)
    for action in actions:
        env.step(action)
    return env.recording


@dataclass
class PlannedGrasp:
    """Where the transfer expert plans the right gripper link while it descends and closes on the cube."""

    descend_t: int
    """Step at which the gripper reaches grasp height (still open)."""
    close_t: int
    """Step at which it is closed."""
    descend_xyz: np.ndarray
    """(3,) the gripper link's target at ``descend_t`` (m)."""
    close_xyz: np.ndarray
    """(3,) its target at ``close_t`` (m)."""


def planned_grasp(options: AlohaOptions, seed: int, anticipate: bool = True) -> PlannedGrasp:
    """The transfer expert's planned grasp for ``seed`` (transfer-cube tasks): on the conveyor the
    anticipating expert aims where the cube will be at each step, the static one where it was at reset."""
    from a1.sim.experts import CLOSE_T, DESCEND_T, make_expert

    if options.task not in ("transfer_cube", "conveyor_transfer_cube"):
        raise ValueError(f"planned_grasp is for the transfer-cube tasks, got {options.task!r}")
    env = AlohaEnv(replace(options, render=False), mocap=True)
    env.reset(seed)
    expert = make_expert(options.task, anticipate)
    expert.plan(env)
    at = {w.t: w.xyz for w in expert.right}
    return PlannedGrasp(DESCEND_T, CLOSE_T, np.asarray(at[DESCEND_T]), np.asarray(at[CLOSE_T]))


def record_policy_episode(opts, seed: int, every: int = 10, views: tuple[str, ...] | None = None,
                          runtime=None) -> tuple[dict, EpisodeRecording]:
    """One closed-loop episode of the policy of ``opts`` (an `a1.eval.sim.EvalOptions`) for ``seed``,
    run by the harness's own `a1.eval.sim.run_episode` and recorded; returns (its result, as in the
    evaluation report; the recording). ``runtime``: a loaded one to reuse (None: `a1.eval.sim.load_runtime`).
    A freshly loaded runtime draws the same noise as `evaluate`'s, so in eager mode the episode of
    the evaluation's first seed is the same episode."""
    from a1.eval.sim import env_options, load_runtime, run_episode
    from a1.sim.aloha import TASK_PROMPTS

    if opts.policy is None:
        raise ValueError("record_policy_episode needs opts.policy (a policy folder); experts: record_expert")
    runtime = runtime if runtime is not None else load_runtime(opts)
    env = RecordingEnv(AlohaEnv(env_options(opts)), every, views)
    result = run_episode(runtime, env, seed, opts, opts.prompt or TASK_PROMPTS[opts.task], None)
    return result, env.recording
