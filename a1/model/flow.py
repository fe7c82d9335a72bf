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
    (how the compiled inference step is called: τ and dt are tensors, so one graph serves every step).

    The clock is the noise level s = 1 − τ, counted down from 1 by dt in float32 (1, 0.9,
    0.79999995, …) exactly as the public pi0 / InternVLA-A1 samplers count their time, and τ = 1 − s
    is handed over in float64 (the time embedding is computed in float64): an imported official
    policy then sees bit-for-bit the times it was trained to see (exact k/K moves its actions by
    ~5e-5)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be ≥ 1, got {num_steps}")
    a, dt = noise, torch.tensor(1.0 / num_steps, device=noise.device, dtype=torch.float32)
    level = torch.ones(a.shape[0], device=a.device, dtype=torch.float32)
    for _ in range(num_steps):
        a = step(a, 1.0 - level.double(), dt)
        level = level - dt
    return a


def time_embedding(tau: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """(B,) τ → (B, dim) sine/cosine embedding with geometrically spaced periods."""
    angle = _frequencies(dim, min_period, max_period, tau.device)[None] * tau.double()[:, None]  # (B, dim/2)
    return torch.cat([angle.sin(), angle.cos()], dim=-1).float()


def _frequencies(dim: int, min_period: float, max_period: float, device=None) -> Tensor:
    """(dim/2,) float64 angular frequencies 2π/period, periods geometric from min to max."""
    if dim % 2:
        raise ValueError(f"time embedding dim must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=device, dtype=torch.float64)
    return 2 * math.pi / (min_period * (max_period / min_period) ** fraction)


def fold_mirrored_time(weight: Tensor, min_period: float, max_period: float) -> Tensor:
    """Re-express a Linear's weight columns that read ``time_embedding(t)`` of the mirrored time
    t = 1 − τ (pi0 / the official InternVLA-A1 code: t = 1 is noise) so that they read
    ``time_embedding(τ)`` instead and give the same output.

    Per frequency ω: sin(ω(1 − τ)) = sin ω·cos ωτ − cos ω·sin ωτ and
    cos(ω(1 − τ)) = cos ω·cos ωτ + sin ω·sin ωτ, i.e. E(1 − τ) = M·E(τ) with a fixed block matrix
    M, so W·E(1 − τ) = (W·M)·E(τ). ``weight``: (out, dim) columns in the embedding's order
    [sin …, cos …]; returns (out, dim) in ``weight``'s dtype (computed in float64).
    """
    dim = weight.shape[-1]
    omega = _frequencies(dim, min_period, max_period)
    half = dim // 2
    sin_w, cos_w = omega.sin(), omega.cos()
    m = torch.zeros(dim, dim, dtype=torch.float64)
    idx = torch.arange(half)
    m[idx, idx], m[idx, half + idx] = -cos_w, sin_w  # sin(ω(1 − τ)) from (sin ωτ, cos ωτ)
    m[half + idx, idx], m[half + idx, half + idx] = sin_w, cos_w  # cos(ω(1 − τ))
    return (weight.double() @ m).to(weight.dtype)
