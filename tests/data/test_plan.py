"""Tests for the `python -m a1.data.plan` CLI (run as real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from a1.data.plan import PlanConfigError, load_dataset_specs

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")  # the model; the test files overlay its data section
TABLE3 = [
    ("InternData-A1", 396_000_000, 0.64),
    ("RoboTwin", 17_000_000, 0.08),
    ("AgiBot-World (Beta)", 206_000_000, 0.18),
    ("RoboMind", 5_000_000, 0.02),
    ("EgoDex", 68_000_000, 0.08),
]


def _write_config(path: Path, drop: tuple[str, str] | None = None) -> Path:
    """Write a LightningCLI-style YAML with the Table 3 datasets (optionally dropping a key)."""
    lines = ["trainer:", "  max_steps: 10", "data:", "  datasets:"]
    for name, frames, weight in TABLE3:
        entry = {"name": f'"{name}"', "frames": frames, "weight": weight, "path": f"/d/{name}"}
        if drop and drop[0] == name:
            del entry[drop[1]]
        lines.append("    - {" + ", ".join(f"{k}: {v}" for k, v in entry.items()) + "}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "a1.data.plan", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_plan_json(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "cfg.yaml")
    proc = _run("--config", TINY, "--config", str(cfg), "--world-size", "8", "--num-workers", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"configured", "realized", "tv", "balance", "slots"} <= set(report)
    assert report["configured"] == pytest.approx({n: w for n, _, w in TABLE3})
    assert set(report["realized"]) == {n for n, _, _ in TABLE3}
    assert report["tv"] <= 0.02
    assert report["balance"] >= 1.0
    assert len(report["slots"]) == 32
    for i, row in enumerate(report["slots"]):
        assert {"slot", "rank", "worker", "datasets", "probabilities", "load"} <= set(row)
        assert (row["slot"], row["rank"], row["worker"]) == (i, i // 4, i % 4)
        assert len(row["datasets"]) == len(row["probabilities"]) >= 1
        assert sum(row["probabilities"]) == pytest.approx(1.0)


def test_plan_text(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "cfg.yaml")
    proc = _run("--config", TINY, "--config", str(cfg), "--world-size", "1", "--num-workers", "4")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "slot" in out and "rank" in out and "worker" in out
    assert "load balance (max/mean slot load)" in out
    assert "total variation distance" in out
    assert all(name in out for name, _, _ in TABLE3)
    table = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in table] == [0, 1, 2, 3]


def test_plan_missing_key_fails(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "bad.yaml", drop=("RoboMind", "frames"))
    proc = _run("--config", TINY, "--config", str(cfg), "--world-size", "2", "--num-workers", "2")
    assert proc.returncode != 0
    assert "'frames'" in proc.stderr and "RoboMind" in proc.stderr
    assert "bad.yaml" in proc.stderr and "data.datasets[3]" in proc.stderr


def test_load_specs_layering_and_interpolation(tmp_path: Path) -> None:
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(
        "data:\n  batch_size: 1000\n  datasets:\n"
        "      - {name: a, frames: '${data.batch_size}', weight: 1, path: /d/a}\n"
        "      - {name: b, frames: 50, weight: 0.5, path: /d/b}\n"
    )
    specs = load_dataset_specs([TINY, cfg])
    assert [(s.name, s.size, s.weight) for s in specs] == [("a", 1000, 1.0), ("b", 50, 0.5)]
    assert [s.name for s in load_dataset_specs(TINY)] == ["synthetic_robot", "synthetic_human"]


def test_load_specs_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanConfigError, match="not found"):
        load_dataset_specs(tmp_path / "nope.yaml")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data:\n  datasets:\n    - {frames: 3, weight: 1, path: /d}\n")  # no name
    with pytest.raises(PlanConfigError, match="invalid config"):
        load_dataset_specs([TINY, cfg])
    cfg.write_text("data:\n  datasets:\n    - {name: x, weight: 1, path: /d}\n")
    with pytest.raises(PlanConfigError, match=r"data.datasets\[0\] \('x'\): 'frames'"):
        load_dataset_specs([TINY, cfg])
