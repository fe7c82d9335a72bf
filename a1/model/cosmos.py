"""Frozen Cosmos continuous image tokenizer (CI8x8 by default), written from the architecture.

Shapes for the default CI8x8 config and a (B, 3, 256, 256) image in [-1, 1]:

    Haar patcher (2 levels)      (B, 3, 256, 256) -> (B, 48, 64, 64)
    encoder.conv_in              -> (B, 128, 64, 64)
    encoder.down.0 (+downsample) -> (B, 256, 32, 32)
    encoder.down.1, down.2       -> (B, 512, 32, 32)
    encoder.mid, norm/conv_out   -> (B, 16, 32, 32)
    quant_conv (1x1)             -> (B, 16, 32, 32)   = the latent
    post_quant_conv, decoder     mirrors the encoder back to (B, 48, 64, 64)
    inverse Haar                 -> (B, 3, 256, 256)

Module names equal the keys of the released TorchScript state_dicts, so converted weights
(see `a1.model.cosmos_convert`) load strictly. The released configuration has no attention
inside the resolution levels (its attention resolution is never reached), only in `mid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATCHER_BUFFERS = ("wavelets", "_arange")
"""Non-persistent Haar buffers that the released `.jit` state_dicts nevertheless carry."""


@dataclass
class CosmosConfig:
    """Architecture of the Cosmos continuous image tokenizer (CI8x8 by default)."""

    channels: int = 128
    """Base channel count of the encoder/decoder (multiplied per level by `channels_mult`)."""
    channels_mult: list[int] = field(default_factory=lambda: [2, 4, 4])
    """Channel multiplier of each resolution level; its length is the number of levels."""
    num_res_blocks: int = 2
    """ResNet blocks per encoder level (the decoder uses one more per level)."""
    z_channels: int = 16
    """Channels at the encoder output / decoder input (before quant_conv, after post_quant_conv)."""
    latent_channels: int = 16
    """Channels of the latent returned by `encode` and consumed by `decode`."""
    patch_size: int = 4
    """Haar wavelet patch size (a power of 2: log2(patch_size) 2x2 Haar levels)."""
    spatial_compression: int = 8
    """Total down-sampling factor image -> latent: patch_size * 2**(strided downsamples)."""
    weights: str | None = None
    """Path to a safetensors file written by `a1.model.cosmos_convert`; None = random init."""

    def num_downsamples(self) -> int:
        """Number of stride-2 stages after the patcher; raises ValueError if inconsistent."""
        for name in ("patch_size", "spatial_compression"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"CosmosConfig.{name} must be a power of 2, got {value}")
        steps = int(math.log2(self.spatial_compression)) - int(math.log2(self.patch_size))
        if not 0 <= steps <= len(self.channels_mult):
            raise ValueError(
                f"CosmosConfig.spatial_compression={self.spatial_compression} needs {steps} "
                f"downsamples after patch_size={self.patch_size}, but channels_mult="
                f"{self.channels_mult} allows 0..{len(self.channels_mult)}")
        return steps

    def validate(self) -> None:
        """Raise ValueError naming the offending field when the architecture is impossible."""
        if not self.channels_mult:
            raise ValueError("CosmosConfig.channels_mult must not be empty")
        for mult in [1, *self.channels_mult]:
            if mult < 1 or (self.channels * mult) % 32:
                raise ValueError(
                    f"CosmosConfig.channels={self.channels} x channels_mult entry {mult} must be "
                    "a positive multiple of 32 (GroupNorm uses 32 groups)")
        for name in ("num_res_blocks", "z_channels", "latent_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"CosmosConfig.{name} must be >= 1, got {getattr(self, name)}")
        self.num_downsamples()


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class HaarPatcher(nn.Module):
    """Multi-level 2x2 Haar transform: (B, C, H, W) -> (B, C*p*p, H/p, W/p), p = patch_size.

    Each level maps channel c to channels (band*C + c) for bands (LL, LH, HL, HH), where the
    first letter is the width filter and the second the height filter, and divides by 2.
    """

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.levels = int(math.log2(patch_size))
        self.register_buffer("wavelets", torch.full((2,), 0.5**0.5), persistent=False)
        self.register_buffer("_arange", torch.arange(2), persistent=False)

    def _taps(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        low = self.wavelets.flip(0).to(dtype)  # (2,)
        high = (self.wavelets * (-1) ** self._arange).to(dtype)  # (2,)
        return low, high

    def _level(self, x: Tensor) -> Tensor:
        low, high = self._taps(x.dtype)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2)  # (B, C, h, row, w, col)
        even, odd = x[..., 0], x[..., 1]  # (B, C, h, 2, w) each
        xl, xh = low[0] * even + low[1] * odd, high[0] * even + high[1] * odd
        bands = []
        for y in (xl, xh):
            top, bottom = y[:, :, :, 0], y[:, :, :, 1]  # (B, C, h, w)
            bands += [low[0] * top + low[1] * bottom, high[0] * top + high[1] * bottom]
        return torch.cat(bands, dim=1) / 2  # (B, 4C, h, w)

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.levels):
            x = self._level(x)
        return x


class HaarUnPatcher(HaarPatcher):
    """Exact inverse of `HaarPatcher`: (B, C*p*p, h, w) -> (B, C, h*p, w*p)."""

    def _level(self, x: Tensor) -> Tensor:
        low, high = self._taps(x.dtype)
        xll, xlh, xhl, xhh = torch.chunk(x, 4, dim=1)  # (B, C, h, w) each
        # Undo the height filter: rows (top, bottom) of the width-low and width-high parts.
        yl = torch.stack([low[0] * xll + high[0] * xlh, low[1] * xll + high[1] * xlh], dim=3)
        yh = torch.stack([low[0] * xhl + high[0] * xhh, low[1] * xhl + high[1] * xhh], dim=3)
        # Undo the width filter: columns (left, right).
        y = torch.stack([low[0] * yl + high[0] * yh, low[1] * yl + high[1] * yh], dim=-1)
        b, c, h, _, w, _ = y.shape  # (B, C, h, row, w, col)
        return y.reshape(b, c, 2 * h, 2 * w) * 2


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice plus a (1x1 when channels change) shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, 1)
                             if in_channels != out_channels else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C), scale C**-0.5
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero padding right/bottom by one: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 repeat then 3x3 conv: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def _mid(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels)
    return mid


def _level(blocks: list[ResnetBlock], resample: nn.Module | None, name: str) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    level.attn = nn.ModuleList()  # empty in the released configs; kept for key parity
    if resample is not None:
        setattr(level, name, resample)
    return level


class Encoder(nn.Module):
    """(B, 3, H, W) -> (B, z_channels, H/s, W/s), s = spatial_compression."""

    def __init__(self, cfg: CosmosConfig) -> None:
        super().__init__()
        self.patcher = HaarPatcher(cfg.patch_size)
        steps = cfg.num_downsamples()
        self.conv_in = nn.Conv2d(3 * cfg.patch_size**2, cfg.channels, 3, padding=1)
        self.down = nn.ModuleList()
        ch = cfg.channels
        for i, mult in enumerate(cfg.channels_mult):
            out = cfg.channels * mult
            blocks = [ResnetBlock(ch if j == 0 else out, out) for j in range(cfg.num_res_blocks)]
            ch = out
            self.down.append(_level(blocks, Downsample(ch) if i < steps else None, "downsample"))
        self.mid = _mid(ch)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(self.patcher(x))  # (B, channels, H/p, W/p)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z, H/s, W/s)


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, 3, h*s, w*s). `up[i]` mirrors `encoder.down[i]`."""

    def __init__(self, cfg: CosmosConfig) -> None:
        super().__init__()
        steps, levels = cfg.num_downsamples(), len(cfg.channels_mult)
        ch = cfg.channels * cfg.channels_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, ch, 3, padding=1)
        self.mid = _mid(ch)
        ups: list[nn.Module] = []
        for i in reversed(range(levels)):
            out = cfg.channels * cfg.channels_mult[i]
            blocks = [ResnetBlock(ch if j == 0 else out, out) for j in range(cfg.num_res_blocks + 1)]
            ch = out
            ups.insert(0, _level(blocks, Upsample(ch) if i >= levels - steps else None, "upsample"))
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, 3 * cfg.patch_size**2, 3, padding=1)
        self.unpatcher = HaarUnPatcher(cfg.patch_size)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)  # (B, C_top, h, w)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (B, 3*p*p, H/p, W/p)
        return self.unpatcher(h)  # (B, 3, H, W)


def drop_patcher_buffers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove the Haar (un)patcher buffers that `.jit` state_dicts carry but we do not persist."""
    return {k: v for k, v in state.items()
            if not (k.rsplit(".", 1)[-1] in PATCHER_BUFFERS and "patcher." in k)}


def check_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise ValueError naming `source` and every missing/unexpected key or shape mismatch."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {expected[k]}"
                  for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != expected[k]]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"Cosmos weights {source} do not match the architecture: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {mismatched}")


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """Read a safetensors file, with errors that name the file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Cosmos weights file not found: {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several error types for corrupt files
        raise ValueError(f"Cannot read Cosmos weights file {path}: {err}") from err


class CosmosTokenizer(nn.Module):
    """Frozen image autoencoder: `encode` images to latents and `decode` latents to images.

    Always in eval mode with no trainable parameters; both directions run without autograd.
    """

    def __init__(self, config: CosmosConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.z_channels, 1)
        self.decoder = Decoder(config)
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_config(cls, config: CosmosConfig) -> CosmosTokenizer:
        """Build the module and, when `config.weights` is set, load it strictly."""
        model = cls(config)
        if config.weights is not None:
            state = drop_patcher_buffers(load_weights(config.weights))
            check_state_dict(model, state, str(config.weights))
            model.load_state_dict(state, strict=True)
        return model

    def train(self, mode: bool = True) -> CosmosTokenizer:
        """Ignore `mode`: the tokenizer is frozen and stays in eval mode."""
        return super().train(False)

    def _check(self, x: Tensor, channels: int, factor: int, what: str) -> None:
        if x.ndim != 4 or x.shape[1] != channels or x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(
                f"CosmosTokenizer.{what} expects (B, {channels}, H, W) with H and W divisible "
                f"by {factor}, got shape {tuple(x.shape)}")

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> latents (B, latent_channels, H/s, W/s)."""
        self._check(images, 3, self.config.spatial_compression, "encode")
        images = images.to(self.quant_conv.weight.dtype)
        return self.quant_conv(self.encoder(images))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """(B, latent_channels, h, w) -> images (B, 3, h*s, w*s), roughly in [-1, 1]."""
        self._check(latents, self.config.latent_channels, 1, "decode")
        latents = latents.to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(latents))
