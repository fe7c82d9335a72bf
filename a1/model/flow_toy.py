"""Small flow-matching experiments around a1's own sampler (notebooks/03_flow_matching, tests).

`a1.model.flow` holds everything the policy uses — `sample_time` (τ = 1 − s, s ~ Beta(1.5, 1)),
`interpolate` (a^τ = (1 − τ)·ε + τ·a), `target_velocity` (a − ε) and `euler` (τ: 0 → 1 in K steps) —
but its only velocity field is the policy's action expert. This module adds what a toy needs
around those functions, and nothing else:

* `gaussian_ring`, `ring_centres` — a multi-modal 2-D target (a ring of Gaussian blobs);
* `VelocityMLP` — a tiny velocity field v_θ(x, τ) with the action head's time embedding;
* `flow_matching_loss` — the policy's L_act recipe for any velocity field;
* `train` — a plain AdamW loop over a loss closure (toy MLP or policy alike);
* `two_mode_batch` — one observation demonstrated twice, with opposite action chunks: the
  smallest robot data set whose action distribution is multi-modal.

Shapes follow `a1.model.flow`: points and chunks are (B, k, D) (a 2-D point is a chunk of k = 1
step of D = 2 dims), flow times τ are (B,).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a1.batch import Batch
from a1.model import flow
from a1.model.config import ActionConfig, PolicyConfig


def ring_centres(modes: int = 6, radius: float = 2.0) -> Tensor:
    """(modes, 2) float32 centres of `gaussian_ring`'s blobs, evenly on a circle, the first at (radius, 0)."""
    angle = 2 * math.pi * torch.arange(modes, dtype=torch.float32) / modes
    return radius * torch.stack([angle.cos(), angle.sin()], dim=-1)


def gaussian_ring(n: int, modes: int = 6, radius: float = 2.0, std: float = 0.15,
                  generator: torch.Generator | None = None) -> Tensor:
    """(n, 1, 2) float32 samples of an equal-weight mixture of ``modes`` isotropic Gaussians of
    standard deviation ``std`` centred at `ring_centres` (``modes``, ``radius``)."""
    which = torch.randint(modes, (n,), generator=generator)
    centres = ring_centres(modes, radius)[which]  # (n, 2)
    return (centres + std * torch.randn(n, 2, generator=generator))[:, None]


class VelocityMLP(nn.Module):
    """v_θ(x, τ): (B, k, D) points and (B,) times (any float dtype) → (B, k, D) float32 velocity.

    τ enters through `a1.model.flow.time_embedding` (sinusoids with geometric periods, as in the
    action head), concatenated to every point and mixed by ``layers`` SiLU layers of ``hidden``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, time_dim: int = 32,
                 periods: tuple[float, float] = (0.004, 4.0)) -> None:
        super().__init__()
        self.time_dim, self.periods = time_dim, periods
        sizes = [dim + time_dim] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, tau: Tensor) -> Tensor:
        t = flow.time_embedding(tau, self.time_dim, *self.periods)  # (B, time_dim) float32
        h = torch.cat([x.float(), t[:, None].expand(-1, x.shape[1], -1)], dim=-1)
        for layer in self.hidden:
            h = F.silu(layer(h))
        return self.out(h)


def flow_matching_loss(velocity: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                       time_beta: tuple[float, float] | None = None) -> Tensor:
    """Mean squared error between ``velocity(a^τ, τ)`` and the straight-path velocity a − ε for
    data ``x`` (B, k, D), fresh noise ε ~ N(0, I) and τ from `flow.sample_time` (the policy's L_act
    without its padding masks). Uses the global torch RNG."""
    noise = torch.randn_like(x)
    time_beta = tuple(ActionConfig().time_beta) if time_beta is None else time_beta  # a1's (1.5, 1)
    tau = flow.sample_time(x.shape[0], *time_beta, device=x.device)
    pred = velocity(flow.interpolate(x, noise, tau), tau)
    return ((pred - flow.target_velocity(x, noise)) ** 2).mean()


def train(loss: Callable[[], Tensor], parameters: Iterable[nn.Parameter], steps: int, lr: float = 1e-3,
          betas: tuple[float, float] = (0.9, 0.95)) -> list[float]:
    """Run ``steps`` AdamW steps on ``loss()`` (a closure drawing its own batch/noise/τ) over the
    ``parameters`` that require grad; return the loss of every step."""
    params = [p for p in parameters if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=0.0)
    history = []
    for _ in range(steps):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        history.append(value.item())
    return history


S = TypeVar("S")


def _repeat(struct: S, n: int) -> S:
    """Every tensor of a one-sample Batch/Observation repeated ``n`` times along the batch dim."""
    def rep(v):
        if isinstance(v, Tensor):
            return v.expand(n, *v.shape[1:]).clone()
        return _repeat(v, n) if dataclasses.is_dataclass(v) else v

    return dataclasses.replace(struct, **{f.name: rep(getattr(struct, f.name)) for f in dataclasses.fields(struct)})


def two_mode_batch(cfg: PolicyConfig, batch_size: int = 8, seed: int = 0) -> Batch:
    """``batch_size`` (even) copies of one `a1.testing.random_batch` sample: the first half
    demonstrates its action chunk a, the second half the mirrored chunk −a (say, passing an
    obstacle on the left or on the right). The mean demonstration, 0, matches neither."""
    if batch_size < 2 or batch_size % 2:
        raise ValueError(f"batch_size must be even and ≥ 2, got {batch_size}")
    from a1.testing import random_batch  # loads the tokenizer; keep it out of import time

    batch = _repeat(random_batch(cfg, 1, seed=seed), batch_size)
    sign = torch.ones(batch_size, 1, 1)
    sign[batch_size // 2:] = -1
    return dataclasses.replace(batch, actions=batch.actions * sign)
