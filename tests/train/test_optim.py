"""Optimizer parameter groups and the learning-rate schedules of paper Table 2."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from a1.train.optim import OptimConfig, build_optimizer, build_scheduler, lr_lambda, param_groups

POST = OptimConfig(lr=5e-5, schedule="warmup_cosine", warmup_steps=2000, decay_steps=60000, min_lr=5e-6)


def lr_at(cfg: OptimConfig, step: int) -> float:
    return cfg.lr * lr_lambda(cfg)(step)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 5e-5 / 2000),
        (999, 2.5e-5),
        (1999, 5e-5),
        (2000, 5e-5),
        (31000, (5e-5 + 5e-6) / 2),
        (60000, 5e-6),
        (100000, 5e-6),
    ],
)
def test_post_training_schedule(step: int, expected: float) -> None:
    assert lr_at(POST, step) == pytest.approx(expected, rel=1e-9)


def test_post_training_schedule_shape() -> None:
    lrs = [lr_at(POST, s) for s in range(0, 70000, 250)]
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(5e-5)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))  # warmup increases
    tail = [lr_at(POST, s) for s in range(2000, 60001, 250)]
    assert all(a >= b for a, b in zip(tail, tail[1:]))  # cosine never increases
    assert min(lrs[peak:]) == pytest.approx(5e-6)  # after the peak: never below min_lr
    # a quarter into the decay: the cosine value, not a linear one
    quarter = 2000 + 58000 // 4
    assert lr_at(POST, quarter) == pytest.approx(5e-6 + 4.5e-5 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_constant_schedule() -> None:
    cfg = OptimConfig()
    assert cfg.schedule == "constant"
    for step in (0, 1, 1999, 2000, 31000, 60000, 700000):
        assert lr_at(cfg, step) == 5e-5


def test_scheduler_steps_the_optimizer() -> None:
    cfg = replace(POST, warmup_steps=4, decay_steps=8, lr=1e-3, min_lr=1e-4)
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, cfg)
    sched_cfg = build_scheduler(opt, cfg)
    rest = {k: v for k, v in sched_cfg.items() if k != "scheduler"}
    assert rest == {"interval": "step", "frequency": 1, "name": "lr"}
    sched = sched_cfg["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    seen = [[g["lr"] for g in opt.param_groups]]
    for _ in range(5):
        model(torch.randn(4, 3)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        seen.append([g["lr"] for g in opt.param_groups])
    expected = [1e-3 * f for f in (0.25, 0.5, 0.75, 1.0, 1.0)]
    expected.append(1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * 1 / 4)))
    for lrs, want in zip(seen, expected):
        assert lrs == pytest.approx([want] * len(opt.param_groups))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)  # weight: decay; bias: no decay
        self.norm = nn.LayerNorm(4)
        self.rms = nn.RMSNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied


def test_param_groups_membership() -> None:
    model = Tiny()
    groups = param_groups(model, 0.01)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"decay", "no_decay"}
    assert by_name["decay"]["param_names"] == ["proj.weight"]
    assert sorted(by_name["no_decay"]["param_names"]) == sorted(
        ["embed.weight", "proj.bias", "norm.weight", "norm.bias", "rms.weight", "gn.weight", "gn.bias"]
    )
    assert by_name["decay"]["weight_decay"] == 0.01
    assert by_name["no_decay"]["weight_decay"] == 0.0
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})  # tied weight once
    assert sum(p is model.head.weight for p in params) == 1
    assert not any(p is model.frozen.weight or p is model.frozen.bias for p in params)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in params} == trainable
    for g in groups:
        named = dict(model.named_parameters())
        assert all(named[n] is p for n, p in zip(g["param_names"], g["params"], strict=True))


def test_param_groups_drops_empty_groups() -> None:
    groups = param_groups(nn.LayerNorm(4), 0.01)
    assert [g["name"] for g in groups] == ["no_decay"]
    assert param_groups(nn.Linear(2, 2).requires_grad_(False), 0.01) == []


def test_optimizer_hyper_parameters() -> None:
    opt = build_optimizer(Tiny(), OptimConfig())
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    for g in groups.values():
        assert g["lr"] == 5e-5
        assert tuple(g["betas"]) == (0.9, 0.95)
        assert g["eps"] == 1e-8
        assert not g["fused"]
    assert groups["decay"]["weight_decay"] == 0.01
    assert groups["no_decay"]["weight_decay"] == 0.0


def test_no_trainable_parameters_raises() -> None:
    with pytest.raises(ValueError, match="trainable"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), OptimConfig())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": 0.0}, "optim.lr"),
        ({"lr": -1e-4}, "optim.lr"),
        ({"min_lr": 1e-4}, "optim.min_lr"),
        ({"min_lr": -1e-6}, "optim.min_lr"),
        ({"warmup_steps": 60000}, "optim.decay_steps"),
        ({"warmup_steps": -1}, "optim.warmup_steps"),
        ({"betas": [0.9, 1.0]}, "optim.betas"),
        ({"betas": [-0.1, 0.95]}, "optim.betas"),
        ({"betas": [0.9]}, "optim.betas"),
        ({"eps": 0.0}, "optim.eps"),
        ({"weight_decay": -0.01}, "optim.weight_decay"),
        ({"schedule": "linear"}, "optim.schedule"),
    ],
)
def test_bad_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):  # when the config is read
        replace(POST, **changes)


def test_warmup_cosine_fields_ignored_by_constant() -> None:
    cfg = OptimConfig(schedule="constant", min_lr=1.0, warmup_steps=10, decay_steps=5)
    assert lr_lambda(cfg)(123) == 1.0
