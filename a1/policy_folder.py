"""The exported policy folder: what ``python -m a1.export`` writes and :func:`load_policy` reads.

A policy folder holds nothing that needs unpickling::

    model.safetensors    the policy's state_dict (float32, contiguous; tensors that share storage,
                         like tied embeddings, are separate copies so a strict load needs nothing
                         else); its metadata ``a1_policy_config`` is the exact policy config (JSON)
    config.json          {"policy": PolicyConfig as plain data,
                          "processor": {"image_size", "history"} or absent,
                          "a1": {version, source, global_step, ema}}
    normalization.json   per dataset/embodiment {"mode", "state", "action", "action_mode",
                         "absolute_dims"} ({} if none): the normalisation mode, the statistics and
                         whether actions are deltas to the state (`a1.data.collate.DatasetNorm`;
                         entries without the last two keys, written by older a1, are absolute)
    tokenizer/           the understanding expert's tokenizer (save_pretrained), plus the backbone's
                         transformers config.json when it came from a pretrained folder
    README.md            generated: what is inside and how to load it

``processor`` holds the data settings a raw robot observation must go through to look like a
training sample (the frame size of a batch and m, the frames between t−m and t); it is written
when the checkpoint was trained with an ``A1DataModule``.

Reading checks everything before the model is built, and every problem is a `PolicyLoadError`
naming the file: a ``config.json`` that differs from the config stored in the weights' metadata
(the differing keys are listed), an unreadable or truncated ``model.safetensors``, and
normalisation statistics that are not finite or have no spread (naming the dataset and feature).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import a1
from a1.config import ConfigError, from_dict
from a1.data.collate import DatasetNorm
from a1.data.sample import LEGACY_GEOMETRY
from a1.deploy.processor import Processor, ProcessorSettings
from a1.model.config import PolicyConfig
from a1.model.policy import InternVLAA1
from a1.model.prompt import IMAGE_TOKENS, PAD_TOKEN

WEIGHTS, CONFIG, NORMALIZATION, TOKENIZER, README = (
    "model.safetensors", "config.json", "normalization.json", "tokenizer", "README.md")
POLICY_CONFIG_KEY = "a1_policy_config"
"""Safetensors metadata key holding the exported policy config (JSON)."""


class PolicyLoadError(ValueError):
    """A policy folder is incomplete or inconsistent; the message names the file."""


# --- writing ------------------------------------------------------------------------------------
def write_policy_folder(
    out: Path,
    weights: dict[str, torch.Tensor],
    policy: dict[str, Any],
    normalization: dict[str, dict[str, Any]],
    processor: dict[str, Any] | None,
    meta: dict[str, Any],
    tokenizer: Any,
    backbone_config: dict[str, Any] | None = None,
) -> Path:
    """Write a policy folder (layout in the module docstring); the inputs are already checked."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / WEIGHTS), metadata={"format": "pt", "a1_version": a1.__version__,
                                                     POLICY_CONFIG_KEY: json.dumps(policy, sort_keys=True)})
    doc = {"policy": policy, **({"processor": processor} if processor is not None else {}), "a1": meta}
    (out / CONFIG).write_text(json.dumps(doc, indent=2) + "\n")
    (out / NORMALIZATION).write_text(json.dumps(normalization, indent=2) + "\n")
    tokenizer.save_pretrained(str(out / TOKENIZER))
    if backbone_config:  # architecture of the understanding backbone (no weights)
        (out / TOKENIZER / "config.json").write_text(json.dumps(backbone_config, indent=2) + "\n")
    (out / README).write_text(_readme(meta, policy, normalization, processor, len(weights)))
    return out


def read_normalization(normalization: Any, where: str, error: type[Exception]) -> dict[str, DatasetNorm]:
    """Per-dataset `DatasetNorm`s of serialised ``{"mode", "state", "action", "action_mode",
    "absolute_dims"}`` entries (`DatasetNorm.from_dict`: statistics checked by `FeatureStats`, None
    allowed; entries without the delta keys are absolute); a problem raises ``error`` naming
    ``where``, dataset and feature."""
    if not isinstance(normalization, dict):
        raise error(f"{where}: expected a mapping of dataset name to statistics, got {type(normalization).__name__}")
    out = {}
    for name, entry in normalization.items():
        try:
            out[name] = DatasetNorm.from_dict(entry, f"{where}: dataset {name!r}")
        except (KeyError, ValueError) as err:
            raise error(str(err.args[0])) from err
    return out


def check_normalization(normalization: Any, where: str, error: type[Exception]) -> dict[str, dict[str, Any]]:
    """`read_normalization`, written back as plain data: every entry with all of
    `a1.data.collate.NORM_KEYS` (older entries gain ``action_mode: absolute``)."""
    return {name: norm.to_dict() for name, norm in read_normalization(normalization, where, error).items()}


def check_processor(processor: Any, where: str, error: type[Exception]) -> ProcessorSettings | None:
    """The ``processor`` section as `ProcessorSettings` (None stays None); bad values raise ``error``."""
    if processor is None:
        return None
    try:
        return from_dict(ProcessorSettings, processor, "processor")
    except (ConfigError, TypeError, ValueError) as err:
        raise error(f"{where}: {err}") from err


def _readme(meta: dict, policy: dict, normalization: dict, processor: dict | None, num_tensors: int) -> str:
    datasets = ", ".join(f"`{d}` ({n.get('mode')}, {n.get('action_mode', 'absolute')} actions)"
                         for d, n in normalization.items()) or "none"
    action = policy["action"]
    proc = (f"frames fitted to {processor['image_size']}² ({processor.get('geometry', LEGACY_GEOMETRY)}), "
            f"t−m with m = {processor['history']}" if processor
            else "none (trained without an A1DataModule: raw observations cannot be processed)")
    return f"""# a1 exported policy

Exported by a1 {meta['version']} from `{meta['source']}` at global step {meta['global_step']}
({'EMA' if meta['ema'] else 'raw'} weights).

| file | content |
|---|---|
| `{WEIGHTS}` | policy weights, float32 ({num_tensors} tensors) |
| `{CONFIG}` | `policy`: the model config (a1 `PolicyConfig`); `processor`: {proc}; `a1`: export metadata |
| `{NORMALIZATION}` | per-dataset state/action statistics and mode: {datasets} |
| `{TOKENIZER}/` | the understanding expert's tokenizer |

Understanding backbone: `{policy['understanding']['family']}`; views {policy['views']}; action chunk
{action['chunk_size']} × {action['max_dim']} dims, {action['num_steps']} Euler steps.

Load it (no pickle: safetensors, JSON and tokenizer files only) and act on a raw observation:

```python
from a1.policy_folder import load_policy
p = load_policy("path/to/this/folder", device="cpu")
actions = p.infer({{"images": {{view: uint8 (H, W, 3) frame for view in {policy['views']}}},
                    "state": raw_state, "prompt": "pick up the cube"}})   # (k, robot dims), raw units
```

Serve it to a robot: `python deploy/serve.py --policy path/to/this/folder --robot NAME`.
"""


# --- reading ------------------------------------------------------------------------------------
@dataclass
class LoadedPolicy:
    """An exported policy, ready for inference."""

    policy: InternVLAA1
    """The model, in eval mode."""
    config: PolicyConfig
    """The config it was built from (as exported, pretrained paths kept for reference)."""
    normalization: dict[str, DatasetNorm]
    """Per dataset/embodiment: how its state and actions were normalised in training."""
    tokenizer: Any
    """The understanding tokenizer (also set on ``policy.understanding.tokenizer``)."""
    metadata: dict[str, Any]
    """Export metadata (a1 version, source checkpoint, global_step, ema)."""
    settings: ProcessorSettings | None
    """Frame size and m of the training samples (None: exported without an A1DataModule)."""
    folder: Path | None = None
    """Where it was loaded from (for error messages)."""

    def default_normalization(self) -> str:
        """The normalisation used when none is named: the only one with action statistics."""
        with_actions = [n for n, norm in self.normalization.items() if norm.action is not None]
        if len(with_actions) == 1:
            return with_actions[0]
        known = ", ".join(sorted(self.normalization)) or "none"
        raise ValueError(f"policy {self.folder or ''}: name the normalisation to use (the robot config's "
                         f"'normalization', or --normalization): it holds {len(with_actions)} with action "
                         f"statistics; known: {known}")

    def processor(self, normalization: str | None = None, absent_views: tuple[str, ...] = ()) -> Processor:
        """The processor for one embodiment: ``normalization`` names its statistics (None: the default,
        see `default_normalization`); ``absent_views`` are views the robot has no camera for (masked)."""
        if self.settings is None:
            raise ValueError(f"policy {self.folder or ''}: config.json has no 'processor' section (exported from "
                             "a checkpoint trained without an A1DataModule), so raw observations cannot be "
                             "processed; re-export a checkpoint of an a1.fit run")
        name = self.default_normalization() if normalization is None else normalization
        if name not in self.normalization:
            raise KeyError(f"unknown normalisation {name!r}; this policy knows: "
                           f"{', '.join(sorted(self.normalization)) or 'none'}")
        return Processor(self.config, self.settings, self.tokenizer, self.normalization[name], name, absent_views)

    def infer(self, raw: dict, noise: torch.Tensor | None = None, normalization: str | None = None) -> np.ndarray:
        """One call: raw observation ``{"images": {view: frame}, "state": (D,), "prompt": str}`` →
        (k, D_robot) raw actions. A frame is (H, W, 3) or (3, H, W) uint8 (frame t; the t−m frame is
        then treated as at an episode's start), or both frames stacked (2, H, W, 3) / (2, 3, H, W).
        ``noise``: optional (k, max_dim) initial noise, for reproducible outputs."""
        proc = self.processor(normalization)
        device = next(self.policy.parameters()).device
        parsed = proc.parse(raw)
        obs = proc.observation(parsed).to(device)
        if noise is not None:
            noise = proc.check_noise(noise).to(device)
        chunk = self.policy.sample_actions(obs, noise=noise)
        return proc.raw_actions(chunk, parsed.state)


def normalization_names(folder: str | Path) -> list[str]:
    """The names of the statistics an exported policy folder holds (its datasets), without loading it."""
    entries = _read_json(Path(folder) / NORMALIZATION)
    if not isinstance(entries, dict):
        raise PolicyLoadError(f"{Path(folder) / NORMALIZATION}: expected a mapping of dataset name to statistics")
    return list(entries)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise PolicyLoadError(f"missing {path} (not an a1 exported policy folder?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PolicyLoadError(f"{path}: invalid JSON: {err}") from err


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


def read_config(folder: Path) -> tuple[dict, PolicyConfig, ProcessorSettings | None]:
    """``config.json`` of a policy folder, checked: (the document, the policy config, the processor
    settings or None) — without building the model."""
    doc = _read_json(folder / CONFIG)
    if not isinstance(doc, dict) or "policy" not in doc:
        raise PolicyLoadError(f"{folder / CONFIG}: no 'policy' section")
    try:
        cfg = from_dict(PolicyConfig, doc["policy"], "policy")
    except (ConfigError, TypeError, ValueError) as err:
        raise PolicyLoadError(f"{folder / CONFIG}: {err}") from err
    return doc, cfg, check_processor(doc.get("processor"), str(folder / CONFIG), PolicyLoadError)


def load_policy(folder: str | Path, device: str | torch.device = "cpu") -> LoadedPolicy:
    """Build the policy of an exported folder and load its weights strictly."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise PolicyLoadError(f"policy folder not found: {folder}")
    doc, cfg, settings = read_config(folder)
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
    normalization = read_normalization(_read_json(folder / NORMALIZATION), str(folder / NORMALIZATION),
                                       PolicyLoadError)
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
    return LoadedPolicy(policy, cfg, normalization, tokenizer, doc.get("a1", {}), settings, folder)
