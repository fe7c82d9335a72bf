"""`a1.model.foresight_preview`: the stand-in tokenizer fit, round trips and the hold-still baseline."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from a1.model.foresight import Foresight
from a1.model.foresight_preview import fit_tokenizer, hold_still_loss, round_trip
from a1.testing import random_batch
from tests.conftest import tiny_qwen


@pytest.fixture(scope="module")
def cfg():
    return tiny_qwen()


def small_foresight(cfg, size: int = 16) -> Foresight:
    """The tiny config's foresight path at ``size``² (2×2 latents at 16²): fast to fit."""
    torch.manual_seed(0)
    return Foresight(dataclasses.replace(cfg.generation, image_size=size, token_grid=size // 8))


def test_fit_tokenizer_learns_and_refreezes(cfg):
    f = small_foresight(cfg)
    g = torch.Generator().manual_seed(1)
    frames = (torch.rand(4, 3, 4, 4, generator=g) * 255).round().to(torch.uint8)
    frames = frames.repeat_interleave(4, 2).repeat_interleave(4, 3)  # (4, 3, 16, 16) blocky frames
    before = [p.detach().clone() for p in f.tokenizer.parameters()]
    history = fit_tokenizer(f, frames, steps=15, batch_size=4, lr=3e-3)
    assert len(history) == 15
    assert sum(history[-5:]) / 5 < 0.5 * history[0], history
    params = list(f.tokenizer.parameters())
    assert all(not p.requires_grad and p.grad is None for p in params)
    assert not f.tokenizer.training
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


def test_fit_tokenizer_is_seeded_and_checks_inputs(cfg):
    frames = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    runs = [fit_tokenizer(small_foresight(cfg), frames, steps=3, seed=5) for _ in range(2)]
    assert runs[0] == runs[1]
    assert fit_tokenizer(small_foresight(cfg), frames, steps=0) == []
    with pytest.raises(ValueError, match="frames"):
        fit_tokenizer(small_foresight(cfg), frames[:, :2], steps=1)
    with pytest.raises(ValueError, match="steps"):
        fit_tokenizer(small_foresight(cfg), frames, steps=-1)


def test_round_trip_shapes_and_values(cfg):
    f = small_foresight(cfg)
    frames = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)  # (B, V, 3, H, W)
    z, decoded = round_trip(f, frames)
    assert z.shape == (2, 3, 16, 2, 2)
    assert decoded.shape == (2, 3, 3, 16, 16) and decoded.dtype == torch.uint8
    torch.testing.assert_close(decoded, f.decode(f.latents(frames)), rtol=0, atol=1)


def test_hold_still_loss(cfg):
    torch.manual_seed(0)
    f = Foresight(cfg.generation)
    batch = random_batch(cfg, 3)
    now = batch.observation.images[:, :, -1]
    loss, valid = hold_still_loss(f, batch)
    assert valid.all()
    z_now, z_future = f.latents(now), f.latents(batch.future_images)
    want = ((z_now - z_future) ** 2).mean((2, 3, 4)).mean(1)
    torch.testing.assert_close(loss, want)
    batch.future_images = now.clone()  # nothing moves: the baseline is exact
    assert torch.allclose(hold_still_loss(f, batch)[0], torch.zeros(3), atol=1e-6)
    batch.future_mask[0] = False  # no future frame: nothing to predict
    batch.observation.image_mask[1, 0, -1] = False  # view 0 of sample 1 has no frame t
    batch.future_images = torch.zeros_like(now)
    loss, valid = hold_still_loss(f, batch)
    assert loss[0] == 0 and valid.tolist() == [False, True, True]
    per_view = ((z_now[1] - f.latents(batch.future_images[1])) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(loss[1], per_view[1:].mean())
