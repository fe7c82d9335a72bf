"""Export a trained checkpoint as a deployable policy folder (no pickled objects).

``python -m a1.export CKPT OUT [--ema/--no-ema]``

CKPT is a Lightning ``.ckpt`` file or a Lightning DeepSpeed checkpoint folder (consolidated
with ``convert_zero_checkpoint_to_fp32_state_dict`` first). OUT/ receives:

- ``model.safetensors``: the policy's ``state_dict`` (float32, contiguous; tensors that share
  storage, like tied embeddings, are written as separate copies so a strict load needs nothing else);
  its metadata ``a1_policy_config`` holds the exact policy config (JSON), so `load_policy` can
  refuse a ``config.json`` edited afterwards
- ``config.json``: ``{"policy": <PolicyConfig as plain data>, "a1": {version, source, global_step, ema}}``
- ``normalization.json``: per dataset ``{"mode", "state", "action"}`` statistics (``{}`` if none),
  checked first (finite, with spread: `a1.data.normalize.FeatureStats`), so an unusable
  statistic fails the export naming the checkpoint, dataset and feature
- ``tokenizer/``: the understanding expert's tokenizer (``save_pretrained``)
- ``README.md``: what is inside and how to load it (:func:`a1.policy_io.load_policy`)

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

POLICY_PREFIX = "policy."
POLICY_CONFIG_KEY = "a1_policy_config"
"""Safetensors metadata key holding the exported policy config (JSON)."""
EMA_PREFIX = "ema.module."
WEIGHTS, CONFIG, NORMALIZATION, TOKENIZER, README = (
    "model.safetensors", "config.json", "normalization.json", "tokenizer", "README.md")


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
    from safetensors.torch import save_file

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
    normalization = check_normalization(ckpt.get("a1_normalization") or {}, f"{ckpt_path}: a1_normalization")

    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / WEIGHTS), metadata={"format": "pt", "a1_version": a1.__version__,
                                                     POLICY_CONFIG_KEY: json.dumps(cfg_dict, sort_keys=True)})
    meta = {
        "version": a1.__version__,
        "source": ckpt_path.name,
        "global_step": int(ckpt.get("global_step", 0)),
        "ema": used_ema,
    }
    (out / CONFIG).write_text(json.dumps({"policy": cfg_dict, "a1": meta}, indent=2) + "\n")
    (out / NORMALIZATION).write_text(json.dumps(normalization, indent=2) + "\n")
    load_tokenizer(cfg.understanding.pretrained).save_pretrained(str(out / TOKENIZER))
    if ckpt.get("a1_backbone_config"):  # architecture of the understanding backbone (no weights)
        (out / TOKENIZER / "config.json").write_text(json.dumps(ckpt["a1_backbone_config"], indent=2) + "\n")
    (out / README).write_text(_readme(meta, cfg, normalization, len(weights)))
    return out


def check_normalization(normalization: Any, where: str) -> dict[str, dict[str, Any]]:
    """Per-dataset ``{"mode", "state", "action"}`` entries, each statistic checked by
    `FeatureStats` (None allowed); a problem raises `ExportError` naming ``where``, dataset and feature."""
    from a1.data.normalize import MODES, FeatureStats

    if not isinstance(normalization, dict):
        raise ExportError(f"{where}: expected a mapping of dataset name to statistics, got "
                          f"{type(normalization).__name__}")
    for name, entry in normalization.items():
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            raise ExportError(f"{where}: dataset {name!r}: expected {{'mode': one of {list(MODES)}, 'state', "
                              f"'action'}}, got {entry!r}")
        for feature in ("state", "action"):
            if entry.get(feature) is not None:
                try:
                    FeatureStats.from_dict(entry[feature], f"{where}: dataset {name!r}: {feature}")
                except (KeyError, ValueError) as err:
                    raise ExportError(str(err.args[0])) from err
    return normalization


def _readme(meta: dict, cfg, normalization: dict, num_tensors: int) -> str:
    datasets = ", ".join(f"`{d}` ({n.get('mode')})" for d, n in normalization.items()) or "none"
    return f"""# a1 exported policy

Exported by a1 {meta['version']} from `{meta['source']}` at global step {meta['global_step']}
({'EMA' if meta['ema'] else 'raw'} weights).

| file | content |
|---|---|
| `{WEIGHTS}` | policy weights, float32 ({num_tensors} tensors) |
| `{CONFIG}` | `policy`: the model config (a1 `PolicyConfig`); `a1`: export metadata |
| `{NORMALIZATION}` | per-dataset state/action statistics and mode: {datasets} |
| `{TOKENIZER}/` | the understanding expert's tokenizer |

Understanding backbone: `{cfg.understanding.family}`; views {cfg.views}; action chunk
{cfg.action.chunk_size} × {cfg.action.max_dim} dims, {cfg.action.num_steps} Euler steps.

Load it (no pickle: safetensors, JSON and tokenizer files only):

```python
from a1.policy_io import load_policy
p = load_policy("path/to/this/folder", device="cpu")
actions = p.policy.sample_actions(observation)          # (B, k, D), normalised
robot = p.unnormalize_actions(actions, dataset="<name>", dims=<real dims>)
```
"""


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
