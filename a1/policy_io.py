"""Load a policy folder written by ``python -m a1.export`` (safetensors + JSON, no pickle)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from a1.config import from_dict
from a1.data.normalize import FeatureStats, unnormalize
from a1.export import CONFIG, NORMALIZATION, TOKENIZER, WEIGHTS
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


def _normalization(data: dict, path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name, entry in data.items():
        out[name] = {
            "mode": entry["mode"],
            **{f: FeatureStats.from_dict(entry[f], f"{path}:{name}.{f}") if entry.get(f) is not None else None
               for f in ("state", "action")},
        }
    return out


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


def load_policy(folder: str | Path, device: str | torch.device = "cpu") -> LoadedPolicy:
    """Build the policy of an exported folder and load its weights strictly."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise PolicyLoadError(f"policy folder not found: {folder}")
    doc = _read_json(folder / CONFIG)
    if not isinstance(doc, dict) or "policy" not in doc:
        raise PolicyLoadError(f"{folder / CONFIG}: no 'policy' section")
    cfg = from_dict(PolicyConfig, doc["policy"], "policy")
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
    weights_path = folder / WEIGHTS
    if not weights_path.is_file():
        raise PolicyLoadError(f"missing {weights_path}")
    state = load_file(str(weights_path))
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PolicyLoadError(f"{weights_path}: weights do not match the config: {err}") from err
    policy.to(device).eval()
    return LoadedPolicy(policy, cfg, normalization, tokenizer, doc.get("a1", {}))
