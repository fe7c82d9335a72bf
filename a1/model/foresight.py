"""The generation expert's data path: visual foresight (paper §3.2, Fig. 3).

Input tokenisation: every view at frames t−m and t is resized to ``image_size``² (bilinear, as
the official code) and encoded by the frozen Cosmos CI8x8 tokenizer into a (16, 32, 32) latent.
Token compression: a 1×1 conv (16 → hidden) then a k×k, stride-k conv (k = 32 / 4 = 8) gives
4×4 = 16 tokens per image, so 3 views × 2 frames → 96 tokens. Parallel decoding: the expert's 96 outputs are averaged over
the two timestamps (48 tokens), a k×k stride-k transposed conv restores the 32×32 grid,
followed by LayerNorm and Linear(hidden → 16): the predicted latent of frame t+m, trained with
MSE against the stop-gradient Cosmos latent of the real frame t+m.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a1.model.config import GenerationConfig
from a1.model.cosmos import CosmosTokenizer


class Foresight(nn.Module):
    """Cosmos latents ↔ generation-expert tokens."""

    def __init__(self, cfg: GenerationConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = CosmosTokenizer.from_config(cfg.tokenizer)
        tok = cfg.tokenizer
        if cfg.image_size % tok.spatial_compression:
            raise ValueError(
                f"generation.image_size={cfg.image_size} must be a multiple of the tokenizer's "
                f"spatial compression {tok.spatial_compression}"
            )
        self.latent_size = cfg.image_size // tok.spatial_compression
        if self.latent_size % cfg.token_grid:
            raise ValueError(
                f"latent grid {self.latent_size} must be a multiple of generation.token_grid={cfg.token_grid}"
            )
        k = self.latent_size // cfg.token_grid
        hidden, z = cfg.expert.hidden_size, tok.latent_channels
        self.proj_in = nn.Conv2d(z, hidden, kernel_size=1)
        self.compress = nn.Conv2d(hidden, hidden, kernel_size=k, stride=k)
        self.expand = nn.ConvTranspose2d(hidden, hidden, kernel_size=k, stride=k)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, z)

    @property
    def tokens_per_image(self) -> int:
        return self.cfg.token_grid**2

    def num_tokens(self, num_views: int) -> int:
        """Generation-block length: views × frames × tokens per image."""
        return num_views * self.cfg.num_frames * self.tokens_per_image

    @torch.no_grad()
    def latents(self, images: Tensor) -> Tensor:
        """(..., 3, H, W) uint8 or float32 (0–255) → (..., 16, h, w) Cosmos latents, in the tokenizer's
        dtype (frozen, no gradient)."""
        lead = images.shape[:-3]
        S = self.cfg.image_size
        x = images.flatten(0, -4).float().div(127.5).sub(1.0)  # [-1, 1]
        if x.shape[-2:] != (S, S):  # the official filter: bilinear, no antialias (equal when enlarging)
            x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=False, align_corners=False)
        z = self.tokenizer.encode(x)  # in the tokenizer's own dtype (it may differ from the policy's)
        return z.view(*lead, *z.shape[1:])

    def tokens(self, latents: Tensor) -> Tensor:
        """(B, V, T, 16, h, w) latents → (B, V·T·g², hidden) generation tokens."""
        B, V, T = latents.shape[:3]
        x = self.compress(self.proj_in(latents.flatten(0, 2).to(self.proj_in.weight.dtype)))  # (BVT, H, g, g)
        return x.flatten(2).transpose(1, 2).reshape(B, V * T * self.tokens_per_image, -1)

    def predict(self, out: Tensor, frame_mask: Tensor) -> Tensor:
        """Generation-expert outputs → predicted latent of t+m.

        Args:
            out: (B, V·T·g², hidden) expert outputs.
            frame_mask: (B, V, T) bool, input frames that exist (the mean over time uses these;
                a view with no valid frame falls back to the plain mean).
        Returns:
            (B, V, 16, h, w).
        """
        B, V, T = frame_mask.shape
        g = self.cfg.token_grid
        x = out.view(B, V, T, g * g, -1)
        w = frame_mask.to(x.dtype)
        w = torch.where(w.sum(2, keepdim=True) > 0, w, torch.ones_like(w))
        x = (x * w[..., None, None]).sum(2) / w.sum(2)[..., None, None]  # (B, V, g², H)
        x = x.transpose(-1, -2).reshape(B * V, -1, g, g)
        x = self.expand(x).flatten(2).transpose(1, 2)  # (BV, h·w, H)
        z = self.head(self.norm(x))  # (BV, h·w, 16)
        return z.transpose(1, 2).reshape(B, V, -1, self.latent_size, self.latent_size).float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """(B, V, 16, h, w) latents → (B, V, 3, H, W) uint8 images (for visualisation)."""
        B, V = latents.shape[:2]
        x = self.tokenizer.decode(latents.flatten(0, 1))
        x = x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        return x.view(B, V, *x.shape[1:])
