"""A1Module: the λ-weighted loss, non-finite handling, freezing, EMA; the fit CLI end to end."""

import os
import subprocess
import sys

import pytest
import torch

from a1.model.policy import joint_loss
from a1.testing import random_batch
from a1.train.module import A1Module, NonFiniteLossError
from tests.conftest import CONFIGS, ROOT, tiny_qwen


class _Trainerless(A1Module):
    """Calls training_step outside a Trainer (logging and optimizers are no-ops)."""

    def log(self, *args, **kwargs):
        pass

    def optimizers(self, *args, **kwargs):
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def test_training_step_is_the_lambda_weighted_joint_loss():
    torch.manual_seed(0)
    module = _Trainerless(tiny_qwen(), lambda_gen=0.5)
    batch = random_batch(module.policy.cfg, 2)
    batch.has_action[1] = False
    loss = module.training_step(batch, 0)
    noise, tau = module.flow_draws(batch)  # a function of (seed, step, rank): drawn again identically
    expected = joint_loss(module.policy(batch, noise=noise, tau=tau), 0.5)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_non_finite_loss(mode):
    module = _Trainerless(tiny_qwen(), on_nonfinite=mode)
    batch = random_batch(module.policy.cfg, 2)
    batch.dataset_id[:] = 3
    with torch.no_grad():
        module.policy.action_head.action_out.weight.fill_(float("inf"))
    if mode == "stop":
        with pytest.raises(NonFiniteLossError, match=r"step 0 \(batch 0, dataset ids \[3\]"):
            module.training_step(batch, 0)
    else:
        assert module.training_step(batch, 0) is None


def test_freeze_options():
    vision = A1Module(tiny_qwen(), freeze_vision=True)
    assert not any(p.requires_grad for p in vision.policy.understanding.backbone.model.visual.parameters())
    assert any(p.requires_grad for p in vision.policy.understanding.language_model.parameters())
    und = A1Module(tiny_qwen(), freeze_understanding=True)
    assert not any(p.requires_grad for p in und.policy.understanding.parameters())
    assert all(p.requires_grad for p in und.policy.action.parameters())


def test_ema_is_used_for_validation_weights():
    module = A1Module(tiny_qwen(), ema_decay=0.9)
    assert module.eval_policy is module.ema.module and module.eval_policy is not module.policy
    assert not any(p.requires_grad for p in module.ema.parameters())


def _fit(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "a1.fit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_fast_dev_run_of_the_tiny_config(tmp_path):
    proc = _fit("--config", str(CONFIGS / "tiny.yaml"), "--trainer.fast_dev_run=2", "--data.num_workers=0",
                f"--trainer.default_root_dir={tmp_path}", env={"A1_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max_steps=2` reached" in proc.stderr + proc.stdout


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_parses_and_prints(config):
    proc = _fit("--config", str(CONFIGS / config), "--print_config", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "policy:" in proc.stdout and "lambda_gen:" in proc.stdout


def test_unknown_key_and_override(tmp_path):
    proc = _fit("--config", str(CONFIGS / "tiny.yaml"), "--model.lamda_gen=0.1", "--print_config", timeout=120)
    assert proc.returncode != 0 and "lamda_gen" in proc.stderr
    proc = _fit("--config", str(CONFIGS / "tiny.yaml"), "--model.policy.action.chunk_size=8", "--print_config",
                timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "chunk_size: 8" in proc.stdout  # the data section follows through ${model.policy.action.chunk_size}
    assert "chunk_size: 16" not in proc.stdout
