"""`python -m a1.eval.sim`: closed-loop rollouts of a policy folder in the MuJoCo ALOHA scene, through
the deploy runtime, reported with a Wilson interval."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from a1.eval.sim import wilson_interval
from a1.testing import random_policy_folder
from tests.conftest import ROOT


def test_wilson_interval():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_tiny_policy_runs_two_episodes_end_to_end(tmp_path):
    """A random-weight tiny policy (success not expected) driven by the real runtime in the real scene."""
    pytest.importorskip("dm_control", reason="the MuJoCo simulator needs the `sim` extra: pip install -e '.[sim]'")
    folder = random_policy_folder(tmp_path / "policy")
    out = tmp_path / "eval" / "report.json"
    cmd = [sys.executable, "-m", "a1.eval.sim", "--policy", str(folder), "--task", "conveyor_transfer_cube",
           "--episodes", "2", "--seed", "7", "--episode-steps", "30", "--execute", "8", "--no-compile",
           "--videos", "1", "--out", str(out)]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "conveyor_transfer_cube: success" in done.stdout
    report = json.loads(out.read_text())
    assert [e["seed"] for e in report["episodes"]] == [7, 8]
    for e in report["episodes"]:
        assert isinstance(e["success"], bool) and 0 <= e["max_reward"] <= 4
        assert e["steps"] == 30 or e["success"]
    lo, hi = report["wilson95"]
    assert 0.0 <= lo <= report["success_rate"] <= hi <= 1.0
    assert report["options"]["execute"] == 8 and report["options"]["task"] == "conveyor_transfer_cube"
    assert (tmp_path / "eval" / "report" / "episode_7.mp4").stat().st_size > 0
    assert not (tmp_path / "eval" / "report" / "episode_8.mp4").exists()


def test_the_scripted_experts_are_scored_over_worker_processes(tmp_path):
    """``--expert`` scores the recorded demonstrations' expert on the same seeds; two worker processes
    give the same per-seed outcomes, in seed order, as one process."""
    pytest.importorskip("dm_control", reason="the MuJoCo simulator needs the `sim` extra: pip install -e '.[sim]'")
    from a1.eval.sim import EvalOptions, evaluate

    base = {"task": "conveyor_transfer_cube", "episodes": 3, "seed": 0, "belt_speed": 0.03}
    two = evaluate(EvalOptions(expert="anticipating", workers=2, **base), progress=False)
    one = evaluate(EvalOptions(expert="anticipating", **base), progress=False)
    static = evaluate(EvalOptions(expert="static", **base), progress=False)
    assert [e["seed"] for e in two["episodes"]] == [0, 1, 2]
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in two["episodes"]]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in one["episodes"]]
    assert two["success_rate"] == 1.0 and two["expert"] == "anticipating" and two["policy"] is None
    assert static["success_rate"] == 0.0  # it grasps where the belt has carried the cube away from
    assert all(e["steps"] < 400 for e in two["episodes"])


def test_policy_and_expert_are_exclusive():
    from a1.eval.sim import EvalOptions, evaluate

    with pytest.raises(ValueError, match="exactly one of policy"):
        evaluate(EvalOptions(policy="x", expert="static"))
    with pytest.raises(ValueError, match="expert must be one of"):
        evaluate(EvalOptions(expert="oracle"))
    with pytest.raises(ValueError, match="execute apply to a policy"):
        evaluate(EvalOptions(expert="anticipating", execute=16))
    with pytest.raises(ValueError, match="only on the conveyor"):
        evaluate(EvalOptions(expert="static", task="insertion"))
