"""``deploy/run_robot.py`` as real processes: the control loop on the simulated ALOHA with a policy
run here (sync and ``--async``) or on a ``deploy/serve.py`` server (API key right and wrong, the
server going away), Ctrl-C as a clean emergency stop, and bad input as one ``error:`` line.

Every process runs eager PyTorch (``--no-compile``) on a tiny random policy; independent processes
start together to keep the file quick on a small machine.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a1.testing import random_policy_folder
from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # processes run side by side
PROMPT = "fold the towel"
FINAL = re.compile(r"^sim_aloha: (\d+) steps; (\{.*\})$")


@pytest.fixture(scope="module")
def policy_folder(tmp_path_factory) -> Path:
    return random_policy_folder(tmp_path_factory.mktemp("policy") / "tiny")


class Proc:
    """A script started from the repository root, its stdout and stderr going to files (never a full pipe)."""

    def __init__(self, tmp: Path, name: str, script: str, *args: str) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.p = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=ENV, stdout=out, stderr=err,
                                      stdin=subprocess.DEVNULL)

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """Poll stdout until ``pattern`` appears; fail (with the output) if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.stdout)
            if match:
                return match
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no {pattern!r} from {self.p.args} (exit {self.p.poll()}):\n{self.stdout}\n{self.stderr}")

    def wait(self, timeout: float = 60.0) -> int:
        return self.p.wait(timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def run_robot(tmp: Path, name: str, *args: str, robot: str = "sim_aloha") -> Proc:
    return Proc(tmp, name, "deploy/run_robot.py", "--robot", robot, "--prompt", PROMPT, *args)


def finished(proc: Proc, timeout: float = 90.0) -> tuple[int, dict]:
    """Wait for a run to exit 0; its final line's step count and stats."""
    rc = proc.wait(timeout)
    assert rc == 0, f"exit {rc}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    match = FINAL.match(proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout
    return int(match.group(1)), ast.literal_eval(match.group(2))


def failed(proc: Proc, rc: int, what: str, timeout: float = 90.0) -> str:
    """Wait for a run to exit ``rc`` with one ``error:`` line (containing ``what``) and no traceback."""
    got = proc.wait(timeout)
    err = proc.stderr
    assert got == rc, f"exit {got}, expected {rc}:\n{proc.stdout}\n{err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and what in errors[0], err
    return errors[0]


@pytest.fixture
def procs():
    """Processes started by a test; any still running at its end is killed."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def test_local_policy_sync_and_async(policy_folder, tmp_path, procs):
    common = ("--policy", str(policy_folder), "--steps", "30", "--no-compile", "--quiet")
    procs += [run_robot(tmp_path, "sync", *common), run_robot(tmp_path, "async", *common, "--async", "--execute", "4")]
    for proc in procs:
        steps, stats = finished(proc)
        assert steps == 30, proc.stdout
        assert stats["stop_reason"] == "finished" and stats["misses"] == 0, stats
        assert stats["commands"] >= 30, stats
        assert proc.stdout.strip().count("\n") == 0, "--quiet prints only the final line"


def test_remote_policy_and_api_key(policy_folder, tmp_path, procs):
    server = Proc(tmp_path, "server", "deploy/serve.py", "--policy", str(policy_folder), "--robot", "sim_aloha",
                  "--port", "0", "--no-compile", "--api-key", "K")
    procs.append(server)
    uri = server.wait_for(r"ready on (ws://127\.0\.0\.1:\d+)", timeout=90).group(1)
    remote = ("--server", uri, "--steps", "20", "--quiet")
    good, wrong = run_robot(tmp_path, "good", *remote, "--api-key", "K"), run_robot(tmp_path, "wrong", *remote,
                                                                                        "--api-key", "nope")
    forever = run_robot(tmp_path, "forever", "--server", uri, "--api-key", "K", "--steps", "0")
    procs += [good, wrong, forever]

    steps, stats = finished(good)
    assert steps == 20 and stats["stop_reason"] == "finished", stats
    line = failed(wrong, 2, "refused the connection")
    assert "401" in line and "API key" in line and uri in line, line

    # The server stops (Ctrl-C) under a running robot: the robot stops safely, one error line, exit 1.
    forever.wait_for(r"Hz \| step \d+", timeout=60)
    server.p.send_signal(signal.SIGINT)
    assert server.wait(30) == 0, server.stderr
    assert "stopped" in server.stdout and "Traceback" not in server.stderr, server.stderr
    assert "wrong API key" in server.stderr and "connected" in server.stderr, server.stderr
    failed(forever, 1, "closed the connection", timeout=30)
    assert "stopped on a policy server error" in forever.stdout, forever.stdout


def test_ctrl_c_is_a_clean_stop(policy_folder, tmp_path, procs):
    proc = run_robot(tmp_path, "forever", "--policy", str(policy_folder), "--steps", "0", "--no-compile")
    procs.append(proc)
    proc.wait_for(r"Hz \| step \d+ \| action", timeout=90)
    proc.p.send_signal(signal.SIGINT)
    steps, stats = finished(proc, timeout=30)
    assert steps >= 1 and stats["stop_reason"] == "Ctrl-C", proc.stdout
    assert "stopped (Ctrl-C)" in proc.stderr, proc.stderr


def test_bad_input_is_one_error_line(policy_folder, tmp_path, procs):
    procs += [run_robot(tmp_path, "robot", "--policy", str(policy_folder), robot="no_such_robot"),
              run_robot(tmp_path, "policy", "--policy", str(tmp_path / "missing"), "--no-compile", "--steps", "1"),
              run_robot(tmp_path, "uri", "--server", "http://127.0.0.1:1", "--steps", "1")]
    unknown, missing, uri = procs
    failed(unknown, 2, "unknown robot 'no_such_robot'")
    failed(missing, 2, f"policy folder not found: {tmp_path / 'missing'}")
    failed(uri, 2, "not a websocket address")
