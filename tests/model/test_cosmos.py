"""Tests for the Cosmos CI8x8 tokenizer (`a1.model.cosmos`) and its converter."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from a1.model.cosmos import CosmosConfig, CosmosTokenizer, HaarPatcher, HaarUnPatcher
from a1.model.cosmos_convert import convert, main

TINY = dict(channels=32, channels_mult=[1, 2, 2], num_res_blocks=1)


def _count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.fixture(scope="module")
def tiny() -> CosmosTokenizer:
    torch.manual_seed(0)
    return CosmosTokenizer(CosmosConfig(**TINY))


class _EncoderSide(nn.Module):
    """Same keys as the released encoder.jit: encoder.*, quant_conv.*."""

    def __init__(self, model: CosmosTokenizer) -> None:
        super().__init__()
        self.encoder, self.quant_conv = model.encoder, model.quant_conv

    def forward(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x))


class _DecoderSide(nn.Module):
    """Same keys as the released decoder.jit: post_quant_conv.*, decoder.*."""

    def __init__(self, model: CosmosTokenizer) -> None:
        super().__init__()
        self.post_quant_conv, self.decoder = model.post_quant_conv, model.decoder

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))


def _save_jits(model: CosmosTokenizer, folder: Path) -> tuple[Path, Path]:
    enc, dec = folder / "encoder.jit", folder / "decoder.jit"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.trace(_EncoderSide(model), torch.zeros(1, 3, 64, 64)).save(str(enc))
        torch.jit.trace(_DecoderSide(model), torch.zeros(1, 16, 8, 8)).save(str(dec))
    return enc, dec


def test_full_config_parameter_count() -> None:
    with torch.device("meta"):
        model = CosmosTokenizer(CosmosConfig())
    assert _count(model) == 76_789_472
    assert _count(model.encoder, model.quant_conv) == pytest.approx(31.15e6, abs=0.01e6)
    assert _count(model.post_quant_conv, model.decoder) == pytest.approx(45.64e6, abs=0.01e6)
    keys = set(model.state_dict())
    for key in ("encoder.down.0.block.0.conv1.weight", "encoder.down.0.block.0.nin_shortcut.weight",
                "encoder.down.0.downsample.conv.weight", "encoder.mid.attn_1.q.weight",
                "quant_conv.weight", "post_quant_conv.weight", "decoder.up.2.upsample.conv.weight",
                "decoder.up.0.block.2.conv2.weight", "decoder.conv_out.weight"):
        assert key in keys
    assert "encoder.down.1.downsample.conv.weight" not in keys
    assert "encoder.patcher.wavelets" not in keys  # non-persistent buffers
    assert model.decoder.conv_out.weight.shape == (48, 256, 3, 3)


def test_full_config_shapes() -> None:
    torch.manual_seed(0)
    model = CosmosTokenizer(CosmosConfig())
    image = torch.rand(1, 3, 256, 256) * 2 - 1
    latent = model.encode(image)
    assert latent.shape == (1, 16, 32, 32) and torch.isfinite(latent).all()
    recon = model.decode(latent)
    assert recon.shape == (1, 3, 256, 256) and torch.isfinite(recon).all()


def test_tiny_config_shapes(tiny: CosmosTokenizer) -> None:
    assert tiny.encode(torch.zeros(2, 3, 256, 256)).shape == (2, 16, 32, 32)
    latent = tiny.encode(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert latent.shape == (1, 16, 8, 8)
    assert tiny.decode(latent).shape == (1, 3, 64, 64)


def test_haar_round_trip() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 256, 256) * 2 - 1
    patches = HaarPatcher(4)(image)
    assert patches.shape == (2, 48, 64, 64)
    torch.testing.assert_close(HaarUnPatcher(4)(patches), image, atol=1e-5, rtol=0)
    # Level 1 LL band of channel 0 is the 2x2 mean; a constant image has no detail bands.
    flat = HaarPatcher(2)(torch.full((1, 3, 4, 4), 0.5))
    torch.testing.assert_close(flat[:, :3], torch.full((1, 3, 2, 2), 0.5))
    assert flat[:, 3:].abs().max() == 0


def test_haar_band_order() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)  # [[x00, x01], [x10, x11]]
    bands = HaarPatcher(2)(x).flatten()
    # LL, then height-detail of width-low, width-detail, and the diagonal band, each / 4.
    expected = torch.tensor([1 + 2 + 3 + 4, 1 + 2 - 3 - 4, 1 - 2 + 3 - 4, 1 - 2 - 3 + 4]) / 4
    torch.testing.assert_close(bands, expected)


def test_convert_round_trip(tiny: CosmosTokenizer, tmp_path: Path) -> None:
    enc, dec = _save_jits(tiny, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = torch.jit.load(str(enc)).state_dict()
    assert "encoder.patcher.wavelets" in raw  # what the released files also carry
    out = convert(enc, dec, tmp_path / "w" / "cosmos.safetensors", CosmosConfig(**TINY))
    assert out.is_file()
    loaded = CosmosTokenizer.from_config(CosmosConfig(**TINY, weights=str(out)))
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    latent = tiny.encode(image)
    assert torch.equal(loaded.encode(image), latent)
    assert torch.equal(loaded.decode(latent), tiny.decode(latent))


def test_convert_cli(tiny: CosmosTokenizer, tmp_path: Path) -> None:
    enc, dec = _save_jits(tiny, tmp_path)
    out = tmp_path / "cli.safetensors"
    main(["--encoder", str(enc), "--decoder", str(dec), "--out", str(out),
          "--config-json", '{"channels": 32, "channels_mult": [1, 2, 2], "num_res_blocks": 1}'])
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert f.metadata()["source_encoder"] == str(enc)
        assert all(f.get_tensor(k).dtype == torch.float32 for k in f.keys())


def test_convert_missing_key(tmp_path: Path) -> None:
    model = CosmosTokenizer(CosmosConfig(**TINY))
    model.decoder.conv_out = nn.Identity()  # drops decoder.conv_out.{weight,bias}
    model.decoder.unpatcher = nn.Identity()
    enc, dec = _save_jits(model, tmp_path)
    with pytest.raises(ValueError, match="decoder.conv_out.weight"):
        convert(enc, dec, tmp_path / "x.safetensors", CosmosConfig(**TINY))
    with pytest.raises(ValueError, match="shape mismatches .*conv_in.weight"):
        convert(enc, dec, tmp_path / "x.safetensors", CosmosConfig())
    assert not (tmp_path / "x.safetensors").exists()


def test_bad_weights_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        CosmosTokenizer.from_config(CosmosConfig(**TINY, weights=str(missing)))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        CosmosTokenizer.from_config(CosmosConfig(**TINY, weights=str(corrupt)))
    with pytest.raises(FileNotFoundError, match="encoder.jit"):
        convert(tmp_path / "encoder.jit", tmp_path / "decoder.jit", tmp_path / "o.safetensors")


def test_frozen(tiny: CosmosTokenizer) -> None:
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training and not any(m.training for m in tiny.modules())
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    with torch.enable_grad():
        latent = tiny.encode(image)
        recon = tiny.decode(latent.requires_grad_())
    assert latent.grad_fn is None and recon.grad_fn is None


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 4, 64, 64), (1, 3, 60, 64), (1, 3, 64, 12)])
def test_bad_encode_shapes(tiny: CosmosTokenizer, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        tiny.encode(torch.zeros(shape))


def test_bad_decode_shape(tiny: CosmosTokenizer) -> None:
    with pytest.raises(ValueError, match="got shape"):
        tiny.decode(torch.zeros(1, 8, 4, 4))


@pytest.mark.parametrize("overrides, field", [
    (dict(spatial_compression=64), "spatial_compression"),
    (dict(spatial_compression=12), "spatial_compression"),
    (dict(patch_size=3), "patch_size"),
    (dict(channels=48), "channels"),
    (dict(channels_mult=[]), "channels_mult"),
])
def test_invalid_config(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CosmosTokenizer(CosmosConfig(**overrides))
