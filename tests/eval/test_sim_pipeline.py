"""The whole simulator loop a user runs, on a small scale: record expert demonstrations of both tasks →
post-train with ``configs/sim_aloha.yaml`` → export → evaluate the policy closed-loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("dm_control") is None,
    reason="the MuJoCo simulator needs the `sim` extra: pip install -e '.[sim]'",
)


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_record_post_train_export_evaluate(tmp_path):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "A1_SIM_DATA": str(tmp_path / "sim"),
           "A1_PROGRESS": "lines"}
    for task in ("transfer_cube", "conveyor_transfer_cube"):
        _run(["-m", "a1.sim.record", str(tmp_path / "sim" / task), "--task", task, "--episodes", "2",
              "--episode-steps", "60", "--keep-failures", "--height", "48", "--width", "64"], env)
    run = tmp_path / "run"
    _run(["-m", "a1.fit", "--config", "configs/tiny.yaml", "--config", "configs/sim_aloha.yaml",
          f"--trainer.default_root_dir={run}", "--trainer.max_steps=2", "--trainer.val_check_interval=2",
          "--data.batch_size=2", "--data.num_workers=0", "--data.val_fraction=0.5", "--data.val_samples=2"], env)
    report = json.loads((run / "startup_report.json").read_text())
    assert [d["name"] for d in report["datasets"]] == ["transfer_cube", "conveyor_transfer_cube"]
    assert all(d["state_dim"] == d["action_dim"] == 14 for d in report["datasets"])
    policy = tmp_path / "policy"
    _run(["-m", "a1.export", str(run / "checkpoints" / "last.ckpt"), str(policy)], env)
    out = tmp_path / "eval.json"
    _run(["-m", "a1.eval.sim", "--policy", str(policy), "--task", "conveyor_transfer_cube", "--episodes", "1",
          "--episode-steps", "20", "--execute", "16", "--no-compile", "--height", "48", "--width", "64",
          "--out", str(out)], env)  # the statistics named after the task, of the two the policy holds
    result = json.loads(out.read_text())
    assert result["options"]["execute"] == 16 and len(result["episodes"]) == 1
    assert json.loads((policy / "normalization.json").read_text()).keys() == {"transfer_cube", "conveyor_transfer_cube"}
    assert result["episodes"][0]["steps"] == 20 or result["episodes"][0]["success"]
