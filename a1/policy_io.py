"""Load a policy folder written by ``python -m a1.export`` (safetensors + JSON, no pickle).

Everything is checked before the model is built, and every problem is a `PolicyLoadError` naming
the file: a ``config.json`` that differs from the config stored in the weights' metadata (the
differing keys are listed; folders exported before that metadata existed still load), an
unreadable or truncated ``model.safetensors``, and normalisation statistics that are not finite
or have no spread (naming the dataset and feature).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from a1.config import ConfigError, from_dict
from a1.data.normalize import FeatureStats, unnormalize
from a1.export import CONFIG, NORMALIZATION, POLICY_CONFIG_KEY, TOKENIZER, WEIGHTS, ExportError, check_normalization
from a1.model.config import PolicyConfig
from a1.model.policy import InternVLAA1
from a1.model.prompt import IMAGE_TOKENS, PAD_TOKEN


class PolicyLoadError(ValueError):
    """An exported policy folder is incomplete or inconsistent; the message names the file."""


@dataclass
class LoadedPolicy:
    """An exported policy, ready for inference."""

    policy: InternVLAA1
    """The model, in eval mode."""
    config: PolicyConfig
    """The config it was built from (as exported, pretrained paths kept for reference)."""
    normalization: dict[str, dict[str, Any]]
    """Per dataset: ``{"mode": str, "state": FeatureStats | None, "action": FeatureStats | None}``."""
    tokenizer: Any
    """The understanding tokenizer (also set on ``policy.understanding.tokenizer``)."""
    metadata: dict[str, Any]
    """Export metadata (a1 version, source checkpoint, global_step, ema)."""

    def unnormalize_actions(self, actions, dataset: str, dims: int) -> np.ndarray:
        """(k, D) or (B, k, D) normalised, padded actions → raw robot actions (…, dims)."""
        if dataset not in self.normalization:
            raise KeyError(f"no normalization for dataset {dataset!r}; have {sorted(self.normalization)}")
        norm = self.normalization[dataset]
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().float().cpu().numpy()
        actions = np.asarray(actions)[..., :dims]
        if norm["mode"] == "none":
            return actions.astype(np.float32)
        if norm["action"] is None:
            raise ValueError(f"dataset {dataset!r} has no action statistics")
        return unnormalize(actions, norm["action"], norm["mode"])


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise PolicyLoadError(f"missing {path} (not an a1 exported policy folder?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PolicyLoadError(f"{path}: invalid JSON: {err}") from err


def _normalization(data: Any, path: Path) -> dict[str, dict[str, Any]]:
    try:
        check_normalization(data, str(path))
    except ExportError as err:
        raise PolicyLoadError(str(err)) from err
    return {name: {"mode": entry["mode"],
                   **{f: FeatureStats.from_dict(entry[f], f"{path}: dataset {name!r}: {f}")
                      if entry.get(f) is not None else None for f in ("state", "action")}}
            for name, entry in data.items()}


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of ``model.safetensors``; unreadable/truncated: `PolicyLoadError`."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise PolicyLoadError(f"missing {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise PolicyLoadError(f"{path}: cannot read the weights ({err}); the file is truncated or not a "
                              f"safetensors file — copy or re-export the policy") from err


def _config_diff(exported: Any, current: Any, where: str) -> list[str]:
    """Human-readable differences between the exported config and config.json, key by key."""
    if isinstance(exported, dict) and isinstance(current, dict):
        out = []
        for key in [*exported, *(k for k in current if k not in exported)]:
            at = f"{where}.{key}"
            if key not in current:
                out.append(f"{at}: missing from config.json, the weights were exported with "
                           f"{json.dumps(exported[key])}")
            elif key not in exported:
                out.append(f"{at}: config.json says {json.dumps(current[key])}, the weights were exported without it")
            else:
                out += _config_diff(exported[key], current[key], at)
        return out
    if exported != current or type(exported) is not type(current):
        return [f"{where}: config.json says {json.dumps(current)}, the weights were exported with "
                f"{json.dumps(exported)}"]
    return []


def _check_config(policy: Any, metadata: dict[str, str], config_path: Path, weights_path: Path) -> None:
    """config.json's ``policy`` must equal the config stored in the weights (when stored)."""
    if POLICY_CONFIG_KEY not in metadata:
        return  # exported before a1 stored it: nothing to compare with
    try:
        exported = json.loads(metadata[POLICY_CONFIG_KEY])
    except json.JSONDecodeError as err:
        raise PolicyLoadError(f"{weights_path}: metadata {POLICY_CONFIG_KEY!r} is not JSON ({err})") from err
    diffs = _config_diff(exported, policy, "policy")
    if diffs:
        more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
        raise PolicyLoadError(f"{config_path} does not match the config {weights_path.name} was exported with: "
                              f"{'; '.join(diffs[:5])}{more}. Restore config.json, or re-export the checkpoint")


def _build_config(cfg: PolicyConfig) -> PolicyConfig:
    """The config to build with: no external files (weights come from model.safetensors)."""
    build = copy.deepcopy(cfg)
    build.understanding.pretrained = None
    build.generation.expert.pretrained = None
    build.generation.tokenizer.weights = None
    build.action.expert.pretrained = None
    return build


def _swap_tokenizer(policy: InternVLAA1, tokenizer, folder: Path) -> None:
    """Put the exported tokenizer on the model, checking its image tokens keep their ids."""
    und = policy.understanding
    conf = und.backbone.config
    start, image, end = IMAGE_TOKENS[und.cfg.family]
    want = {image: conf.image_token_id}
    if und.cfg.family == "qwen3_vl":
        want |= {start: conf.vision_start_token_id, end: conf.vision_end_token_id}
    for token, expected in want.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != expected:
            raise PolicyLoadError(
                f"{folder / TOKENIZER}: token {token!r} has id {got}, the model expects {expected}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD_TOKEN if PAD_TOKEN in tokenizer.get_vocab() else tokenizer.eos_token
    und.tokenizer = tokenizer


def _read_config(folder: Path) -> tuple[dict, PolicyConfig]:
    doc = _read_json(folder / CONFIG)
    if not isinstance(doc, dict) or "policy" not in doc:
        raise PolicyLoadError(f"{folder / CONFIG}: no 'policy' section")
    try:
        return doc, from_dict(PolicyConfig, doc["policy"], "policy")
    except (ConfigError, TypeError, ValueError) as err:
        raise PolicyLoadError(f"{folder / CONFIG}: {err}") from err


def load_policy(folder: str | Path, device: str | torch.device = "cpu") -> LoadedPolicy:
    """Build the policy of an exported folder and load its weights strictly."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise PolicyLoadError(f"policy folder not found: {folder}")
    doc, cfg = _read_config(folder)
    weights_path = folder / WEIGHTS
    state, metadata = _read_weights(weights_path)
    _check_config(doc["policy"], metadata, folder / CONFIG, weights_path)
    build = _build_config(cfg)
    if cfg.understanding.pretrained is not None:  # backbone architecture saved beside the tokenizer
        if not (folder / TOKENIZER / "config.json").is_file():
            raise PolicyLoadError(
                f"{folder / TOKENIZER}/config.json missing: the understanding backbone came from "
                f"{cfg.understanding.pretrained!r}; re-export with this a1 version")
        build.understanding.pretrained = str(folder / TOKENIZER)
    normalization = _normalization(_read_json(folder / NORMALIZATION), folder / NORMALIZATION)
    tok_dir = folder / TOKENIZER
    if not tok_dir.is_dir():
        raise PolicyLoadError(f"missing {tok_dir}")
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))

    policy = InternVLAA1(build)
    _swap_tokenizer(policy, tokenizer, folder)
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PolicyLoadError(f"{weights_path}: weights do not match the config: {err}") from err
    policy.to(device).eval()
    return LoadedPolicy(policy, cfg, normalization, tokenizer, doc.get("a1", {}))
