"""The synthetic bimanual world: scene, scripted two-arm expert and numpy renderer.

Scene model (world coordinates, table = unit square, x to the right, y towards the robot base):
per arm an end-effector pose (x, y, z, roll, pitch, yaw) plus a gripper opening g in [0, 1]
(1 = open). Joints are a fixed invertible affine map of the pose (`pose_to_joints` /
`joints_to_pose`), so ``state = [left 6 joints, left gripper, right 6 joints, right gripper]``.
Tasks: two static ones and a dynamic one (a box riding a conveyor at constant speed, so the
future frame matters). `make_episode` rolls out the scripted expert; `render_frame` draws one
camera (head: the whole table; wrists: a zoomed crop around each end-effector).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CAMERAS = (
    "observation.images.head",
    "observation.images.left_wrist",
    "observation.images.right_wrist",
)
STATE_DIM = 14
ARMS = ("left", "right")
JOINT_NAMES = [f"{arm}_{n}" for arm in ARMS for n in [*(f"joint_{i}" for i in range(6)), "gripper"]]

TASK_PICK = "pick up the red cube"
TASK_PUSH = "push the blue block to the left"
TASK_CONVEYOR = "grab the box riding on the conveyor"
TASKS = (TASK_PICK, TASK_PUSH, TASK_CONVEYOR)
DYNAMIC_TASKS = (TASK_CONVEYOR,)

HUMAN_INSTRUCTIONS = (
    "move the red cube to the right",
    "slide the blue block towards you",
    "pick up the yellow box and put it down on the left",
    "push the green block away",
)

CONVEYOR_Y = 0.3
CONVEYOR_HALF = 0.06
HOME = {"left": np.array([0.25, 0.85, 0.2]), "right": np.array([0.75, 0.85, 0.2])}
BASE = {"left": np.array([0.1, 1.0]), "right": np.array([0.9, 1.0])}

COLORS = {
    "table": (150, 118, 84),
    "grid": (135, 104, 72),
    "conveyor": (70, 70, 78),
    "belt": (92, 92, 100),
    "red": (215, 40, 35),
    "blue": (40, 70, 215),
    "yellow": (235, 200, 40),
    "green": (40, 170, 70),
    "left": (200, 60, 200),
    "right": (40, 200, 210),
    "link": (190, 190, 190),
    "finger": (30, 30, 30),
    "skin": (225, 170, 135),
    "shadow": (95, 75, 55),
}

# --------------------------------------------------------------------------- joints <-> pose

_RNG_M = np.random.default_rng(12345)
_JOINT_M = {
    arm: (np.eye(6) + 0.3 * _RNG_M.standard_normal((6, 6))).astype(np.float64) for arm in ARMS
}
_JOINT_M_INV = {arm: np.linalg.inv(m) for arm, m in _JOINT_M.items()}
_POSE_OFFSET = np.array([0.5, 0.5, 0.1, 0.0, 0.0, 0.0])


def pose_to_joints(pose: np.ndarray, arm: str) -> np.ndarray:
    """6-D end-effector pose (x, y, z, roll, pitch, yaw) -> 6 joint values (invertible affine)."""
    return _JOINT_M[arm] @ (np.asarray(pose, np.float64) - _POSE_OFFSET)


def joints_to_pose(joints: np.ndarray, arm: str) -> np.ndarray:
    return _JOINT_M_INV[arm] @ np.asarray(joints, np.float64) + _POSE_OFFSET


def ee_to_state(ee: dict[str, np.ndarray], grip: dict[str, float]) -> np.ndarray:
    """ee[arm] = (x, y, z) (roll = pitch = 0, yaw = 0.3 * (x - 0.5)); returns the 14-D state."""
    parts = []
    for arm in ARMS:
        x, y, z = ee[arm]
        pose = np.array([x, y, z, 0.0, 0.0, 0.3 * (x - 0.5)])
        parts.append(pose_to_joints(pose, arm))
        parts.append([grip[arm]])
    return np.concatenate(parts).astype(np.float32)


def state_to_ee(state: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    ee, grip = {}, {}
    for i, arm in enumerate(ARMS):
        s = np.asarray(state, np.float64)[7 * i : 7 * i + 7]
        ee[arm] = joints_to_pose(s[:6], arm)[:3]
        grip[arm] = float(s[6])
    return ee, grip


# --------------------------------------------------------------------------- scene + expert


@dataclass
class Obj:
    name: str
    color: str
    pos: np.ndarray  # (x, y, z)
    half: float = 0.04
    vel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    held_by: str | None = None


@dataclass
class Scene:
    """Everything `render_frame` needs for one time step."""

    objects: list[Obj]
    ee: dict[str, np.ndarray] | None  # arm -> (x, y, z); None: no robot (human clips)
    grip: dict[str, float] | None
    conveyor: bool = False
    belt_phase: float = 0.0
    hand: np.ndarray | None = None  # (x, y, z) of a human hand


@dataclass
class Episode:
    task: str
    states: np.ndarray  # (T, 14) float32
    actions: np.ndarray  # (T, 14) float32
    scenes: list[Scene]
    object_xyz: np.ndarray  # (T, 3) position of the task's target object

    @property
    def length(self) -> int:
        return len(self.states)


def _copy_scene(ee, grip, objects, conveyor, belt_phase) -> Scene:
    objs = [Obj(o.name, o.color, o.pos.copy(), o.half, o.vel.copy(), o.held_by) for o in objects]
    return Scene(objs, {a: v.copy() for a, v in ee.items()}, dict(grip), conveyor, belt_phase)


def _step_toward(cur: np.ndarray, target: np.ndarray, vmax: float) -> np.ndarray:
    d = target - cur
    step = 0.35 * d
    n = float(np.linalg.norm(step))
    if n > vmax:
        step *= vmax / n
    return cur + step


def make_episode(task: str, rng: np.random.Generator, frames: int, fps: int) -> Episode:
    """Scripted two-arm expert rollout of `frames` steps for `task` (deterministic given rng)."""
    dt = 1.0 / fps
    vmax = 0.9 * dt  # end-effector speed limit (world units / step)
    ee = {a: HOME[a] + np.array([rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03), 0.0]) for a in ARMS}
    grip = {a: 1.0 for a in ARMS}
    conveyor = task == TASK_CONVEYOR
    if task == TASK_PICK:
        target = Obj("cube", "red", np.array([rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.6), 0.0]))
        distract = Obj("block", "blue", np.array([1.0 - target.pos[0], rng.uniform(0.15, 0.3), 0.0]), 0.035)
        objects = [target, distract]
    elif task == TASK_PUSH:
        target = Obj("block", "blue", np.array([rng.uniform(0.45, 0.75), rng.uniform(0.35, 0.6), 0.0]), 0.045)
        distract = Obj("cube", "red", np.array([rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.3), 0.0]), 0.03)
        objects = [target, distract]
    elif task == TASK_CONVEYOR:
        speed = rng.uniform(0.12, 0.2)
        target = Obj("box", "yellow", np.array([rng.uniform(0.04, 0.12), CONVEYOR_Y, 0.0]), 0.04,
                     vel=np.array([speed, 0.0, 0.0]))
        distract = Obj("cube", "green", np.array([rng.uniform(0.3, 0.7), rng.uniform(0.55, 0.65), 0.0]), 0.03)
        objects = [target, distract]
    else:
        raise ValueError(f"unknown task {task!r}")

    # which arm acts: the one on the target's side (conveyor: the side of the interception point)
    t_int = rng.uniform(1.6, 2.2)  # conveyor interception time (s)
    x_int = float(target.pos[0] + target.vel[0] * t_int)
    ref_x = x_int if conveyor else float(target.pos[0])
    arm = "left" if ref_x < 0.5 else "right"
    if task == TASK_PUSH:
        arm = "right"
    push_goal_x = float(target.pos[0]) - rng.uniform(0.2, 0.3)
    phase = 0
    belt_phase = 0.0

    ee_traj, grip_traj, scenes, obj_traj = [], [], [], []
    for t in range(frames + 1):
        ee_traj.append({a: v.copy() for a, v in ee.items()})
        grip_traj.append(dict(grip))
        scenes.append(_copy_scene(ee, grip, objects, conveyor, belt_phase))
        obj_traj.append(target.pos.copy())

        # ---- expert decides next end-effector / gripper targets for the acting arm
        p = target.pos
        tgt, gt = ee[arm].copy(), grip[arm]
        if task == TASK_PICK:
            if phase == 0:
                tgt = np.array([p[0], p[1], 0.15]); gt = 1.0
                if np.linalg.norm(ee[arm][:2] - p[:2]) < 0.02:
                    phase = 1
            if phase == 1:
                tgt = np.array([p[0], p[1], 0.02]); gt = 1.0
                if ee[arm][2] < 0.03:
                    phase = 2
            if phase == 2:
                tgt = np.array([p[0], p[1], 0.02]); gt = 0.0
                if grip[arm] < 0.1:
                    phase = 3
            if phase == 3:
                tgt = np.array([p[0], p[1], 0.25]); gt = 0.0
        elif task == TASK_PUSH:
            if phase == 0:
                tgt = np.array([p[0] + 0.09, p[1], 0.15]); gt = 0.2
                if np.linalg.norm(ee[arm][:2] - tgt[:2]) < 0.02:
                    phase = 1
            if phase == 1:
                tgt = np.array([p[0] + 0.09, p[1], 0.02]); gt = 0.2
                if ee[arm][2] < 0.03:
                    phase = 2
            if phase == 2:
                tgt = np.array([push_goal_x + 0.085, p[1], 0.02]); gt = 0.2
        else:  # conveyor
            if phase == 0:  # hover above the interception point ahead of the box
                tgt = np.array([x_int, CONVEYOR_Y, 0.12]); gt = 1.0
                if p[0] > x_int - target.vel[0] * 0.45:
                    phase = 1
            if phase == 1:  # track the box and descend
                tgt = np.array([p[0] + target.vel[0] * 0.2, CONVEYOR_Y, 0.02]); gt = 1.0
                if ee[arm][2] < 0.035 and abs(ee[arm][0] - p[0]) < 0.03:
                    phase = 2
            if phase == 2:
                tgt = np.array([p[0] + target.vel[0] * dt, CONVEYOR_Y, 0.02]); gt = 0.0
                if target.held_by is not None:
                    phase = 3
                elif grip[arm] < 0.05:
                    phase = 3  # missed: lift anyway
            if phase == 3:
                tgt = np.array([ee[arm][0], CONVEYOR_Y + 0.05, 0.25]); gt = 0.0 if target.held_by else 1.0
        ee[arm] = _step_toward(ee[arm], tgt, vmax)
        grip[arm] = float(np.clip(grip[arm] + np.clip(gt - grip[arm], -0.2, 0.2), 0.0, 1.0))
        other = "left" if arm == "right" else "right"
        ee[other] = _step_toward(ee[other], ee[other], vmax)  # idle arm holds

        # ---- object physics
        belt_phase = (belt_phase + (0.15 * dt if conveyor else 0.0)) % 0.08
        for o in objects:
            if o.held_by is not None:
                o.pos = ee[o.held_by] - np.array([0.0, 0.0, 0.02])
                o.pos[2] = max(o.pos[2], 0.0)
                continue
            o.pos = o.pos + o.vel * dt
            d = ee[arm] - o.pos
            if grip[arm] < 0.35 and np.linalg.norm(d[:2]) < 0.045 and ee[arm][2] < 0.05 and task != TASK_PUSH:
                o.held_by = arm
                o.vel = np.zeros(3)
            if task == TASK_PUSH and o is target and ee[arm][2] < 0.05 and abs(d[1]) < o.half + 0.02:
                edge = ee[arm][0] - (o.half + 0.04)
                if 0 < ee[arm][0] - o.pos[0] < o.half + 0.08 and o.pos[0] > edge:
                    o.pos[0] = edge
        if conveyor and target.held_by is None:
            target.pos[1] = CONVEYOR_Y

    states = np.stack([ee_to_state(e, g) for e, g in zip(ee_traj, grip_traj)])
    return Episode(
        task=task,
        states=states[:frames],
        actions=states[1 : frames + 1].copy(),
        scenes=scenes[:frames],
        object_xyz=np.stack(obj_traj[:frames]).astype(np.float32),
    )


# --------------------------------------------------------------------------- renderer


def _grid(center: np.ndarray, half: float, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    c = (np.arange(size) + 0.5) / size * 2 - 1
    xs = center[0] + half * c
    ys = center[1] + half * c
    return xs[None, :], ys[:, None], 2 * half / size


def _paint(img: np.ndarray, mask: np.ndarray, color) -> None:
    img[mask] = color


def render_frame(scene: Scene, camera: str, size: int = 64) -> np.ndarray:
    """Render one (size, size, 3) uint8 RGB view: "head" (whole table), "left_wrist"/"right_wrist"
    (zoomed crop centred on that end-effector; zoom grows as the gripper descends)."""
    camera = camera.rsplit(".", 1)[-1]
    if camera == "head":
        center, half = np.array([0.5, 0.5]), 0.5
    elif camera in ("left_wrist", "right_wrist"):
        arm = camera.split("_")[0]
        if scene.ee is None:
            raise ValueError("wrist camera needs a robot scene")
        e = scene.ee[arm]
        center, half = e[:2] + np.array([0.0, -0.03]), 0.09 + 0.35 * max(float(e[2]), 0.0)
    else:
        raise ValueError(f"unknown camera {camera!r}")
    X, Y, px = _grid(center, half, size)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = COLORS["table"]
    # wood grid lines give texture for the wrist views
    lw = max(px * 0.8, 0.004)
    _paint(img, (np.abs((X + 0 * Y) % 0.1 - 0.05) > 0.05 - lw) | (np.abs((Y + 0 * X) % 0.1 - 0.05) > 0.05 - lw),
           COLORS["grid"])
    outside = (X + 0 * Y < 0) | (X + 0 * Y > 1) | (Y + 0 * X < 0) | (Y + 0 * X > 1)
    _paint(img, outside, (25, 25, 30))
    if scene.conveyor:
        belt = (np.abs(Y - CONVEYOR_Y) < CONVEYOR_HALF) & (X + 0 * Y >= 0) & (X + 0 * Y <= 1)
        _paint(img, belt, COLORS["conveyor"])
        stripes = belt & (((X - scene.belt_phase) % 0.08) < 0.02)
        _paint(img, stripes, COLORS["belt"])
    for o in sorted(scene.objects, key=lambda o: o.pos[2]):
        x, y, z = o.pos
        h = o.half * (1 + 1.2 * z)
        if z > 0.01:  # shadow on the table
            _paint(img, (np.abs(X - x - 0.02) < o.half) & (np.abs(Y - y - 0.03) < o.half), COLORS["shadow"])
        _paint(img, (np.abs(X - x) < h) & (np.abs(Y - y) < h), COLORS[o.color])
        # darker top-left edge marker so orientation / motion is visible in zoomed views
        _paint(img, (np.abs(X - x + h * 0.5) < h * 0.3) & (np.abs(Y - y + h * 0.5) < h * 0.3),
               tuple(int(c * 0.6) for c in COLORS[o.color]))
    if scene.ee is not None:
        for arm in ARMS:
            e = scene.ee[arm]
            b = BASE[arm]
            # link: distance from pixel to the base->ee segment
            d = e[:2] - b
            L2 = float(d @ d) + 1e-9
            tt = np.clip(((X - b[0]) * d[0] + (Y - b[1]) * d[1]) / L2, 0, 1)
            dist2 = (X - b[0] - tt * d[0]) ** 2 + (Y - b[1] - tt * d[1]) ** 2
            _paint(img, dist2 < 0.018**2, COLORS["link"])
            r = 0.025 * (1 + 1.5 * e[2])
            _paint(img, (X - e[0]) ** 2 + (Y - e[1]) ** 2 < r**2, COLORS[arm])
            g = scene.grip[arm]
            sep = 0.012 + 0.035 * g
            for s in (-1, 1):
                _paint(img, (np.abs(X - e[0] - s * sep) < 0.007) & (np.abs(Y - e[1] + 0.025) < 0.02),
                       COLORS["finger"])
    if scene.hand is not None:
        hx, hy, hz = scene.hand
        r = 0.05 * (1 + 1.0 * hz)
        _paint(img, (X - hx) ** 2 + (Y - hy) ** 2 < r**2, COLORS["skin"])
        for k in range(4):
            fx = hx - 0.03 + 0.02 * k
            _paint(img, (np.abs(X - fx) < 0.007) & (Y < hy) & (Y > hy - r - 0.03), COLORS["skin"])
    return img


def render_episode(ep: Episode, size: int = 64) -> dict[str, np.ndarray]:
    """{camera key: (T, size, size, 3) uint8}."""
    return {cam: np.stack([render_frame(s, cam, size) for s in ep.scenes]) for cam in CAMERAS}
