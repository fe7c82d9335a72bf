"""Hardware adapters: a missing vendor SDK is a clear error, the YAML must fit the SDK's joint layout, and
each adapter drives stand-ins of the vendor API it was written for (no hardware, no SDK needed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from a1.config import ConfigError
from a1.deploy.robots import MissingSDKError, hardware, load_robot_config, make_robot

ROBOTS = Path(__file__).resolve().parents[2] / "deploy" / "robots"


# --- missing SDKs, layout --------------------------------------------------------------------------
@pytest.mark.parametrize("name, module", [
    ("genie1", "a2d_sdk"), ("arx_lift2", "arx_r5_python"), ("arx_ac_one", "arx5_interface"), ("aloha", "rospy"),
])
def test_hardware_adapter_without_its_sdk_says_what_to_install(name, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here: this would talk to real hardware")
    cfg = load_robot_config(name, search=ROBOTS)
    with pytest.raises(MissingSDKError, match=rf"{cfg.source}: the '{name}' adapter needs the Python module "
                                              rf"'{module}.*Install: "):
        make_robot(cfg)


def test_hardware_adapter_checks_its_joint_layout_first():
    cfg = dataclasses.replace(load_robot_config(ROBOTS / "sim_aloha.yaml"), adapter="genie1")
    with pytest.raises(ConfigError, match=r"the 'genie1' adapter drives 16 dims .*the config has 14 joints"):
        make_robot(cfg)
    cfg = dataclasses.replace(load_robot_config(ROBOTS / "arx_ac_one.yaml"), options={"left_cann": "can0"})
    with pytest.raises(ConfigError, match=r"robot\.options\.left_cann: not an option of the 'arx_ac_one' adapter"):
        make_robot(cfg)


# --- hardware adapters against stand-ins of the vendor APIs they were written for -----------------
def fake_module(monkeypatch, name: str, **attrs) -> None:
    module = ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


def test_genie1_adapter_splits_arms_and_grippers_as_a2d_sdk_expects(monkeypatch):
    class RobotDds:  # a2d_sdk.robot.RobotDds as AgiBot's examples call it
        def __init__(self):
            self.arm, self.grippers, self.shut = [0.1] * 14, [0.2, 0.3], False

        def arm_joint_states(self):
            return list(self.arm), 1_000

        def gripper_states(self):
            return list(self.grippers), 1_000

        def move_arm(self, q):
            self.arm = list(q)

        def move_gripper(self, g):
            self.grippers = list(g)

        def shutdown(self):
            self.shut = True

    class CosineCamera:
        def __init__(self, names):
            self.names = names

        def get_latest_image(self, name):
            return np.full((4, 6, 3), self.names.index(name), np.uint8), 1_000

        def close(self):
            pass

    fake_module(monkeypatch, "a2d_sdk.robot", RobotDds=RobotDds, CosineCamera=CosineCamera)
    cfg = dataclasses.replace(load_robot_config("genie1", search=ROBOTS), options={"startup_s": 0})
    robot = make_robot(cfg)
    obs = robot.observe()
    np.testing.assert_allclose(obs["state"], [0.1] * 14 + [0.2, 0.3])
    assert list(obs["images"]) == ["head", "hand_left", "hand_right"] and obs["images"]["hand_right"][0, 0, 0] == 2
    command = np.linspace(-0.5, 0.5, 16)
    robot.act(command)
    assert robot._robot.arm == command[:14].tolist() and robot._robot.grippers == command[14:].tolist()
    monkeypatch.setattr(time, "sleep", lambda s: None)
    robot.reset()
    np.testing.assert_allclose(robot._robot.arm + robot._robot.grippers, cfg.home, atol=1e-9)
    robot.close()
    assert robot._robot.shut


def test_aloha_adapter_normalises_the_interbotix_gripper(monkeypatch):
    published = []

    class Msg:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    class Publisher:
        def __init__(self, topic, msg_type, queue_size):
            self.topic = topic

        def publish(self, msg):
            published.append((self.topic, msg))

        def unregister(self):
            pass

    subs = {}

    class Subscriber(Publisher):
        def __init__(self, topic, msg_type, callback, callback_args, queue_size):
            subs[topic] = (callback, callback_args)

    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            assert desired_encoding == "rgb8"
            return msg.pixels

    fake_module(monkeypatch, "rospy", init_node=lambda *a, **k: None, Subscriber=Subscriber, Publisher=Publisher,
                signal_shutdown=lambda reason: None)
    fake_module(monkeypatch, "sensor_msgs.msg", JointState=Msg, Image=Msg)
    fake_module(monkeypatch, "cv_bridge", CvBridge=CvBridge)
    fake_module(monkeypatch, "interbotix_xs_msgs.msg", JointGroupCommand=Msg, JointSingleCommand=Msg)
    robot = make_robot(load_robot_config("aloha", search=ROBOTS))
    half_open = (0.05800 + 0.01844) / 2  # finger position between ALOHA's closed and open
    for topic, (callback, key) in subs.items():
        pos = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 9.9, half_open, -half_open]
        callback(Msg(position=pos) if "joint_states" in topic else Msg(pixels=np.zeros((4, 6, 3), np.uint8)), key)
    obs = robot.observe()
    np.testing.assert_allclose(obs["state"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.5] * 2, atol=1e-6)
    assert set(obs["images"]) == {"cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"}
    robot.act(np.array([0.0] * 6 + [1.0] + [0.5] * 6 + [0.0]))
    sent = {topic: msg for topic, msg in published}
    assert sent["/puppet_left/commands/joint_group"].cmd == [0.0] * 6
    assert sent["/puppet_left/commands/joint_single"].cmd == pytest.approx(1.4910)  # open
    assert sent["/puppet_right/commands/joint_single"].cmd == pytest.approx(-0.6213)  # closed
    robot.close()


class FakeCameras:
    def __init__(self, config, devices):
        self.names, self.devices, self.closed = list(config.cameras), devices, False

    def read(self):
        return {name: np.zeros((4, 6, 3), np.uint8) for name in self.names}

    def close(self):
        self.closed = True


def test_arx_ac_one_adapter_drives_two_arx5_joint_controllers(monkeypatch):
    class JointState:  # arx5_interface.JointState: pos() is a writable view
        def __init__(self, dof):
            self._pos, self.gripper_pos = np.zeros(dof), 0.0

        def pos(self):
            return self._pos

    class Arx5JointController:
        def __init__(self, model, can):
            self.model, self.can, self.background, self.state = model, can, False, JointState(6)

        def enable_background_send_recv(self):
            self.background = True

        def get_state(self):
            return self.state

        def set_joint_cmd(self, cmd):
            self.state = cmd

    fake_module(monkeypatch, "arx5_interface", JointState=JointState, Arx5JointController=Arx5JointController)
    monkeypatch.setattr(hardware, "OpenCVCameras", FakeCameras)
    robot = make_robot(load_robot_config("arx_ac_one", search=ROBOTS))
    left, right = robot._arms
    assert (left.model, left.can, right.can) == ("X5", "can0", "can1") and left.background and right.background
    command = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.04, -0.1, 0.2, 0.3, -0.4, 0.5, -0.6, 0.08])
    robot.act(command)
    np.testing.assert_allclose(right.state.pos(), command[7:13])
    assert left.state.gripper_pos == pytest.approx(0.04)
    obs = robot.observe()
    np.testing.assert_allclose(obs["state"], command, atol=1e-6)
    assert set(obs["images"]) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}
    cameras = robot._cameras
    robot.close()
    assert cameras.closed


def test_arx_lift2_adapter_uses_arx_interfaces_in_joint_mode(monkeypatch):
    class InterfacesPy:  # arx_r5_python.InterfacesPy: 7 positions, the last one the gripper
        def __init__(self, can, arm_type):
            self.can, self.q, self.status = can, [0.0] * 7, []

        def get_joint_positions(self):
            return list(self.q)

        def set_joint_positions(self, q):
            self.q[:6] = q

        def set_arm_status(self, status):
            self.status.append(status)

        def set_catch(self, gripper):
            self.q[6] = gripper

    fake_module(monkeypatch, "arx_r5_python", InterfacesPy=InterfacesPy)
    monkeypatch.setattr(hardware, "OpenCVCameras", FakeCameras)
    robot = make_robot(load_robot_config("arx_lift2", search=ROBOTS))
    command = np.linspace(0.0, 1.3, 14)
    robot.act(command)
    left, right = robot._arms
    assert left.status == right.status == [5] and right.q == pytest.approx(command[7:].tolist())
    np.testing.assert_allclose(robot.observe()["state"], command, atol=1e-6)

