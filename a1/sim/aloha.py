"""The ALOHA bimanual environment a1 evaluates in: gym-aloha's MuJoCo scene driven through the
dm_control physics directly, rendering small images with shadows off (the stock gym wrapper renders
three 480×640 views with shadows every step, ~20× slower).

``env = AlohaEnv(AlohaOptions(task="conveyor_transfer_cube", belt_speed=0.03))``;
``obs = env.reset(seed)``; ``obs, reward, done = env.step(action)``.

* action (14,): per arm 6 absolute joint targets (rad) + the gripper, normalised (0 closed, 1 open),
  left arm first — ALOHA's layout. The mocap variant (``mocap=True``, for the scripted experts)
  takes (16,) instead: per arm the gripper link's xyz + quaternion (w, x, y, z) + the gripper.
* observation: ``{"images": {view: uint8 (H, W, 3)}, "state": float64 (14,)}`` with views
  head (camera ``top``), left_wrist, right_wrist; state = joint positions in the action's layout.
* reward: gym-aloha's stages, 4 = success. Transfer-cube: 1 the right gripper touches the cube, 2
  lifts it, 3 the left gripper touches it, 4 the left gripper holds it off the table (on the conveyor
  the belt counts as the table). Insertion: 1 the left gripper touches the socket and the right one
  the peg, 2 both held off the table, 3 the peg touches the socket with both off the table, 4 the peg
  touches the pin inside the socket.

Headless rendering needs ``MUJOCO_GL=egl`` set before mujoco is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from a1.sim import aloha_scene as scene

TASKS = scene.TASKS
TASK_PROMPTS = {
    "transfer_cube": "pick up the red cube with the right arm and hand it to the left arm",
    "conveyor_transfer_cube": "pick up the red cube from the moving belt with the right arm and hand it to the "
                              "left arm",
    "insertion": "pick up the blue socket with the left arm and the red peg with the right arm, and insert the "
                 "peg into the socket",
}
"""The instruction of each task: what demonstrations are recorded with and evaluations prompt."""
#: Control period (s): 50 Hz, 10 physics substeps of 2 ms.
CONTROL_DT = 0.02
SUBSTEPS = 10
MAX_REWARD = 4
#: The free-jointed objects of each task: object name -> its joint in the scene.
OBJECT_JOINTS = {
    "transfer_cube": {"cube": "red_box_joint"},
    "conveyor_transfer_cube": {"cube": "red_box_joint"},
    "insertion": {"peg": "red_peg_joint", "socket": "blue_socket_joint"},
}


@dataclass
class AlohaOptions:
    """Options of the ALOHA environment (checked on construction; errors name the key)."""

    task: str = "transfer_cube"
    """transfer_cube (the cube rests on the table), conveyor_transfer_cube (it rides a belt) or
    insertion (a peg and a socket rest on the table)."""
    height: int = 96
    """Image height in pixels (all views)."""
    width: int = 128
    """Image width in pixels (all views)."""
    cameras: dict[str, str] = field(
        default_factory=lambda: {"head": "top", "left_wrist": "left_wrist", "right_wrist": "right_wrist"}
    )
    """a1 view name -> MuJoCo camera (left_pillar, right_pillar, top, angle, front_close, left_wrist,
    right_wrist)."""
    render: bool = True
    """Render images into observations (off: ``images`` is empty, for fast expert rollouts)."""
    fast_render: bool = True
    """Turn off the off-screen multisampling too (``vis.quality.offsamples = 0``; ~2× faster)."""
    episode_steps: int = 400
    """Control steps per episode (8 s at 50 Hz); ``done`` after that many steps."""
    cube_x: tuple[float, float] = (0.0, 0.2)
    """Range of the cube's start x (m), sampled uniformly per seed (gym-aloha's range)."""
    cube_y: tuple[float, float] = (0.4, 0.6)
    """Range of the cube's y (m) — on the conveyor, where the cube is ``belt_lead_s`` after reset."""
    belt_speed: float = 0.03
    """Conveyor only: belt velocity along y (m/s); the sign is the direction (+y away from the front)."""
    belt_lead_s: float = 3.0
    """Conveyor only: the cube starts upstream so that it is in ``cube_y`` this many seconds in."""
    peg_x: tuple[float, float] = (0.1, 0.2)
    """Insertion only: range of the peg's x (m), right of the middle (gym-aloha's range)."""
    peg_y: tuple[float, float] = (0.4, 0.6)
    """Insertion only: range of the peg's y (m)."""
    socket_x: tuple[float, float] = (-0.2, -0.1)
    """Insertion only: range of the socket's x (m), left of the middle (gym-aloha's range)."""
    socket_y: tuple[float, float] = (0.4, 0.6)
    """Insertion only: range of the socket's y (m)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"AlohaOptions.task must be one of {TASKS}, got {self.task!r}")
        for key in ("height", "width", "episode_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"AlohaOptions.{key} must be a positive integer, got {value!r}")
        if not self.cameras:
            raise ValueError("AlohaOptions.cameras must name at least one view")
        for key in ("cube_x", "cube_y", "peg_x", "peg_y", "socket_x", "socket_y"):
            value = getattr(self, key)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"AlohaOptions.{key} must be (low, high), got {value!r}")
            lo, hi = value
            if lo > hi:
                raise ValueError(f"AlohaOptions.{key} must be (low, high) with low <= high, got {(lo, hi)}")
        if abs(self.belt_speed) > 0.2:
            raise ValueError(f"AlohaOptions.belt_speed must be within ±0.2 m/s, got {self.belt_speed}")
        if self.belt_lead_s < 0:
            raise ValueError(f"AlohaOptions.belt_lead_s must be >= 0, got {self.belt_lead_s}")

    @property
    def conveyor(self) -> bool:
        """Whether the task has a moving belt."""
        return self.task == "conveyor_transfer_cube"


def normalize_gripper(finger_pos: float) -> float:
    """Finger joint position (m) -> ALOHA's normalised gripper (0 closed, 1 open)."""
    return (finger_pos - scene.GRIPPER_CLOSE) / (scene.GRIPPER_OPEN - scene.GRIPPER_CLOSE)


def unnormalize_gripper(value: float) -> float:
    """ALOHA's normalised gripper (0 closed, 1 open) -> finger joint position (m)."""
    return value * (scene.GRIPPER_OPEN - scene.GRIPPER_CLOSE) + scene.GRIPPER_CLOSE


def _load_triton_first() -> None:
    """Import triton (when installed) before MuJoCo's renderer — so import this module before
    dm_control or mujoco. Mesa's EGL driver (llvmpipe) and triton each carry their own LLVM: with
    Mesa loaded first, a later ``import triton`` (which torch.compile and transformers trigger) kills
    the process with a segmentation fault (seen with mujoco 2.3.7, torch 2.15); in the other order
    both work."""
    try:
        import triton  # noqa: F401
    except Exception:  # not installed (CPU-only torch) or unusable: nothing to order
        pass


_load_triton_first()  # before anything here can import dm_control / mujoco's renderer


class AlohaEnv:
    """One ALOHA scene (joint-controlled, or mocap-controlled with ``mocap=True``)."""

    def __init__(self, options: AlohaOptions | None = None, mocap: bool = False) -> None:
        from dm_control import mujoco  # deferred: the `sim` extra is optional

        self.options = options or AlohaOptions()
        self.mocap = mocap
        xml = scene.scene_xml(self.options.task, "mocap" if mocap else "joint")
        self.physics = mujoco.Physics.from_xml_string(xml, assets=scene.asset_files())
        model = self.physics.model
        model.light_castshadow[:] = 0
        if self.options.fast_render:
            model.vis.quality.offsamples = 0
        names = [model.id2name(i, "camera") for i in range(model.ncam)]
        for view, cam in self.options.cameras.items():
            if cam not in names:
                raise ValueError(f"AlohaOptions.cameras[{view!r}]: no camera {cam!r} in the scene ({names})")
        self._object_adr = {
            name: int(model.jnt_qposadr[model.name2id(joint, "joint")])
            for name, joint in OBJECT_JOINTS[self.options.task].items()
        }
        self._belt_dof = model.jnt_dofadr[model.name2id("belt_joint", "joint")] if self.options.conveyor else None
        self._surfaces = {"table", "belt"}
        self.steps = 0
        self.max_reward = 0

    # -- episode ---------------------------------------------------------------------------------
    def sample_cube(self, seed: int) -> np.ndarray:
        """The cube's start xyz for ``seed`` (upstream of ``cube_y`` on the conveyor)."""
        rng = np.random.default_rng(seed)
        o = self.options
        x, y = rng.uniform(o.cube_x[0], o.cube_x[1]), rng.uniform(o.cube_y[0], o.cube_y[1])
        z = scene.CUBE_HALF
        if o.conveyor:
            y -= o.belt_speed * o.belt_lead_s
            z += scene.BELT_TOP
        return np.array([x, y, z])

    def sample_insertion(self, seed: int) -> dict[str, np.ndarray]:
        """The peg's and the socket's start xyz for ``seed``, both resting on the table, upright."""
        rng = np.random.default_rng(seed)
        o = self.options
        peg = (rng.uniform(*o.peg_x), rng.uniform(*o.peg_y), scene.PEG_REST_Z)
        socket = (rng.uniform(*o.socket_x), rng.uniform(*o.socket_y), scene.SOCKET_REST_Z)
        return {"peg": np.array(peg), "socket": np.array(socket)}

    def sample_objects(self, seed: int) -> dict[str, np.ndarray]:
        """Each object's start xyz for ``seed`` (``OBJECT_JOINTS`` names them), as `reset` places them."""
        if self.options.task == "insertion":
            return self.sample_insertion(seed)
        return {"cube": self.sample_cube(seed)}

    def reset(self, seed: int = 0) -> dict:
        """Start pose, the objects placed for ``seed``, belt moving; returns the first observation."""
        p = self.physics
        with p.reset_context():
            p.data.qpos[:16] = scene.START_ARM_POSE
            for name, xyz in self.sample_objects(seed).items():
                adr = self._object_adr[name]
                p.data.qpos[adr : adr + 3] = xyz
                p.data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0)
            if self.mocap:
                p.data.mocap_pos[0], p.data.mocap_pos[1] = scene.LEFT_GRIPPER_START, scene.RIGHT_GRIPPER_START
                p.data.mocap_quat[:] = (1.0, 0.0, 0.0, 0.0)
                p.data.ctrl[:] = (scene.GRIPPER_CLOSE, -scene.GRIPPER_CLOSE) * 2
            else:
                p.data.ctrl[:] = scene.START_ARM_POSE
            self._drive_belt()
        self.steps = 0
        self.max_reward = 0
        return self.observation()

    def step(self, action: np.ndarray) -> tuple[dict, int, bool]:
        """Apply one 50 Hz action; returns (observation, reward, done)."""
        action = np.asarray(action, dtype=np.float64)
        expected = 16 if self.mocap else 14
        if action.shape != (expected,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be a finite array of shape ({expected},), got shape {action.shape}")
        if self.mocap:
            self._apply_mocap(action)
        else:
            self._apply_joints(action)
        self._drive_belt()
        self.physics.step(SUBSTEPS)
        self.steps += 1
        reward = self.reward()
        self.max_reward = max(self.max_reward, reward)
        done = reward == MAX_REWARD or self.steps >= self.options.episode_steps
        return self.observation(), reward, done

    @property
    def success(self) -> bool:
        """Whether the episode reached the full reward (the left gripper holds the cube up; the peg
        touches the pin)."""
        return self.max_reward == MAX_REWARD

    # -- actuation -------------------------------------------------------------------------------
    def _apply_joints(self, action: np.ndarray) -> None:
        ctrl = np.empty(16)
        for arm in range(2):
            a = action[7 * arm : 7 * arm + 7]
            g = unnormalize_gripper(a[6])
            ctrl[8 * arm : 8 * arm + 8] = (*a[:6], g, -g)
        self.physics.data.ctrl[:] = ctrl

    def _apply_mocap(self, action: np.ndarray) -> None:
        d = self.physics.data
        for arm in range(2):
            a = action[8 * arm : 8 * arm + 8]
            d.mocap_pos[arm] = a[:3]
            d.mocap_quat[arm] = a[3:7] / np.linalg.norm(a[3:7])
            g = unnormalize_gripper(a[7])
            d.ctrl[2 * arm : 2 * arm + 2] = (g, -g)

    def _drive_belt(self) -> None:
        if self._belt_dof is not None:
            self.physics.data.qvel[self._belt_dof] = self.options.belt_speed

    # -- observation -----------------------------------------------------------------------------
    def state(self) -> np.ndarray:
        """(14,) joint positions: per arm 6 joints (rad) + the normalised gripper."""
        q = self.physics.data.qpos
        left, right = q[:8], q[8:16]
        return np.concatenate([left[:6], [normalize_gripper(left[6])], right[:6], [normalize_gripper(right[6])]])

    def gripper_command(self) -> np.ndarray:
        """(2,) the normalised gripper commands (left, right) now applied — what a replay should command."""
        ctrl = self.physics.data.ctrl
        idx = (0, 2) if self.mocap else (6, 14)
        return np.array([normalize_gripper(ctrl[i]) for i in idx])

    def object_position(self, name: str) -> np.ndarray:
        """The xyz now (m) of object ``name`` (cube; or peg, socket)."""
        if name not in self._object_adr:
            raise KeyError(f"task {self.options.task!r} has no object {name!r}; it has {sorted(self._object_adr)}")
        adr = self._object_adr[name]
        return self.physics.data.qpos[adr : adr + 3].copy()

    def cube_position(self) -> np.ndarray:
        """The cube's xyz now (m) (transfer-cube tasks)."""
        return self.object_position("cube")

    def images(self) -> dict[str, np.ndarray]:
        """Each view rendered at the configured size, uint8 (H, W, 3)."""
        o = self.options
        return {
            view: self.physics.render(height=o.height, width=o.width, camera_id=cam) for view, cam in o.cameras.items()
        }

    def observation(self) -> dict:
        """``{"images": {view: uint8 (H, W, 3)}, "state": (14,)}`` (images empty when not rendering)."""
        return {"images": self.images() if self.options.render else {}, "state": self.state()}

    def contacts(self) -> set[frozenset[str]]:
        """The geom-name pairs in contact now."""
        d, m = self.physics.data, self.physics.model
        return {frozenset((m.id2name(c.geom1, "geom"), m.id2name(c.geom2, "geom"))) for c in d.contact[: d.ncon]}

    def reward(self) -> int:
        """gym-aloha's reward stage (0..4) of the task now."""
        pairs = self.contacts()
        if self.options.task == "insertion":
            return _insertion_reward(pairs)
        return self._transfer_reward(pairs)

    def _transfer_reward(self, pairs: set[frozenset[str]]) -> int:
        touch_left = frozenset(("red_box", "vx300s_left/10_left_gripper_finger")) in pairs
        touch_right = frozenset(("red_box", "vx300s_right/10_right_gripper_finger")) in pairs
        on_surface = any(frozenset(("red_box", s)) in pairs for s in self._surfaces)
        reward = 0
        if touch_right:
            reward = 2 if not on_surface else 1
        if touch_left:
            reward = 4 if not on_surface else 3
        return reward


def _insertion_reward(pairs: set[frozenset[str]]) -> int:
    """gym-aloha's insertion stage (0..4) from the geom pairs in contact (unordered pairs)."""

    def touches(a: str, others: tuple[str, ...]) -> bool:
        return any(frozenset((a, b)) in pairs for b in others)

    walls = scene.SOCKET_WALLS
    touch_left = any(touches(w, ("vx300s_left/10_left_gripper_finger",)) for w in walls)
    touch_right = touches("red_peg", ("vx300s_right/10_right_gripper_finger",))
    peg_on_table = touches("red_peg", ("table",))
    socket_on_table = any(touches(w, ("table",)) for w in walls)
    lifted = not peg_on_table and not socket_on_table
    reward = 0
    if touch_left and touch_right:
        reward = 2 if lifted else 1
    if touches("red_peg", walls) and lifted:
        reward = 3
    if touches("red_peg", ("pin",)):
        reward = 4
    return reward
