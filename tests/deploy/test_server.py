"""The policy server (#8 §3): wire protocol, per-connection episodes, every bad message, API key.

The test client is written to the documented wire protocol only (websockets + msgpack numpy maps),
doing what openpi-client's ``WebsocketClientPolicy`` does: read the metadata first, then one
binary reply per observation, a text frame meaning an error. Most tests serve a tiny random policy
from a thread of this process; one starts ``python deploy/serve.py`` as a real process.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from a1.deploy.processor import absent_views
from a1.deploy.protocol import packb, unpackb
from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
from a1.deploy.server import PolicyServer
from a1.testing import random_policy_folder

ROOT = Path(__file__).resolve().parents[2]
CAMERAS = {"cam_high": "head", "cam_left_wrist": "left_wrist", "cam_right_wrist": "right_wrist", "cam_low": None}
EXECUTE = 4
MAX_BYTES = 2**20


class ServerError(RuntimeError):
    """The server answered with a text frame (openpi-client raises RuntimeError too)."""


class Client:
    """A robot client speaking the documented protocol (as openpi-client's WebsocketClientPolicy)."""

    def __init__(self, uri: str, api_key: str | None = None) -> None:
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._connect = connect(uri, compression=None, max_size=None, additional_headers=headers)

    def __enter__(self):
        self.ws = self._connect.__enter__()
        self.metadata = unpackb(self.ws.recv())
        return self

    def __exit__(self, *exc) -> None:
        self._connect.__exit__(*exc)

    def send(self, payload: bytes | str) -> dict:
        self.ws.send(payload)
        reply = self.ws.recv()
        if isinstance(reply, str):
            raise ServerError(reply)
        return unpackb(reply)

    def infer(self, obs: dict) -> dict:
        return self.send(packb(obs))


def observation(value: int | None = None, layout: str = "hwc", size: tuple[int, int] = (48, 80), seed: int = 0,
                **override) -> dict:
    """An openpi ALOHA-style observation keyed by camera names (cam_low is not fed to the policy)."""
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if layout == "hwc" else (3, *size)
    images = {cam: (np.full(shape, value, np.uint8) if value is not None else
                    rng.integers(0, 256, shape, dtype=np.uint8)) for cam in CAMERAS}
    obs = {"state": rng.normal(size=14), "images": images, "prompt": "fold the towel"}
    obs.update(override)
    return obs


def check_reply(reply: dict, n: int = EXECUTE) -> None:
    actions = reply["actions"]
    assert actions.shape == (n, 14) and actions.dtype == np.float32 and np.isfinite(actions).all()
    assert reply["server_timing"]["infer_ms"] > 0


@pytest.fixture(scope="module")
def policy_folder(tmp_path_factory) -> Path:
    return random_policy_folder(tmp_path_factory.mktemp("policy") / "tiny")


@pytest.fixture(scope="module")
def runtime(policy_folder) -> PolicyRuntime:
    return PolicyRuntime.load(policy_folder, options=RuntimeOptions(compile=False, warmup=1))


@pytest.fixture(scope="module")
def uri(runtime) -> str:
    server = PolicyServer(runtime, CAMERAS, {"robot": "test_aloha", "control_rate_hz": 50.0}, execute=EXECUTE,
                          port=0, max_message_bytes=MAX_BYTES)
    with server.running() as (host, port):
        yield f"ws://{host}:{port}"


@pytest.fixture(scope="module")
def keyed_uri(runtime) -> str:
    server = PolicyServer(runtime, CAMERAS, execute=EXECUTE, port=0, api_key="s3cret")
    with server.running() as (host, port):
        yield f"ws://{host}:{port}"


def healthz(uri: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(uri.replace("ws://", "http://") + "/healthz", timeout=timeout) as r:
        return r.status, r.read().decode()


@pytest.fixture
def plans(runtime, monkeypatch):
    """Record what each inference sees (frames t−m and t per view), and allow slowing/failing it."""
    calls, control = [], {"sleep": 0.0, "fail": None}
    active, seen = [0], [0]
    plan = runtime.plan

    def spy(raw, *args, **kwargs):
        active[0] += 1
        seen[0] = max(seen[0], active[0])
        try:
            calls.append({view: f.copy() for view, f in raw.frames.items()})
            time.sleep(control["sleep"])
            if control["fail"] is not None:
                err, control["fail"] = control["fail"], None
                raise err
            return plan(raw, *args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(runtime, "plan", spy)
    control["calls"], control["max_active"] = calls, seen
    return control


# --- protocol -----------------------------------------------------------------------------------
def test_metadata_on_connect(uri):
    with Client(uri) as c:
        m = c.metadata
    assert m["robot"] == "test_aloha" and m["control_rate_hz"] == 50.0
    assert m["cameras"] == ["cam_high", "cam_left_wrist", "cam_right_wrist"] and m["camera_views"] == CAMERAS
    assert m["views"] == ["head", "left_wrist", "right_wrist"] and m["absent_views"] == []
    assert (m["state_dim"], m["action_dim"], m["chunk_size"], m["execute"]) == (14, 14, 16, EXECUTE)
    assert m["normalization"] == "sim_aloha" and m["a1_version"] and m["history"] == 15


@pytest.mark.parametrize("layout,size", [("hwc", (48, 80)), ("chw", (48, 80)), ("chw", (120, 160)),
                                         ("hwc", (64, 64))])
def test_round_trip(uri, layout, size):
    with Client(uri) as c:
        first = c.infer(observation(layout=layout, size=size))
        second = c.infer(observation(layout=layout, size=size, seed=1))
    check_reply(first)
    check_reply(second)
    assert "prev_total_ms" in second["server_timing"] and second["server_timing"]["wait_ms"] >= 0


def test_each_connection_keeps_its_own_history(uri, plans):
    with Client(uri) as a, Client(uri) as b:
        a.infer(observation(10))
        b.infer(observation(200))
        check_reply(a.infer(observation(50)))        # frame t−m: a's own first frame, not b's
        check_reply(a.infer(observation(70, reset=True)))  # a new episode: its first frame again
    a1_, b1, a2, a3 = plans["calls"]
    def same(frames, value):  # float after the resize; the letterbox pads the 48×80 frames with zeros
        content = frames[frames > 0.5]
        return content.size > frames.size // 2 and np.allclose(content, value, atol=1e-3)

    assert same(a1_["head"], 10) and same(b1["head"], 200)
    assert same(a2["head"][0], 10) and same(a2["head"][1], 50)
    assert same(a3["head"], 70)


def test_clients_are_served_one_at_a_time(uri, plans):
    errors = []

    def robot(seed):
        try:
            with Client(uri) as c:
                for i in range(2):
                    check_reply(c.infer(observation(seed=seed + i)))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=robot, args=(10 * s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(plans["calls"]) == 6 and plans["max_active"][0] == 1


# --- bad messages: an error frame back, and the server goes on ---------------------------------
def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def _short_array() -> bytes:
    """A (14,) float32 array map whose data holds 8 bytes, not 56."""
    state = {"__ndarray__": True, "data": b"\0" * 8, "dtype": "<f4", "shape": [14]}
    return msgpack.packb({"state": state, "images": {}, "prompt": "x"}, use_bin_type=True)


BAD = {
    "not msgpack": (lambda: b"\xc1\x00\x01", "bad message"),
    "text frame": (lambda: "hello", "text frame"),
    "not a map": (lambda: packb([1, 2, 3]), "expected a map"),
    "array data short": (_short_array, "needs 56 bytes"),
    "missing state": (lambda: packb(_without(observation(), "state")), "missing key 'state'"),
    "missing images": (lambda: packb(_without(observation(), "images")), "missing key 'images'"),
    "missing camera": (lambda: packb(observation(images=_without(observation()["images"], "cam_left_wrist"))),
                       "missing camera.*cam_left_wrist"),
    "unknown camera": (lambda: packb(observation(images={**observation()["images"],
                                                         "cam_extra": np.zeros((8, 8, 3), np.uint8)})),
                       "unknown camera 'cam_extra'"),
    "float images": (lambda: packb(observation(images={c: np.full((48, 80, 3), 2.0, np.float32) for c in CAMERAS})),
                     r"'head'.*float32.*\[0, 1\].*uint8"),
    "grey image": (lambda: packb(observation(images={**observation()["images"], "cam_high": np.zeros((48, 80),
                                                                                                     np.uint8)})),
                   r"'head'.*\(48, 80\)"),
    "state dims": (lambda: packb(observation(state=np.zeros(13))), "state: expected 14 dims.*got 13"),
    "state dtype": (lambda: packb(observation(state=np.array(["a"] * 14))), "state: expected a"),
    "NaN state": (lambda: packb(observation(state=np.r_[np.zeros(3), np.nan, np.zeros(10)])), "NaN.*dim 3"),
    "prompt type": (lambda: packb(observation(prompt=3)), "prompt: expected a string"),
    "reset type": (lambda: packb(observation(reset="yes")), "reset: expected true or false"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_message_is_an_error_frame_and_the_connection_stays_open(uri, case):
    make, expected = BAD[case]
    with Client(uri) as c:
        with pytest.raises(ServerError, match=expected):
            c.send(make())
        check_reply(c.infer(observation()))  # same connection, same episode, fixed message


def test_a_frame_size_change_mid_episode_is_served(uri):
    """Frames are resized to the training size when they enter the history, so a camera whose
    resolution changes mid-episode is still paired with its earlier frame."""
    with Client(uri) as c:
        check_reply(c.infer(observation(size=(48, 80))))
        check_reply(c.infer(observation(size=(32, 32))))
        check_reply(c.infer(observation(size=(48, 80))))


def test_oversized_message_closes_that_connection_with_1009(uri):
    with Client(uri) as c:
        with pytest.raises(ConnectionClosed) as info:
            c.send(b"\0" * (MAX_BYTES + 1))
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with Client(uri) as other:
        check_reply(other.infer(observation()))


def test_internal_error_is_reported_then_closed_with_1011(uri, plans):
    plans["fail"] = RuntimeError("boom")
    with Client(uri) as c:
        with pytest.raises(ServerError, match="internal server error: RuntimeError: boom"):
            c.infer(observation())
        with pytest.raises(ConnectionClosed) as info:
            c.ws.recv(timeout=5)
        assert info.value.rcvd.code == 1011
    with Client(uri) as other:
        check_reply(other.infer(observation()))


def test_client_dropping_mid_request_and_healthz_while_computing(uri, plans, caplog):
    caplog.set_level(logging.INFO, logger="a1.deploy.server")
    plans["sleep"] = 1.0
    with Client(uri) as gone:
        gone.ws.send(packb(observation()))
        time.sleep(0.2)  # its inference is running now
        t0 = time.perf_counter()
        assert healthz(uri) == (200, "OK\n")
        assert time.perf_counter() - t0 < 0.5  # not queued behind the inference
        gone.ws.socket.close()  # drops without a closing handshake
    plans["sleep"] = 0.0
    with Client(uri) as other:
        check_reply(other.infer(observation()))
    assert len(plans["calls"]) == 2
    assert any("disconnected after 0 request(s)" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- API key ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [None, "wrong"])
def test_api_key_refused(keyed_uri, key):
    with pytest.raises(InvalidStatus) as info:
        Client(keyed_uri, api_key=key).__enter__()
    assert info.value.response.status_code == 401


def test_api_key_accepted_and_healthz_needs_none(keyed_uri):
    with Client(keyed_uri, api_key="s3cret") as c:
        check_reply(c.infer(observation()))
    assert healthz(keyed_uri) == (200, "OK\n")


# --- construction -------------------------------------------------------------------------------
def test_camera_map_is_checked(runtime):
    assert absent_views(["head", "left_wrist", "right_wrist"], {"cam_high": "head", "x": None}) == (
        "left_wrist", "right_wrist")
    with pytest.raises(ValueError, match="no camera maps to.*right_wrist"):
        PolicyServer(runtime, {"cam_high": "head", "cam_left_wrist": "left_wrist"})
    with pytest.raises(ValueError, match="both map to view 'head'"):
        PolicyServer(runtime, {**CAMERAS, "cam_low": "head"})
    with pytest.raises(ValueError, match="execute"):
        PolicyServer(runtime, CAMERAS, execute=17)


# --- the script, as a real process ---------------------------------------------------------------
def test_serve_script(policy_folder, tmp_path):
    env = {**os.environ, "A1_API_KEY": "env-key", "PYTHONUNBUFFERED": "1"}
    script = [sys.executable, "deploy/serve.py"]
    bad = [subprocess.Popen([*script, "--policy", str(policy_folder), "--robot", "no_such_robot"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
           subprocess.Popen([*script, "--policy", str(tmp_path / "missing"), "--robot", "sim_aloha"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    proc = subprocess.Popen([*script, "--policy", str(policy_folder), "--robot", "sim_aloha", "--port", "0",
                             "--no-compile", "--execute", "3"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for p, what in zip(bad, ["unknown robot 'no_such_robot'", "policy folder not found"]):
            out, err = p.communicate(timeout=60)
            assert p.returncode == 2 and err.strip().splitlines()[-1].startswith("error: ") and what in err, err
        line = proc.stdout.readline()
        match = re.search(r"ready on (ws://[\d.]+:\d+)", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        uri = match.group(1)
        assert "robot sim_aloha" in line and "warm-up" in line
        assert healthz(uri) == (200, "OK\n")
        with pytest.raises(InvalidStatus):
            Client(uri).__enter__()
        with Client(uri, api_key="env-key") as c:
            assert c.metadata["robot"] == "sim_aloha" and c.metadata["execute"] == 3
            assert c.metadata["policy"] == policy_folder.name and c.metadata["control_rate_hz"] == 50
            obs = observation(layout="chw", size=(224, 224))
            del obs["images"]["cam_low"]  # sim_aloha has no such camera
            check_reply(c.infer(obs), n=3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopped" in out, err
        assert "connected" in err and "Traceback" not in err
    finally:
        for p in (proc, *bad):
            if p.poll() is None:
                p.kill()
                p.communicate()
