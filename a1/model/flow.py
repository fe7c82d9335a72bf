"""Flow matching for action chunks (paper §3.3, Eq. 2–3).

Time convention — the paper's: τ = 0 is pure noise, τ = 1 is the action chunk.

    a^τ = (1 − τ)·ε + τ·a,   target velocity u = a − ε,

and inference integrates da/dτ = v_θ from τ = 0 to 1 with K Euler steps of Δτ = 1/K.

Training times. The paper writes τ ~ Beta(1.5, 1). Its public code and pi0 (whose recipe it
follows) use the mirrored time t = 1 − τ (x_t = t·ε + (1 − t)·a, target ε − a) and draw
*t* ~ Beta(1.5, 1), i.e. they put more mass on the noisier end of the path; read literally in the
paper's convention the same Beta would favour the clean end instead. We draw the noise level
s = 1 − τ ~ Beta(α, β) with (α, β) = ``ActionConfig.time_beta`` = (1.5, 1) — the distribution the
public implementations train with. (Measured on the tiny config: overfitting one batch for 300
steps cuts L_act by ~86% this way versus ~75% with τ itself ~ Beta(1.5, 1).)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def sample_time(batch: int, alpha: float, beta: float, device: torch.device | None = None) -> Tensor:
    """(B,) flow times τ = 1 − s with noise level s ~ Beta(α, β), float32 (see module doc)."""
    dist = torch.distributions.Beta(
        torch.tensor(alpha, device=device, dtype=torch.float32),
        torch.tensor(beta, device=device, dtype=torch.float32),
    )
    return 1.0 - dist.sample((batch,))


def interpolate(actions: Tensor, noise: Tensor, tau: Tensor) -> Tensor:
    """a^τ = (1 − τ)·ε + τ·a for (B, k, D) actions/noise and (B,) τ."""
    t = tau.view(-1, 1, 1).to(actions.dtype)
    return (1 - t) * noise + t * actions


def target_velocity(actions: Tensor, noise: Tensor) -> Tensor:
    """u = a − ε, the velocity of the straight path from noise to actions."""
    return actions - noise


def euler(velocity: Callable[[Tensor, Tensor], Tensor], noise: Tensor, num_steps: int) -> Tensor:
    """Integrate from τ = 0 (``noise``, (B, k, D)) to τ = 1 with ``num_steps`` Euler steps.

    ``velocity(a_tau, tau)`` gets the current (B, k, D) chunk and (B,) times.
    """
    return euler_steps(lambda a, tau, dt: a + dt * velocity(a, tau), noise, num_steps)


def euler_steps(step: Callable[[Tensor, Tensor, Tensor], Tensor], noise: Tensor, num_steps: int) -> Tensor:
    """Like :func:`euler`, but ``step(a_tau, tau, dt)`` returns the next chunk a_τ + dt·v itself
    (how the compiled inference step is called: τ and dt are tensors, so one graph serves every step)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be ≥ 1, got {num_steps}")
    a, dt = noise, torch.tensor(1.0 / num_steps, device=noise.device, dtype=torch.float32)
    for i in range(num_steps):
        tau = torch.full((a.shape[0],), i / num_steps, device=a.device, dtype=torch.float32)
        a = step(a, tau, dt)
    return a


def time_embedding(tau: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """(B,) τ → (B, dim) sine/cosine embedding with geometrically spaced periods."""
    if dim % 2:
        raise ValueError(f"time embedding dim must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=tau.device, dtype=torch.float64)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None] * tau.double()[:, None]  # (B, dim/2)
    return torch.cat([angle.sin(), angle.cos()], dim=-1).float()
