"""ALOHA-style bimanual arms over ROS 1: Trossen/Interbotix ALOHA, or an AgileX Cobot Magic.

State and action use the ALOHA layout, 14 dims: ``[left arm 6, left gripper, right arm 6, right
gripper]``, arm joints in radians. Two backends (``robot.options.backend``), both plain topics:

- ``interbotix`` (ALOHA, as in tonyzhaozh/aloha and openpi's ``examples/aloha_real``): puppet state
  from ``/puppet_left/joint_states`` (sensor_msgs/JointState: 6 arm joints, the gripper joint, the
  two finger positions); commands as ``interbotix_xs_msgs/JointGroupCommand`` (``name="arm"``) on
  ``.../commands/joint_group`` and ``JointSingleCommand`` (``name="gripper"``) on
  ``.../commands/joint_single``. The gripper dim is normalised, 0 closed … 1 open: the state from
  the finger position, the command through the gripper joint range (ALOHA's constants, overridable
  in ``options.gripper``). The puppets must be up in position mode with torque on, as ALOHA's own
  launch and ``setup_puppet_bot`` leave them.
- ``agilex`` (Cobot Magic, Piper arms): state on ``/puppet/joint_left|right`` and commands on
  ``/master/joint_left|right``, both sensor_msgs/JointState with 7 positions (6 joints, gripper)
  named ``joint0`` … ``joint6`` as in AgileX's inference scripts; gripper in the driver's units.

Cameras are sensor_msgs/Image topics (``options.camera_topics``), decoded to RGB with cv_bridge.
The node is started with ``disable_signals=True`` so Ctrl-C reaches `SafeRobot`'s emergency stop.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np

from a1.config import ConfigError
from a1.deploy.robots.base import Robot
from a1.deploy.robots.config import RobotConfig
from a1.deploy.robots.hardware import check_layout, check_options, glide, import_sdk, where

ROS_INSTALL = "ROS 1 (Noetic) and its Python packages: source /opt/ros/noetic/setup.bash"
SIDES = ("left", "right")
DEFAULT_TOPICS = {
    "interbotix": {"state": {"left": "/puppet_left/joint_states", "right": "/puppet_right/joint_states"},
                   "command": {"left": "/puppet_left/commands", "right": "/puppet_right/commands"}},
    "agilex": {"state": {"left": "/puppet/joint_left", "right": "/puppet/joint_right"},
               "command": {"left": "/master/joint_left", "right": "/master/joint_right"}},
}
AGILEX_CAMERAS = {"cam_high": "/camera_f/color/image_raw", "cam_left_wrist": "/camera_l/color/image_raw",
                  "cam_right_wrist": "/camera_r/color/image_raw"}
ALOHA_GRIPPER = {"position_open": 0.05800, "position_close": 0.01844, "joint_open": 1.4910, "joint_close": -0.6213}
"""ALOHA puppet gripper constants (finger position in m, gripper joint in rad), as in ACT/openpi."""
AGILEX_JOINT_NAMES = [f"joint{i}" for i in range(7)]


class AlohaRobot(Robot):
    """ALOHA / AgileX bimanual arms over ROS 1 (backends in the module docstring)."""

    OPTIONS: ClassVar[dict[str, str]] = {
        "backend": "interbotix (ALOHA, default) or agilex (Cobot Magic)",
        "node_name": "ROS node name (default a1_robot, anonymous)",
        "state_topics": "{left, right}: sensor_msgs/JointState topics of the arms' state",
        "command_topics": "{left, right}: interbotix: the puppets' commands namespace (joint_group and "
                          "joint_single below it); agilex: the JointState command topics",
        "camera_topics": "camera name → sensor_msgs/Image topic (interbotix default /usb_<camera>/image_raw)",
        "gripper": "interbotix gripper constants: position_open/close (m), joint_open/close (rad)",
        "wait_s": "seconds to wait for the first message of every topic (default 5.0)",
    }

    def __init__(self, config: RobotConfig) -> None:
        super().__init__(config)
        check_layout(config, 14, [6, 13], "left arm 6, left gripper, right arm 6, right gripper")
        opts = check_options(config, self.OPTIONS)
        self.backend = opts.get("backend", "interbotix")
        if self.backend not in DEFAULT_TOPICS:
            raise ConfigError(f"{where(config)}: robot.options.backend: {self.backend!r} is not one of "
                              f"{sorted(DEFAULT_TOPICS)}")
        self.gripper = {**ALOHA_GRIPPER, **opts.get("gripper", {})}
        self.wait_s = float(opts.get("wait_s", 5.0))
        self._rospy = import_sdk("rospy", config, ROS_INSTALL)
        self._msgs = import_sdk("sensor_msgs.msg", config, ROS_INSTALL)
        self._bridge = import_sdk("cv_bridge", config, "apt install ros-noetic-cv-bridge").CvBridge()
        if self.backend == "interbotix":
            self._xs = import_sdk("interbotix_xs_msgs.msg", config,
                                  "the Interbotix X-series ROS packages (installed by ALOHA's setup)")
        self.topics = self._topics(opts)
        self._latest: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._rospy.init_node(opts.get("node_name", "a1_robot"), anonymous=True, disable_signals=True)
        self._subs = [self._rospy.Subscriber(topic, msg_type, self._store, callback_args=key, queue_size=1)
                      for key, (topic, msg_type) in self.topics.items()]
        self._pubs = {side: self._publishers(side, opts) for side in SIDES}

    # --- wiring -----------------------------------------------------------------------------------
    def _topics(self, opts: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        """Subscription key (arm side or camera name) → (topic, message type)."""
        states = {**DEFAULT_TOPICS[self.backend]["state"], **opts.get("state_topics", {})}
        cams = opts.get("camera_topics", {})
        topics = {side: (states[side], self._msgs.JointState) for side in SIDES}
        for cam in self.config.cameras:
            topic = cams.get(cam) or (f"/usb_{cam}/image_raw" if self.backend == "interbotix" else AGILEX_CAMERAS.get(cam))
            if topic is None:
                raise ConfigError(f"{where(self.config)}: robot.options.camera_topics: no topic for camera {cam!r}")
            topics[cam] = (topic, self._msgs.Image)
        return topics

    def _publishers(self, side: str, opts: dict[str, Any]) -> Any:
        topic = {**DEFAULT_TOPICS[self.backend]["command"], **opts.get("command_topics", {})}[side]
        pub = self._rospy.Publisher
        if self.backend == "interbotix":
            return (pub(f"{topic}/joint_group", self._xs.JointGroupCommand, queue_size=1),
                    pub(f"{topic}/joint_single", self._xs.JointSingleCommand, queue_size=1))
        return pub(topic, self._msgs.JointState, queue_size=1)

    def _store(self, msg: Any, key: str) -> None:
        with self._lock:
            self._latest[key] = msg

    def _wait(self, keys: list[str]) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                got = {k: self._latest.get(k) for k in keys}
            missing = [self.topics[k][0] for k, v in got.items() if v is None]
            if not missing:
                return got
            if time.monotonic() > deadline:
                raise RuntimeError(f"robot {self.config.name!r}: no message on {missing} within {self.wait_s} s")
            time.sleep(0.005)

    # --- state and commands -----------------------------------------------------------------------
    def _arm_state(self, msg: Any) -> list[float]:
        pos = [float(p) for p in msg.position]
        if self.backend == "agilex":
            if len(pos) < 7:
                raise RuntimeError(f"robot {self.config.name!r}: JointState with {len(pos)} positions, expected 7")
            return pos[:7]
        if len(pos) < 8:
            raise RuntimeError(f"robot {self.config.name!r}: puppet JointState with {len(pos)} positions, "
                               f"expected 9 (6 arm, gripper joint, 2 fingers)")
        g = self.gripper
        opening = (pos[7] - g["position_close"]) / (g["position_open"] - g["position_close"])
        return [*pos[:6], opening]

    def _state(self) -> np.ndarray:
        msgs = self._wait(list(SIDES))
        return np.asarray([*self._arm_state(msgs["left"]), *self._arm_state(msgs["right"])], dtype=np.float32)

    def observe(self) -> dict:
        msgs = self._wait([*SIDES, *self.config.cameras])
        state = [*self._arm_state(msgs["left"]), *self._arm_state(msgs["right"])]
        images = {cam: np.ascontiguousarray(self._bridge.imgmsg_to_cv2(msgs[cam], desired_encoding="rgb8"))
                  for cam in self.config.cameras}
        return {"images": images, "state": np.asarray(state, dtype=np.float32)}

    def act(self, action: np.ndarray) -> None:
        for side, part in zip(SIDES, (action[:7], action[7:])):
            values = [float(x) for x in part]
            if self.backend == "interbotix":
                group, single = self._pubs[side]
                group.publish(self._xs.JointGroupCommand(name="arm", cmd=values[:6]))
                g = self.gripper
                joint = g["joint_close"] + values[6] * (g["joint_open"] - g["joint_close"])
                single.publish(self._xs.JointSingleCommand(name="gripper", cmd=joint))
            else:
                msg = self._msgs.JointState()
                msg.header.stamp = self._rospy.Time.now()
                msg.name, msg.position = AGILEX_JOINT_NAMES, values
                self._pubs[side].publish(msg)

    def reset(self) -> None:
        glide(self.config, self._state, self.act, self.config.home)

    def close(self) -> None:
        for sub in self._subs:
            sub.unregister()
        for pubs in self._pubs.values():
            for pub in pubs if isinstance(pubs, tuple) else (pubs,):
                pub.unregister()
        self._subs, self._pubs = [], {}
        self._rospy.signal_shutdown("a1 robot closed")
