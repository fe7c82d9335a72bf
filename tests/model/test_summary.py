"""`python -m a1.model.summary`: the shipped configs reproduce the paper's Table 1 sizes."""

import json
import subprocess
import sys

import pytest

from tests.conftest import CONFIGS, ROOT

TABLE1 = {  # paper Table 1, parameters in billions
    "pretrain_3b.yaml": {"total": 3.2, "understanding": 2.13, "generation": 0.44, "action": 0.44},
    "pretrain_2b.yaml": {"total": 1.8, "understanding": 0.94, "generation": 0.36, "action": 0.36},
}


def _summary(config: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "a1.model.summary", "--config", str(CONFIGS / config), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )


@pytest.mark.parametrize("config", sorted(TABLE1))
def test_full_size_configs_match_table_1(config):
    proc = _summary(config, "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for key in ("understanding", "generation", "action", "other", "total"):
        assert isinstance(got[key], int)
    assert got["understanding"] + got["generation"] + got["action"] + got["other"] == got["total"]
    for key, billions in TABLE1[config].items():
        assert abs(got[key] / 1e9 - billions) / billions <= 0.03, (key, got[key])
    assert got["tokens"]["generation"] == 96
    assert got["tokens"]["state"] == 1 and got["tokens"]["action"] == 50


def test_tiny_summary_text():
    proc = _summary("tiny.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "understanding" in proc.stdout and "tokens per block" in proc.stdout
    assert "generation        96" in proc.stdout


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "tiny.yaml").read_text().replace("chunk_size: 16", "chunk_size: 16\n      chunk_szie: 3"))
    proc = subprocess.run([sys.executable, "-m", "a1.model.summary", "--config", str(bad)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "model.policy.action.chunk_szie" in proc.stderr and str(bad) in proc.stderr
