"""Adapters for the paper's bimanual robots on their vendor SDKs (imported when an adapter is built).

- `Genie1Robot` — AgiBot Genie-1 (G1) through AgiBot's ``a2d_sdk``: 2×7 arm joints, then the two
  grippers (16 dims, the AgiBot World layout); cameras ``head``, ``hand_left``, ``hand_right``.
- `ArxLift2Robot` — ARX Lift-2 through ARX's own Python bindings (``arx_r5_python`` /
  ``arx_x5_python``, one ``InterfacesPy`` per arm on its CAN bus).
- `ArxAcOneRobot` — ARX AC One (two X5 arms) through the ``arx5_interface`` bindings of arx5-sdk.
- `AlohaRobot` (in `a1.deploy.robots.aloha`) — ALOHA / AgileX Cobot Magic over ROS 1.

ARX and ALOHA robots use the ALOHA layout: ``[left arm 6, left gripper, right arm 6, right
gripper]`` (14 dims). Each adapter checks that its YAML has the layout its SDK drives. A vendor
SDK that is not importable is a `MissingSDKError` naming the module, how to install it and the
robot YAML. Calls whose exact name or units could not be confirmed from public vendor code are
marked ``UNCONFIRMED`` where they are made.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from a1.config import ConfigError
from a1.deploy.robots.base import Robot
from a1.deploy.robots.config import RobotConfig
from a1.deploy.robots.safety import SafetyFilter

log = logging.getLogger(__name__)

__all__ = ["ArxAcOneRobot", "ArxLift2Robot", "Genie1Robot", "MissingSDKError", "OpenCVCameras", "glide", "import_sdk",
           "where"]


class MissingSDKError(ImportError):
    """A robot's vendor SDK is not importable; the message names the module, the install and the YAML."""


def where(config: RobotConfig) -> str:
    """The config's YAML file for messages (or its robot name when built in Python)."""
    return config.source or f"robot {config.name!r}"


def import_sdk(module: str, config: RobotConfig, install: str, path: str | None = None) -> ModuleType:
    """Import a vendor SDK module (``path``: a folder to put on ``sys.path`` first) or raise `MissingSDKError`."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingSDKError(
            f"{where(config)}: the {config.adapter!r} adapter needs the Python module {module!r}, which cannot "
            f"be imported ({err}). Install: {install}") from err


def check_layout(config: RobotConfig, dims: int, grippers: list[int], layout: str) -> None:
    """The YAML must describe the dims the SDK drives."""
    if config.dims != dims or sorted(config.grippers) != grippers:
        raise ConfigError(f"{where(config)}: robot.joints/grippers: the {config.adapter!r} adapter drives {dims} dims "
                          f"({layout}; grippers at {grippers}); the config has {config.dims} joints, grippers "
                          f"{config.grippers}")


def check_options(config: RobotConfig, known: dict[str, str]) -> dict[str, Any]:
    """``config.options``; an unknown key is a `ConfigError` listing the known ones."""
    unknown = sorted(set(config.options) - set(known))
    if unknown:
        listing = "; ".join(f"{k}: {v}" for k, v in known.items())
        raise ConfigError(f"{where(config)}: robot.options.{unknown[0]}: not an option of the "
                          f"{config.adapter!r} adapter (known — {listing})")
    return config.options


def require_option(config: RobotConfig, key: str) -> Any:
    if key not in config.options:
        raise ConfigError(f"{where(config)}: robot.options.{key} is required by the {config.adapter!r} adapter")
    return config.options[key]


def glide(config: RobotConfig, read_state: Any, send: Any, target: Any, timeout_s: float = 30.0) -> None:
    """Move to ``target`` at the control rate, never more than ``max_step`` per tick (used by ``reset``)."""
    filt = SafetyFilter(config)
    filt.reset(read_state())
    target = filt.check(target, "target")
    period, deadline = 1.0 / config.control_rate_hz, time.monotonic() + timeout_s
    while not np.allclose(filt.last, target, atol=1e-9):
        if time.monotonic() > deadline:
            raise TimeoutError(f"robot {config.name!r}: did not reach the target pose within {timeout_s} s")
        send(filt(target))
        time.sleep(period)


class OpenCVCameras:
    """USB/UVC cameras read by OpenCV in background threads; `read` gives the latest RGB frame of each.

    ``devices`` maps each camera of ``config.cameras`` to a device path or index (RealSense D4xx
    colour streams appear as UVC devices too).
    """

    def __init__(self, config: RobotConfig, devices: dict[str, Any], timeout_s: float = 2.0) -> None:
        self.cv2 = import_sdk("cv2", config, "pip install opencv-python")
        missing = sorted(set(config.cameras) - set(devices))
        if missing:
            raise ConfigError(f"{where(config)}: robot.options.camera_devices: no device for camera(s) {missing}")
        self.config, self.timeout_s = config, timeout_s
        self._frames: dict[str, np.ndarray | None] = dict.fromkeys(config.cameras)
        self._stop = threading.Event()
        self._caps, self._threads = {}, []
        h, w = config.image_size
        for name in config.cameras:
            cap = self.cv2.VideoCapture(devices[name])
            if not cap.isOpened():
                self.close()
                raise RuntimeError(f"robot {config.name!r}: cannot open camera {name!r} at {devices[name]!r}")
            cap.set(self.cv2.CAP_PROP_FRAME_WIDTH, w)
            cap.set(self.cv2.CAP_PROP_FRAME_HEIGHT, h)
            self._caps[name] = cap
            thread = threading.Thread(target=self._grab, args=(name, cap), name=f"camera-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _grab(self, name: str, cap: Any) -> None:
        while not self._stop.is_set():
            ok, frame = cap.read()
            if ok:
                self._frames[name] = self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2RGB)

    def read(self) -> dict[str, np.ndarray]:
        deadline = time.monotonic() + self.timeout_s
        while any(f is None for f in self._frames.values()):
            if time.monotonic() > deadline:
                late = [n for n, f in self._frames.items() if f is None]
                raise RuntimeError(f"robot {self.config.name!r}: no frame from camera(s) {late} "
                                   f"within {self.timeout_s} s")
            time.sleep(0.005)
        return dict(self._frames)  # type: ignore[arg-type]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        for cap in self._caps.values():
            cap.release()


# --- AgiBot Genie-1 ---------------------------------------------------------------------------------
class Genie1Robot(Robot):
    """AgiBot Genie-1 through ``a2d_sdk.robot`` (``RobotDds`` for joints, ``CosineCamera`` for images).

    Read from AgiBot's public examples: ``arm_joint_states()`` / ``gripper_states()`` return
    ``(values, timestamp_ns)`` with 14 / 2 values, ``move_arm(list14)`` / ``move_gripper(list2)``
    command them, ``CosineCamera(names).get_latest_image(name)`` returns ``(image, timestamp_ns)``.
    """

    OPTIONS: ClassVar[dict[str, str]] = {"startup_s": "seconds to wait after connecting for the first DDS messages (default 1.0)"}

    def __init__(self, config: RobotConfig) -> None:
        super().__init__(config)
        check_layout(config, 16, [14, 15], "left arm 7, right arm 7, left gripper, right gripper")
        opts = check_options(config, self.OPTIONS)
        sdk = import_sdk("a2d_sdk.robot", config,
                         "AgiBot's a2d_sdk (shipped with the Genie-1 software image; not on PyPI)")
        self._robot = sdk.RobotDds()
        self._camera = sdk.CosineCamera(list(config.cameras))
        time.sleep(float(opts.get("startup_s", 1.0)))

    def _state(self) -> np.ndarray:
        arm, _ = self._robot.arm_joint_states()
        grippers, _ = self._robot.gripper_states()
        state = np.asarray([*arm, *grippers], dtype=np.float32)
        if state.shape != (16,):
            raise RuntimeError(f"robot {self.config.name!r}: a2d_sdk gave {len(arm)} arm + {len(grippers)} "
                               f"gripper values, expected 14 + 2")
        return state

    def _image(self, name: str) -> np.ndarray:
        # UNCONFIRMED: AgiBot's examples convert these frames RGB→BGR before cv2.imshow, so they are
        # taken as RGB (H, W, 3) uint8 here; anything else is refused rather than guessed.
        image, _ = self._camera.get_latest_image(name)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RuntimeError(f"robot {self.config.name!r}: camera {name!r} gave "
                               f"{getattr(image, 'shape', type(image).__name__)}, expected an (H, W, 3) uint8 frame")
        return image

    def observe(self) -> dict:
        return {"images": {name: self._image(name) for name in self.config.cameras}, "state": self._state()}

    def act(self, action: np.ndarray) -> None:
        # Gripper units are those of gripper_states() (AgiBot World records them in [0, 1]; UNCONFIRMED
        # for every firmware — check the YAML's gripper limits against your unit).
        self._robot.move_arm([float(x) for x in action[:14]])
        self._robot.move_gripper([float(x) for x in action[14:]])

    def reset(self) -> None:
        glide(self.config, self._state, self.act, self.config.home)

    def close(self) -> None:
        for release in (self._camera.close, self._robot.shutdown):
            try:
                release()
            except Exception:  # closing must go on
                log.exception("robot %r: %s failed", self.config.name, getattr(release, "__name__", release))


# --- ARX ----------------------------------------------------------------------------------------------
class _ArxBimanual(Robot):
    """Two ARX 6-DoF arms with grippers on two CAN buses, ALOHA layout; cameras through OpenCV."""

    OPTIONS: ClassVar[dict[str, str]] = {
        "left_can": "CAN interface of the left arm (e.g. can0)",
        "right_can": "CAN interface of the right arm (e.g. can1)",
        "camera_devices": "camera name → OpenCV device (path such as /dev/video0, or index)",
        "sdk_path": "folder holding the SDK's Python module, put on sys.path before importing (optional)",
    }

    def __init__(self, config: RobotConfig) -> None:
        super().__init__(config)
        check_layout(config, 14, [6, 13], "left arm 6, left gripper, right arm 6, right gripper")
        check_options(config, self.OPTIONS)
        self._arms = [self._connect(require_option(config, key)) for key in ("left_can", "right_can")]
        self._cameras = OpenCVCameras(config, require_option(config, "camera_devices"))

    def _connect(self, can: str) -> Any:
        raise NotImplementedError

    def _read(self, arm: Any) -> list[float]:
        """One arm: 6 joints then the gripper."""
        raise NotImplementedError

    def _write(self, arm: Any, command: np.ndarray) -> None:
        """One arm: 6 joints then the gripper."""
        raise NotImplementedError

    def _state(self) -> np.ndarray:
        return np.asarray([*self._read(self._arms[0]), *self._read(self._arms[1])], dtype=np.float32)

    def observe(self) -> dict:
        return {"images": self._cameras.read(), "state": self._state()}

    def act(self, action: np.ndarray) -> None:
        self._write(self._arms[0], action[:7])
        self._write(self._arms[1], action[7:])

    def reset(self) -> None:
        glide(self.config, self._state, self.act, self.config.home)

    def close(self) -> None:
        self._cameras.close()
        self._arms = []  # the SDK objects release the CAN buses when destroyed


class ArxAcOneRobot(_ArxBimanual):
    """ARX AC One: two X5 arms through arx5-sdk's ``arx5_interface`` (``Arx5JointController``).

    Confirmed in arx5-sdk's type stubs and examples: ``Arx5JointController(model, can)``,
    ``enable_background_send_recv()``, ``get_state()`` → ``JointState`` with ``pos()`` (6,) and
    ``gripper_pos`` (metres, 0 closed … ``gripper_width`` = 0.088 open on the X5),
    ``set_joint_cmd(JointState(dof))``.
    """

    OPTIONS: ClassVar[dict[str, str]] = {**_ArxBimanual.OPTIONS, "model": "arx5-sdk robot model of both arms: X5 (default) or L5"}

    def _connect(self, can: str) -> Any:
        opts = self.config.options
        self._sdk = import_sdk("arx5_interface", self.config,
                               "build arx5-sdk (github.com/real-stanford/arx5-sdk) and put its python/ folder on "
                               "PYTHONPATH (or set robot.options.sdk_path) and its lib/ on LD_LIBRARY_PATH",
                               opts.get("sdk_path"))
        arm = self._sdk.Arx5JointController(str(opts.get("model", "X5")), can)
        arm.enable_background_send_recv()
        return arm

    def _read(self, arm: Any) -> list[float]:
        state = arm.get_state()
        return [*np.asarray(state.pos(), dtype=np.float64).tolist(), float(state.gripper_pos)]

    def _write(self, arm: Any, command: np.ndarray) -> None:
        cmd = self._sdk.JointState(6)
        cmd.pos()[:] = np.asarray(command[:6], dtype=np.float64)
        cmd.gripper_pos = float(command[6])
        arm.set_joint_cmd(cmd)


class ArxLift2Robot(_ArxBimanual):
    """ARX Lift-2 through ARX's vendor bindings (``arx_r5_python`` by default, ``arx_x5_python`` has
    the same API): ``InterfacesPy(can, arm_type)``, ``get_joint_positions()`` (7 values: 6 joints and
    the gripper), ``set_joint_positions(list6)`` + ``set_arm_status(5)`` (joint-position mode, as
    ARX's ``SingleArm.set_joint_positions`` does), ``set_catch(gripper)``.
    """

    OPTIONS: ClassVar[dict[str, str]] = {
        **_ArxBimanual.OPTIONS,
        "sdk_module": "ARX binding module: arx_r5_python (default) or arx_x5_python, per the arms fitted",
        "arm_type": "second InterfacesPy argument (ARX examples use 0)"}
    JOINT_MODE = 5
    """``set_arm_status`` code for joint-position control in ARX's SingleArm example."""

    def _connect(self, can: str) -> Any:
        opts = self.config.options
        module = str(opts.get("sdk_module", "arx_r5_python"))
        sdk = import_sdk(module, self.config,
                         "ARX's Python SDK for the Lift-2 arms (github.com/ARXroboticsX: py/ folder of ARX_R5 or "
                         "ARX_X5, built with its setup.sh); or set robot.options.sdk_path", opts.get("sdk_path"))
        return sdk.InterfacesPy(can, int(opts.get("arm_type", 0)))

    def _read(self, arm: Any) -> list[float]:
        values = list(arm.get_joint_positions())
        if len(values) < 7:
            raise RuntimeError(f"robot {self.config.name!r}: ARX get_joint_positions gave {len(values)} values, "
                               f"expected 7 (6 joints + gripper)")
        return [float(v) for v in values[:7]]

    def _write(self, arm: Any, command: np.ndarray) -> None:
        arm.set_joint_positions([float(x) for x in command[:6]])
        arm.set_arm_status(self.JOINT_MODE)
        # UNCONFIRMED: set_catch takes the gripper in the units get_joint_positions()[6] reports
        # (ARX motor readout, about 0 closed … 5 open); check the YAML's gripper limits on your unit.
        arm.set_catch(float(command[6]))
