"""Optimizer and learning-rate schedule of the training recipe (paper Table 2).

Pre-training: AdamW β = (0.9, 0.95), eps 1e-8, weight decay 0.01, constant LR 5e-5, gradient
clipping 1.0. Post-training: the same optimizer with a linear warmup over 2,000 steps to 5e-5,
then a cosine decay to 5e-6 at step 60,000 (``schedule: warmup_cosine``).

Every field's docstring of :class:`OptimConfig` is its ``--help`` text under LightningCLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

Schedule = Literal["constant", "warmup_cosine"]


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = 5e-5
    """Peak learning rate (AdamW ``lr``); the constant LR of the ``constant`` schedule."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW ``(beta1, beta2)``, each in [0, 1)."""

    eps: float = 1e-8
    """AdamW ``eps`` (term added to the denominator)."""

    weight_decay: float = 0.01
    """Decoupled weight decay of AdamW, applied to weight matrices only (never to biases, norm
    weights or embeddings)."""

    schedule: Schedule = "constant"
    """``constant`` (pre-training) or ``warmup_cosine`` (post-training: linear warmup to ``lr``
    over ``warmup_steps``, cosine decay to ``min_lr`` at ``decay_steps``, then ``min_lr``)."""

    warmup_steps: int = 2000
    """Optimizer steps of linear warmup (``warmup_cosine`` only)."""

    decay_steps: int = 60000
    """Step at which the cosine decay reaches ``min_lr`` (``warmup_cosine`` only)."""

    min_lr: float = 5e-6
    """Final learning rate of the cosine decay (``warmup_cosine`` only)."""


    def __post_init__(self) -> None:
        validate(self)  # fail when the config is read, before a model is built


def validate(cfg: OptimConfig) -> None:
    """Raise ``ValueError`` naming the offending field (``optim.<field>``) of a bad config."""
    if not cfg.lr > 0:
        raise ValueError(f"optim.lr must be positive, got {cfg.lr}")
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ValueError(f"optim.betas must be two values in [0, 1), got {cfg.betas}")
    if not cfg.eps > 0:
        raise ValueError(f"optim.eps must be positive, got {cfg.eps}")
    if cfg.weight_decay < 0:
        raise ValueError(f"optim.weight_decay must be >= 0, got {cfg.weight_decay}")
    if cfg.schedule not in ("constant", "warmup_cosine"):
        raise ValueError(f"optim.schedule must be 'constant' or 'warmup_cosine', got {cfg.schedule!r}")
    if cfg.schedule == "warmup_cosine":
        if not 0 <= cfg.min_lr <= cfg.lr:
            raise ValueError(f"optim.min_lr must be in [0, lr={cfg.lr}], got {cfg.min_lr}")
        if cfg.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {cfg.warmup_steps}")
        if not cfg.warmup_steps < cfg.decay_steps:
            raise ValueError(
                f"optim.decay_steps ({cfg.decay_steps}) must exceed optim.warmup_steps "
                f"({cfg.warmup_steps})"
            )


def _no_decay_ids(module: nn.Module) -> set[int]:
    """Ids of the embedding weights of ``module`` (nn.Embedding and subclasses)."""
    return {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``module`` into a decay and a no-decay group.

    No decay for biases, every 1-D parameter (RMSNorm/LayerNorm/GroupNorm weights, …) and
    embedding weights; decay for everything else. Frozen parameters (``requires_grad=False``)
    are left out, parameters shared between modules (tied weights) appear once (under the name
    they are first met), and empty groups are dropped. Each group carries ``name`` (``decay`` /
    ``no_decay``), ``weight_decay`` and ``param_names``.
    """
    embeddings = _no_decay_ids(module)
    groups: dict[str, dict[str, Any]] = {
        "decay": {"name": "decay", "params": [], "param_names": [], "weight_decay": weight_decay},
        "no_decay": {"name": "no_decay", "params": [], "param_names": [], "weight_decay": 0.0},
    }
    for name, p in module.named_parameters():  # remove_duplicate=True: tied weights once
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or name.endswith("bias") or id(p) in embeddings
        group = groups["no_decay" if skip else "decay"]
        group["params"].append(p)
        group["param_names"].append(name)
    return [g for g in groups.values() if g["params"]]


def build_optimizer(module: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of ``module`` with the hyper-parameters of ``cfg``."""
    validate(cfg)
    groups = param_groups(module, cfg.weight_decay)
    if not groups:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )


def lr_lambda(cfg: OptimConfig) -> Callable[[int], float]:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based, as LambdaLR counts).

    ``constant``: 1.0. ``warmup_cosine``: ``(step + 1) / warmup_steps`` for
    ``step < warmup_steps`` (so the first step already trains, at ``lr / warmup_steps``, and step
    ``warmup_steps - 1`` reaches the peak 1.0); then a half cosine from 1.0 at ``warmup_steps`` to
    ``min_lr / lr`` at ``decay_steps``; ``min_lr / lr`` after that.
    """
    validate(cfg)
    if cfg.schedule == "constant":
        return lambda step: 1.0
    warmup, decay, floor = cfg.warmup_steps, cfg.decay_steps, cfg.min_lr / cfg.lr

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step >= decay:
            return floor
        progress = (step - warmup) / (decay - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> dict[str, Any]:
    """The Lightning ``lr_scheduler`` config: a per-step LambdaLR of :func:`lr_lambda`."""
    return {
        "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg)),
        "interval": "step",
        "frequency": 1,
        "name": "lr",
    }
