"""Export a trained checkpoint as a deployable policy folder (no pickled objects).

``python -m a1.export CKPT OUT [--ema/--no-ema]``

CKPT is a Lightning ``.ckpt`` file or a Lightning DeepSpeed checkpoint folder (consolidated
with ``convert_zero_checkpoint_to_fp32_state_dict`` first). OUT/ receives the policy folder whose
layout `a1.policy_folder` documents (weights, config with the processor settings, normalisation,
tokenizer, README). The normalisation (checkpoint key ``a1_normalization``, one
`a1.data.collate.DatasetNorm` per dataset: mode, statistics, action_mode, absolute_dims) is checked
first (finite, with spread: `a1.data.normalize.FeatureStats`; delta dims that fit the statistics),
so an unusable entry fails the export naming the checkpoint, dataset and feature; it is written with
every key (entries of older checkpoints, without the delta keys, become ``action_mode: absolute``).

Security: reading CKPT uses ``torch.load(weights_only=False)`` because Lightning checkpoints
hold pickled hyper-parameters — export trusts the checkpoint it is given. Nothing it writes
needs unpickling: deployment reads only safetensors, JSON and tokenizer files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import a1
from a1.policy_folder import check_normalization, check_processor, write_policy_folder

POLICY_PREFIX = "policy."
EMA_PREFIX = "ema.module."
PROCESSOR_KEY = "a1_processor"
"""Checkpoint key of the data settings raw observations go through (`a1.deploy.processor.ProcessorSettings`)."""


class ExportError(ValueError):
    """The checkpoint cannot be exported; the message names the file and the reason."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a ``.ckpt`` file or a Lightning DeepSpeed checkpoint folder."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"checkpoint not found: {path}")
    if path.is_dir():
        return _read_deepspeed(path)
    return _load_file(path)


def _load_file(path: Path, shown: Path | None = None) -> dict[str, Any]:
    shown = shown or path
    try:
        # Trusted input: Lightning checkpoints pickle hyper-parameters (see module docstring).
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for non-checkpoint files
        raise ExportError(f"{shown}: not a PyTorch/Lightning checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ExportError(f"{shown}: not a Lightning checkpoint (no 'state_dict' mapping)")
    return ckpt


def _read_deepspeed(folder: Path) -> dict[str, Any]:
    if not (folder / "checkpoint").is_dir() and not (folder / "latest").is_file():
        raise ExportError(f"{folder}: a folder but not a Lightning DeepSpeed checkpoint "
                          "(no 'checkpoint/' subfolder or 'latest' file)")
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "consolidated.ckpt"
        try:
            convert_zero_checkpoint_to_fp32_state_dict(str(folder), str(out))
        except Exception as err:
            raise ExportError(f"{folder}: cannot consolidate the DeepSpeed checkpoint: {err}") from err
        return _load_file(out, shown=folder)


def policy_config_dict(ckpt: dict[str, Any], source: Path) -> dict[str, Any]:
    """``a1_policy_config``, or for older checkpoints ``hyper_parameters["policy"]``."""
    cfg = ckpt.get("a1_policy_config")
    if cfg is None:
        cfg = (ckpt.get("hyper_parameters") or {}).get("policy")
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
            cfg = dataclasses.asdict(cfg)
    if not isinstance(cfg, dict):
        raise ExportError(f"{source}: no policy config (neither 'a1_policy_config' nor a "
                          "hyper_parameters['policy'] mapping/dataclass)")
    return json.loads(json.dumps(cfg))  # plain JSON data (fails loudly on anything else)


def policy_state_dict(
    ckpt: dict[str, Any], source: Path, ema: bool | None = None
) -> tuple[dict[str, torch.Tensor], bool]:
    """The policy weights (prefix stripped) and whether they are the EMA copy.

    ``ema``: ``None`` uses the EMA when the checkpoint has one; ``True`` requires it;
    ``False`` takes the raw weights.
    """
    sd = ckpt["state_dict"]
    has_ema = any(k.startswith(EMA_PREFIX) for k in sd)
    if ema and not has_ema:
        raise ExportError(f"{source}: --ema asked for, but the checkpoint has no '{EMA_PREFIX}' weights")
    use_ema = has_ema if ema is None else ema
    prefix = EMA_PREFIX if use_ema else POLICY_PREFIX
    weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not weights:
        raise ExportError(f"{source}: no '{prefix}' weights in its state_dict (not an a1 A1Module checkpoint?)")
    out = {}
    for k, v in weights.items():
        if not isinstance(v, torch.Tensor):
            raise ExportError(f"{source}: state_dict entry {prefix}{k} is not a tensor")
        v = v.detach().cpu()
        v = v.float() if v.is_floating_point() else v
        # A private contiguous copy per key: shared storage (tied embeddings) is written twice,
        # which safetensors accepts and a strict load_state_dict needs.
        out[k] = v.contiguous().clone()
    return out, use_ema


def export(ckpt_path: str | Path, out: str | Path, ema: bool | None = None) -> Path:
    """Write the policy folder ``out`` from a checkpoint; returns ``out``."""
    from a1.config import from_dict
    from a1.model.config import PolicyConfig
    from a1.model.prompt import load_tokenizer

    ckpt_path, out = Path(ckpt_path), Path(out)
    ckpt = read_checkpoint(ckpt_path)
    cfg_dict = policy_config_dict(ckpt, ckpt_path)
    try:
        cfg = from_dict(PolicyConfig, cfg_dict, "policy")
    except ValueError as err:
        raise ExportError(f"{ckpt_path}: invalid policy config: {err}") from err
    weights, used_ema = policy_state_dict(ckpt, ckpt_path, ema)
    normalization = check_normalization(ckpt.get("a1_normalization") or {}, f"{ckpt_path}: a1_normalization",
                                        ExportError)
    processor = ckpt.get(PROCESSOR_KEY)
    check_processor(processor, f"{ckpt_path}: {PROCESSOR_KEY}", ExportError)
    meta = {
        "version": a1.__version__,
        "source": ckpt_path.name,
        "global_step": int(ckpt.get("global_step", 0)),
        "ema": used_ema,
    }
    return write_policy_folder(out, weights, cfg_dict, normalization, processor, meta,
                               load_tokenizer(cfg.understanding.pretrained), ckpt.get("a1_backbone_config"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="Lightning .ckpt file or DeepSpeed checkpoint folder")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                        help="export the EMA weights (default: when the checkpoint has them)")
    args = parser.parse_args(argv)
    try:
        out = export(args.ckpt, args.out, args.ema)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.ckpt} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
