"""Looking at visual foresight without the pretrained Cosmos weights (notebook 04, demos).

The generation expert predicts the Cosmos latent of frame t+m (paper §3.2); the pictures of that
prediction are only as good as the tokenizer's decoder. The real CI8x8 weights come from a local
file (``generation.tokenizer.weights``, ``$A1_COSMOS_CI8X8``); a tiny configuration with random
weights decodes any latent into noise. Two helpers make the tiny setting readable:

* `fit_tokenizer` fits the (normally frozen) tokenizer as an autoencoder on a few hundred frames
  of a world for a few hundred steps — a stand-in for the pretrained weights, never part of
  training a policy (there the tokenizer stays frozen);
* `hold_still_loss` is the foresight loss of the trivial prediction "frame t+m looks like frame
  t", the baseline a trained generation expert has to beat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from a1.batch import Batch
from a1.model.foresight import Foresight


def _pixels(foresight: Foresight, frames: Tensor) -> Tensor:
    """(N, 3, H, W) 0–255 frames → (N, 3, S, S) float in [−1, 1], as `Foresight.latents` feeds
    the encoder (S = ``generation.image_size``, bilinear without antialias)."""
    S = foresight.cfg.image_size
    x = frames.float().div(127.5).sub(1.0)
    if x.shape[-2:] != (S, S):
        x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=False, align_corners=False)
    return x


def fit_tokenizer(
    foresight: Foresight,
    frames: Tensor,
    steps: int,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
) -> list[float]:
    """Fit ``foresight.tokenizer`` (encoder + decoder) as an autoencoder on ``frames``, in place.

    A stand-in for pretrained Cosmos weights at tiny scale, so that decoded latents look like the
    world they came from; the tokenizer is frozen again afterwards (no gradient, eval mode), exactly
    as before the call, so a policy trained next treats it as the paper does (fixed).

    Args:
        foresight: the policy's foresight module (``policy.foresight``); its ``cfg.image_size``
            sets the resolution, as in `Foresight.latents`.
        frames: (N, 3, H, W) uint8 (or float32 in 0–255) RGB frames, N ≥ 1.
        steps: optimizer steps (Adam); each draws ``batch_size`` frames at random.
        batch_size: frames per step.
        lr: Adam learning rate.
        seed: seeds the frame draws (the weights keep their current values as the start).

    Returns:
        Per step, the reconstruction MSE in [−1, 1] pixel units (the batch before the update).
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (N, 3, H, W) with N >= 1, got {tuple(frames.shape)}")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"need steps >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    tok = foresight.tokenizer
    params = list(tok.parameters())
    g = torch.Generator().manual_seed(seed)
    history: list[float] = []
    tok.requires_grad_(True)
    try:
        optimizer = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                x = _pixels(foresight, frames[torch.randint(len(frames), (batch_size,), generator=g)])
                x = x.to(tok.quant_conv.weight.dtype)
                y = tok.decoder(tok.post_quant_conv(tok.quant_conv(tok.encoder(x))))
                loss = F.mse_loss(y.float(), x.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append(loss.item())
    finally:
        tok.requires_grad_(False)
        for p in params:
            p.grad = None
    return history


@torch.no_grad()
def round_trip(foresight: Foresight, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Encode and decode frames with the tokenizer: the best a foresight prediction can look.

    Args:
        frames: (..., 3, H, W) uint8 or float32 (0–255).
    Returns:
        ``(latents, decoded)``: (..., C, h, w) latents (C = ``latent_channels``) and
        (..., 3, S, S) uint8 decoded frames (S = ``generation.image_size``).
    """
    lead = frames.shape[:-3]
    z = foresight.latents(frames)  # (..., C, h, w)
    decoded = foresight.decode(z.reshape(-1, 1, *z.shape[-3:]))  # (N, 1, 3, S, S)
    return z, decoded.reshape(*lead, *decoded.shape[-3:])


@torch.no_grad()
def hold_still_loss(foresight: Foresight, batch: Batch) -> tuple[Tensor, Tensor]:
    """The foresight loss L_gen of predicting "nothing moves": latent(t+m) := latent(t).

    Returns ``(loss, valid)``: (B,) reduced as the policy's L_gen (mean over latent entries, then
    over views) over the views whose frames t and t+m both exist, and (B,) bool: the sample has such
    a view (average ``loss`` over these only — a sample without one has nothing to compare).
    """
    now = foresight.latents(batch.observation.images[:, :, -1]).float()  # (B, V, C, h, w)
    future = foresight.latents(batch.future_images).float()
    per_view = ((now - future) ** 2).mean((2, 3, 4))  # (B, V)
    both = batch.future_mask & batch.observation.image_mask[:, :, -1]
    w = both.float()
    return (per_view * w).sum(1) / w.sum(1).clamp(min=1.0), both.any(1)
