"""Flow matching pieces: path, target, time sampling, Euler integration, time embedding."""

import pytest
import torch

from a1.model import flow


def test_path_endpoints_and_target():
    a, eps = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    assert torch.allclose(flow.interpolate(a, eps, torch.zeros(2)), eps)  # τ = 0: noise
    assert torch.allclose(flow.interpolate(a, eps, torch.ones(2)), a)  # τ = 1: actions
    mid = flow.interpolate(a, eps, torch.full((2,), 0.25))
    assert torch.allclose(mid, 0.75 * eps + 0.25 * a)
    assert torch.allclose(flow.target_velocity(a, eps), a - eps)


def test_euler_with_the_true_velocity_lands_on_the_actions():
    a, eps = torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    out = flow.euler(lambda x, tau: flow.target_velocity(a, eps), eps, num_steps=10)
    assert torch.allclose(out, a, atol=1e-6)
    seen = []
    flow.euler(lambda x, tau: seen.append(tau[0].item()) or torch.zeros_like(x), eps, num_steps=4)
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75])
    with pytest.raises(ValueError):
        flow.euler(lambda x, tau: x, eps, num_steps=0)


def test_euler_clock_counts_the_noise_level_down_in_float32():
    """The official sampler's times are 1, 0.9, 0.79999995, … (float32 sums of −0.1): a1 hands the
    model τ = 1 − s for exactly those s, in float64, so no rounding of k/K sneaks in."""
    seen = []
    flow.euler(lambda x, tau: seen.append(tau.clone()) or torch.zeros_like(x), torch.zeros(2, 3, 1), num_steps=10)
    official, t, dt = [], torch.tensor(1.0), torch.tensor(-0.1)
    while t >= -dt / 2:
        official.append(t.clone())
        t = t + dt
    assert len(seen) == len(official) == 10
    for tau, t in zip(seen, official):
        assert tau.dtype == torch.float64 and tau.shape == (2,)
        assert (1.0 - tau == t.double()).all()
    assert official[2].item() != 0.8  # the float32 clock really differs from k/K


def test_time_sampling_matches_noise_level_beta():
    torch.manual_seed(0)
    tau = flow.sample_time(200_000, 1.5, 1.0)
    assert tau.min() >= 0 and tau.max() <= 1
    # noise level s = 1 − τ ~ Beta(1.5, 1): E[s] = 0.6, P(s ≤ 0.5) = 0.5^1.5
    assert (1 - tau).mean().item() == pytest.approx(0.6, abs=0.005)
    assert ((1 - tau) <= 0.5).float().mean().item() == pytest.approx(0.5**1.5, abs=0.005)


def test_time_embedding():
    emb = flow.time_embedding(torch.tensor([0.0, 0.5, 1.0]), 8, 4e-3, 4.0)
    assert emb.shape == (3, 8)
    assert torch.allclose(emb[0, :4], torch.zeros(4)) and torch.allclose(emb[0, 4:], torch.ones(4))
    assert not torch.allclose(emb[1], emb[2])
    with pytest.raises(ValueError):
        flow.time_embedding(torch.zeros(1), 7, 4e-3, 4.0)
