"""The flow-matching toy pieces (a1.model.flow_toy) around a1.model.flow's sampler."""

import pytest
import torch

from a1.model import flow
from a1.model.flow_toy import (
    VelocityMLP,
    flow_matching_loss,
    gaussian_ring,
    ring_centres,
    train,
    two_mode_batch,
)
from tests.conftest import tiny_qwen


def test_gaussian_ring_samples_its_centres():
    centres = ring_centres(4, radius=3.0)
    assert centres.shape == (4, 2)
    assert torch.allclose(centres[0], torch.tensor([3.0, 0.0]))
    assert torch.allclose(centres.norm(dim=1), torch.full((4,), 3.0))
    x = gaussian_ring(4000, modes=4, radius=3.0, std=0.1, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 1, 2) and x.dtype == torch.float32
    nearest = torch.cdist(x[:, 0], centres).min(1)
    assert (nearest.values < 0.5).all()
    counts = torch.bincount(nearest.indices, minlength=4)
    assert (counts > 800).all()  # equal weights: ~1000 each
    assert torch.allclose(x.mean((0, 1)), torch.zeros(2), atol=0.15)


def test_velocity_mlp_shapes_and_euler():
    torch.manual_seed(0)
    v = VelocityMLP(dim=3, hidden=16, layers=2, time_dim=8)
    x = torch.randn(5, 4, 3)
    out = v(x, torch.rand(5, dtype=torch.float64))  # flow.euler hands τ over in float64
    assert out.shape == (5, 4, 3) and out.dtype == torch.float32
    with torch.no_grad():
        assert flow.euler(v, x, 3).shape == (5, 4, 3)


def test_flow_matching_loss_is_zero_for_the_true_field_of_one_point():
    """For a single data point c the straight-path velocity is (c − a^τ)/(1 − τ) = c − ε exactly."""
    torch.manual_seed(0)
    c = torch.tensor([1.5, -0.5]).expand(256, 1, 2)

    def true(a, tau):
        return (c - a) / (1 - tau.float()).clamp(min=1e-4).view(-1, 1, 1)

    def zero(a, tau):
        return torch.zeros_like(a)

    assert flow_matching_loss(true, c).item() < 1e-3
    expected = ((c[0] ** 2).sum().item() + 2) / 2  # E‖c − ε‖² / D
    assert flow_matching_loss(zero, c).item() == pytest.approx(expected, rel=0.2)


def test_train_lowers_the_toy_loss_and_skips_frozen_parameters():
    torch.manual_seed(0)
    v = VelocityMLP(hidden=32, layers=2, time_dim=8)
    frozen = v.out.bias.detach().clone()
    v.out.bias.requires_grad_(False)
    losses = train(lambda: flow_matching_loss(v, gaussian_ring(128, modes=2)), v.parameters(), 150, lr=3e-3)
    assert len(losses) == 150
    assert sum(losses[-30:]) / 30 < 0.8 * sum(losses[:30]) / 30
    assert torch.equal(v.out.bias, frozen)


def test_two_mode_batch_repeats_one_observation_with_opposite_actions():
    cfg = tiny_qwen()
    b = two_mode_batch(cfg, 4, seed=1)
    b.validate(len(cfg.views), cfg.action.chunk_size, cfg.action.max_dim)
    obs = b.observation
    for name in ("images", "image_mask", "tokens", "token_mask", "state", "state_mask"):
        t = getattr(obs, name)
        assert t.shape[0] == 4 and all(torch.equal(t[0], t[i]) for i in range(4)), name
    assert torch.equal(b.actions[0], b.actions[1]) and torch.equal(b.actions[2], -b.actions[0])
    assert b.actions[0].abs().sum() > 0
    assert torch.equal(b.actions[3], b.actions[2])
    b.actions[0, 0, 0] += 1  # the copies are independent tensors
    assert not torch.equal(b.actions[0], b.actions[1])
    with pytest.raises(ValueError):
        two_mode_batch(cfg, 3)
