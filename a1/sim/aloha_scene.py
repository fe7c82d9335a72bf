"""The MuJoCo XML of the ALOHA bimanual scenes a1 evaluates in, composed here.

The robot (two ViperX 300s arms), the table, the lights and the cameras come from the asset files
that `gym-aloha` ships (included by file name, read from its package folder). What sits on the table
is ours: the red cube of transfer-cube, and for the conveyor task a belt — a heavy slab on a slide
joint along y whose velocity the environment sets every control step; friction carries the cube. For
insertion, a red peg and a blue socket — a square tube open at both ends along x, four thin walls
around a red pin that fills its middle — each on a free joint.

Two variants of each scene:

* ``joint``: position actuators on all 16 joints (6 arm joints + 2 fingers per arm); what policies
  and replayed demonstrations drive.
* ``mocap``: each gripper link is welded to a mocap body; only the fingers are actuated. The
  scripted experts move the mocap bodies (end-effector waypoints).
"""

from __future__ import annotations

from pathlib import Path

#: The tasks a scene can be built for.
TASKS = ("transfer_cube", "conveyor_transfer_cube", "insertion")

#: The 16 robot joints, in qpos order (left arm, then right arm).
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")

#: The arms' start pose (16 joints: 6 arm + 2 finger positions per arm).
START_ARM_POSE = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.02239, -0.02239) * 2

#: Finger joint positions (m) of a fully open / closed puppet gripper; 1 / 0 once normalised.
GRIPPER_OPEN = 0.058
GRIPPER_CLOSE = 0.01844

#: Where the gripper links are at the start pose (the mocap bodies start there), xyz in metres.
LEFT_GRIPPER_START = (-0.31718881, 0.5, 0.29525084)
RIGHT_GRIPPER_START = (0.31718881, 0.49999888, 0.29525084)

#: Where the mocap bodies sit in the XML. MuJoCo derives each weld's relative pose from the model's
#: zero configuration, so these (gym-aloha's values) fix where the gripper link sits relative to its
#: mocap body; the bodies are then moved to the *_GRIPPER_START positions at reset.
LEFT_MOCAP_XML = (0.095, 0.50, 0.425)
RIGHT_MOCAP_XML = (-0.095, 0.50, 0.425)

#: Cube half-size (m).
CUBE_HALF = 0.02
#: Belt slab: top surface height above the table (m), half-extents x/y.
BELT_TOP = 0.006
BELT_HALF_X = 0.12
BELT_HALF_Y = 0.6
#: The y about which the belt is centred (the middle of the cube's y range).
BELT_Y = 0.5

#: Insertion: the peg's half-extents (m) — a bar along x.
PEG_HALF = (0.06, 0.01, 0.01)
#: The socket: half-length along x of its walls, their half-thickness, and the half-width of the
#: square opening inside them (2 mm of clearance around the peg on every side).
SOCKET_HALF_LENGTH = 0.06
SOCKET_WALL = 0.002
SOCKET_INNER = 0.018
#: The pin: a bar the peg's cross-section in the socket's middle; the peg touching it is success.
PIN_HALF_LENGTH = 0.04
#: Heights of the peg's and the socket's centres when they rest on the table (m).
PEG_REST_Z = PEG_HALF[2]
SOCKET_REST_Z = SOCKET_INNER + 2 * SOCKET_WALL
#: The socket's wall geoms (bottom, top, and the two sides).
SOCKET_WALLS = ("socket-1", "socket-2", "socket-3", "socket-4")

_FINGER_ACTUATORS = """
    <position ctrllimited="true" ctrlrange="0.021 0.057" joint="vx300s_{side}/left_finger" kp="200" user="1"/>
    <position ctrllimited="true" ctrlrange="-0.057 -0.021" joint="vx300s_{side}/right_finger" kp="200" user="1"/>"""

# (joint, ctrl range, kp, force limit or None) of the six arm position actuators, as gym-aloha's
# joint-controlled scene sets them.
_ARM_ACTUATORS = (
    ("waist", "-3.14158 3.14158", 800, "-150 150"),
    ("shoulder", "-1.85005 1.25664", 1600, "-300 300"),
    ("elbow", "-1.76278 1.6057", 800, "-100 100"),
    ("forearm_roll", "-3.14158 3.14158", 10, "-100 100"),
    ("wrist_angle", "-1.8675 2.23402", 50, None),
    ("wrist_rotate", "-3.14158 3.14158", 20, None),
)


def assets_dir() -> Path:
    """gym-aloha's asset folder (meshes and robot XMLs); a clear error if it is not installed."""
    try:
        import gym_aloha
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('the MuJoCo ALOHA scenes need the `sim` extra: pip install -e ".[sim]"') from err
    return Path(gym_aloha.__file__).resolve().parent / "assets"


def asset_files() -> dict[str, bytes]:
    """Every file of gym-aloha's asset folder by name, for `Physics.from_xml_string(assets=...)`."""
    return {p.name: p.read_bytes() for p in assets_dir().iterdir() if p.is_file()}


def _arm_actuators(side: str) -> str:
    lines = []
    for joint, ctrlrange, kp, force in _ARM_ACTUATORS:
        limit = f' forcelimited="true" forcerange="{force}"' if force else ""
        lines.append(
            f'    <position ctrllimited="true" ctrlrange="{ctrlrange}" joint="vx300s_{side}/{joint}" '
            f'kp="{kp}" user="1"{limit}/>'
        )
    return "\n" + "\n".join(lines) + _FINGER_ACTUATORS.format(side=side)


def _cube(conveyor: bool) -> str:
    # On the conveyor the cube also collides with the belt (contact bit 2); see _belt.
    affinity = 3 if conveyor else 1
    z = BELT_TOP + CUBE_HALF if conveyor else CUBE_HALF
    return f"""
    <body name="box" pos="0.1 0.5 {z}">
      <joint name="red_box_joint" type="free" frictionloss="0.01"/>
      <inertial pos="0 0 0" mass="0.05" diaginertia="0.002 0.002 0.002"/>
      <geom condim="4" solimp="2 1 0.01" solref="0.01 1" friction="1 0.005 0.0001" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}"
            type="box" name="red_box" rgba="1 0 0 1" contype="1" conaffinity="{affinity}"/>
    </body>"""


def _belt() -> str:
    # contype 2 / conaffinity 0: the slab touches only the cube (conaffinity 3), not the table or
    # the grippers; the slide joint holds it up, so it needs no support.
    return f"""
    <body name="belt" pos="0.1 {BELT_Y} {BELT_TOP / 2}">
      <joint name="belt_joint" type="slide" axis="0 1 0" damping="0"/>
      <inertial pos="0 0 0" mass="20" diaginertia="1 1 1"/>
      <geom name="belt" type="box" size="{BELT_HALF_X} {BELT_HALF_Y} {BELT_TOP / 2}" rgba="0.35 0.35 0.4 1"
            friction="1.5 0.005 0.0001" contype="2" conaffinity="0"/>
    </body>"""


def _peg_and_socket() -> str:
    # Rest poses of a default episode; AlohaEnv.reset places both per seed.
    peg = " ".join(str(v) for v in PEG_HALF)
    length, wall, inner = SOCKET_HALF_LENGTH, SOCKET_WALL, SOCKET_INNER
    offset = inner + wall  # wall centre from the socket's axis
    walls = (  # name, centre, half-extents
        ("socket-1", (0, 0, -offset), (length, inner, wall)),
        ("socket-2", (0, 0, offset), (length, inner, wall)),
        ("socket-3", (0, offset, 0), (length, wall, inner)),
        ("socket-4", (0, -offset, 0), (length, wall, inner)),
    )
    contact = 'condim="4" solimp="2 1 0.01" solref="0.01 1"'
    wall_geoms = "".join(
        f"""
      <geom name="{name}" type="box" pos="{' '.join(map(str, pos))}" size="{' '.join(map(str, size))}"
            {contact} friction="1 0.05 0.001" rgba="0 0 1 1"/>"""
        for name, pos, size in walls
    )
    return f"""
    <body name="peg" pos="0.15 0.5 {PEG_REST_Z}">
      <joint name="red_peg_joint" type="free" frictionloss="0.01"/>
      <inertial pos="0 0 0" mass="0.05" diaginertia="0.002 0.002 0.002"/>
      <geom name="red_peg" type="box" size="{peg}" {contact} friction="1 0.005 0.0001" rgba="1 0 0 1"/>
    </body>
    <body name="socket" pos="-0.15 0.5 {SOCKET_REST_Z}">
      <joint name="blue_socket_joint" type="free" frictionloss="0.01"/>
      <inertial pos="0 0 0" mass="0.05" diaginertia="0.002 0.002 0.002"/>{wall_geoms}
      <geom name="pin" type="box" size="{PIN_HALF_LENGTH} {PEG_HALF[1]} {PEG_HALF[2]}" {contact}
            friction="1 0.005 0.0001" rgba="1 0 0 1"/>
    </body>"""


def _mocap() -> str:
    bodies = []
    for side, pos in (("left", LEFT_MOCAP_XML), ("right", RIGHT_MOCAP_XML)):
        xyz = " ".join(f"{v:.8f}" for v in pos)
        bodies.append(
            f'    <body mocap="true" name="mocap_{side}" pos="{xyz}">'
            f'<site size="0.003 0.003 0.03" type="box" name="mocap_{side}_site" rgba="1 0 0 0"/></body>'
        )
    return "\n" + "\n".join(bodies)


def scene_xml(task: str, variant: str) -> str:
    """The scene's XML text. ``task``: one of `TASKS`; ``variant``: joint | mocap."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if variant not in ("joint", "mocap"):
        raise ValueError(f"variant must be 'joint' or 'mocap', got {variant!r}")
    conveyor = task == "conveyor_transfer_cube"
    if task == "insertion":
        bodies = _peg_and_socket()
    else:
        bodies = _cube(conveyor) + (_belt() if conveyor else "")
    if variant == "mocap":
        bodies += _mocap()
        actuators = _FINGER_ACTUATORS.format(side="left") + _FINGER_ACTUATORS.format(side="right")
        welds = """
  <equality>
    <weld body1="mocap_left" body2="vx300s_left/gripper_link" solref="0.01 1" solimp=".25 .25 0.001"/>
    <weld body1="mocap_right" body2="vx300s_right/gripper_link" solref="0.01 1" solimp=".25 .25 0.001"/>
  </equality>"""
    else:
        actuators = _arm_actuators("left") + _arm_actuators("right")
        welds = ""
    return f"""<mujoco model="a1_aloha_{task}_{variant}">
  <include file="scene.xml"/>
  <include file="vx300s_dependencies.xml"/>{welds}
  <worldbody>
    <include file="vx300s_left.xml"/>
    <include file="vx300s_right.xml"/>{bodies}
  </worldbody>
  <actuator>{actuators}
  </actuator>
</mujoco>
"""
