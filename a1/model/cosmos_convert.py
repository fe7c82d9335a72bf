"""Convert the released Cosmos TorchScript files (`encoder.jit`, `decoder.jit`) to safetensors.

    python -m a1.model.cosmos_convert --encoder ckpt/encoder.jit --decoder ckpt/decoder.jit \
        --out ckpt/cosmos_ci8x8.safetensors

The merged state_dict (encoder.*, quant_conv.*, post_quant_conv.*, decoder.*) is cast to float32,
checked key-by-key and shape-by-shape against `CosmosTokenizer` built from the config, and written
with safetensors so later runs never need `torch.jit.load`.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from a1.model.cosmos import CosmosConfig, CosmosTokenizer, check_state_dict, drop_patcher_buffers


def load_jit_state(path: str | Path) -> dict[str, Tensor]:
    """state_dict of a TorchScript file, loaded on CPU; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated; we only read tensors
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise ValueError(f"Cannot load TorchScript file {path}: {err}") from err
    return dict(module.state_dict())


def merge_states(encoder: dict[str, Tensor], decoder: dict[str, Tensor]) -> dict[str, Tensor]:
    """Union of both state_dicts as contiguous float32 tensors, without the Haar buffers."""
    overlap = sorted(set(encoder) & set(decoder))
    if overlap:
        raise ValueError(f"encoder and decoder TorchScript files share keys: {overlap}")
    merged = drop_patcher_buffers({**encoder, **decoder})
    return {k: v.detach().to(torch.float32).contiguous() for k, v in merged.items()}


def convert(encoder_jit: str | Path, decoder_jit: str | Path, out: str | Path,
            config: CosmosConfig | None = None) -> Path:
    """Convert two `.jit` files into one safetensors file for `config` (CI8x8 by default)."""
    from safetensors.torch import save_file

    config = config or CosmosConfig()
    state = merge_states(load_jit_state(encoder_jit), load_jit_state(decoder_jit))
    with torch.device("meta"):  # shapes and keys only; no memory for the check
        reference = CosmosTokenizer(config)
    check_state_dict(reference, state, f"from {encoder_jit} + {decoder_jit}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = {k: v for k, v in asdict(config).items() if k != "weights"}
    metadata = {"format": "pt", "source_encoder": str(encoder_jit),
                "source_decoder": str(decoder_jit), "config": json.dumps(arch)}
    save_file(state, str(out), metadata=metadata)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m a1.model.cosmos_convert",
        description="Convert NVIDIA Cosmos-Tokenizer continuous image TorchScript files "
                    "(encoder.jit + decoder.jit, e.g. from nvidia/Cosmos-Tokenizer-CI8x8) into "
                    "a float32 safetensors file loadable by CosmosConfig.weights.")
    parser.add_argument("--encoder", required=True, type=Path, help="path to encoder.jit")
    parser.add_argument("--decoder", required=True, type=Path, help="path to decoder.jit")
    parser.add_argument("--out", required=True, type=Path,
                        help="output .safetensors path (parent folders are created)")
    parser.add_argument("--config-json", default="{}",
                        help="JSON object overriding CosmosConfig fields, e.g. "
                             "'{\"channels\": 128, \"channels_mult\": [2, 4, 4]}'; default CI8x8")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        overrides = json.loads(args.config_json)
        config = CosmosConfig(**overrides)
    except (json.JSONDecodeError, TypeError) as err:
        raise SystemExit(f"--config-json is not a valid CosmosConfig JSON object: {err}")
    out = convert(args.encoder, args.decoder, args.out, config)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
