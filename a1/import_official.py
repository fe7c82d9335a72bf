"""Import an official InternVLA-A1 checkpoint (e.g. the released InternVLA-A1-3B) as an a1 policy folder.

    python -m a1.import_official SRC OUT [--config configs/pretrain_3b.yaml] [--tokenizer DIR]
                                 [--robot-type NAME] [--action-mode delta|absolute]
                                 [--absolute-dims 6,13] [--state-features K ...] [--action-features K ...]
                                 [--overwrite]

SRC is the official folder (``model.safetensors``, ``config.json`` with ``type: qwena1``,
``stats.json``, optionally ``train_config.json``). CONFIG is an a1 config whose ``model.policy``
gives the architecture; its understanding backbone folder (``understanding.pretrained``: config and
tokenizer, weights not needed) or ``--tokenizer`` gives the tokenizer — use the checkpoint's own
(special-token ids differ between tokenizers). OUT is an ordinary a1 policy folder that
`a1.policy_folder.load_policy` and the deploy runtime use like any other.

Every official key maps 1:1, same shape, onto an a1 module (table `PREFIXES`); the conventions
that differ become a1 settings or are folded into the weights, so the imported policy acts as the
official code does:

- flow time: the official t = 1 − τ (t = 1 is noise, target ε − a) is folded into the weights —
  the time-embedding columns of ``action_time_mlp_in`` by `a1.model.flow.fold_mirrored_time`, and
  ``action_out_proj`` negated; a1's sampler counts time as the official one does;
- ``understanding.deepstack: false`` (the official code discards DeepStack features),
  ``understanding.positions: compact`` (masked tokens compacted away from the rotary positions) and
  ``understanding.rotary_precision: bfloat16`` (the official model casts itself to bf16 at
  construction, its rotary frequencies included);
- frames letterboxed to the official 224² (``processor.geometry: letterbox``), m = 15;
- ``stats.json`` of one robot type → normalisation ``mean_std_eps`` ((x − mean)/(std + 1e-6)), with
  the official delta-action setting (``train_config.json: dataset.action_mode``) and its absolute
  (gripper) dims and feature layout per robot type (`OFFICIAL_ROBOTS`).

Errors (`OfficialImportError`) name the file and the missing or mismatched key and shape.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import a1
from a1.config import ConfigError, policy_config
from a1.data.collate import DatasetNorm
from a1.data.normalize import FeatureStats
from a1.model.config import PolicyConfig
from a1.model.cosmos import drop_patcher_buffers
from a1.model.flow import fold_mirrored_time
from a1.model.prompt import load_tokenizer

PREFIXES: list[tuple[str, str]] = [
    ("model.qwen3_vl_with_expert.und_expert.", "understanding.backbone."),
    ("model.qwen3_vl_with_expert.gen_expert.", "generation."),
    ("model.qwen3_vl_with_expert.act_expert.", "action."),
    ("model.cosmos._enc_model.encoder.", "foresight.tokenizer.encoder."),
    ("model.cosmos._enc_model.quant_conv.", "foresight.tokenizer.quant_conv."),
    ("model.cosmos._dec_model.post_quant_conv.", "foresight.tokenizer.post_quant_conv."),
    ("model.cosmos._dec_model.decoder.", "foresight.tokenizer.decoder."),
    ("model.cosmos_in_proj.", "foresight.proj_in."),
    ("model.downsample_conv.", "foresight.compress."),
    ("model.upsample_conv.", "foresight.expand."),
    ("model.cosmos_out_layer_norm.", "foresight.norm."),
    ("model.cosmos_out_proj.", "foresight.head."),
    ("model.state_proj.", "action_head.state_proj."),
    ("model.action_in_proj.", "action_head.action_in."),
    ("model.action_time_mlp_in.", "action_head.time_mlp_in."),
    ("model.action_time_mlp_out.", "action_head.time_mlp_out."),
    ("model.action_out_proj.", "action_head.action_out."),
]
"""Official key prefix → a1 key prefix (the rest of the key is the same); one to one."""


@dataclass(frozen=True)
class OfficialRobot:
    """How the official code lays out one robot type's vectors (its FEATURE_MAPPING / MASK_MAPPING)."""

    state: tuple[str, ...] = ("observation.state",)
    """Features concatenated, in order, into the state (and their stats.json entries)."""
    action: tuple[str, ...] = ("action",)
    """Features concatenated into the action."""
    absolute_dims: tuple[int, ...] = ()
    """Action dims the official delta-action transform leaves absolute (grippers)."""


_ARMS = ("states.left_joint.position", "states.left_gripper.position", "states.right_joint.position",
         "states.right_gripper.position")  # 2 × (6 joints + gripper)
_GENIE = ("states.left_joint.position", "states.right_joint.position", "states.left_gripper.position",
          "states.right_gripper.position")  # 14 joints, then 2 grippers
OFFICIAL_ROBOTS: dict[str, OfficialRobot] = {
    **dict.fromkeys(["aloha", "split_aloha", "ARX Lift-2", "AgileX Split Aloha", "ARX AC One"],
                    OfficialRobot(absolute_dims=(6, 13))),
    **dict.fromkeys(["piper", "arx_lift2"], OfficialRobot(_ARMS, tuple(k.replace("states.", "actions.") for k in _ARMS),
                                                          (6, 13))),
    "genie1": OfficialRobot(_GENIE, tuple(k.replace("states.", "actions.") for k in _GENIE), (14, 15)),
    "Genie-1": OfficialRobot(absolute_dims=(14, 15)),
    "a2d": OfficialRobot(("observation.states.joint.position", "observation.states.effector.position"),
                         ("actions.joint.position", "actions.effector.position"), (14, 15)),
    "franka": OfficialRobot(("states.joint.position", "states.gripper.position"),
                            ("actions.joint.position", "actions.gripper.position"), (7,)),
    **dict.fromkeys(["frankarobotiq", "Franka"], OfficialRobot(absolute_dims=(7,))),
    "panda": OfficialRobot(),
}
"""The official robot types (InternVLA-A1 @2daf87c, ``lerobot/transforms/constants.py``); others use
the default layout and need ``--absolute-dims`` for delta actions."""
OFFICIAL_IMAGE_RESOLUTION = 224
"""The official ``image_resolution`` default (letterbox side), used when config.json omits it."""

OFFICIAL_SETTINGS = {  # official config.json key → (a1 setting, how to read it from a PolicyConfig)
    "chunk_size": ("action.chunk_size", lambda c: c.action.chunk_size),
    "max_action_dim": ("action.max_dim", lambda c: c.action.max_dim),
    "max_state_dim": ("action.max_dim", lambda c: c.action.max_dim),
    "num_inference_steps": ("action.num_steps", lambda c: c.action.num_steps),
    "min_period": ("action.time_embedding_periods[0]", lambda c: c.action.time_embedding_periods[0]),
    "max_period": ("action.time_embedding_periods[1]", lambda c: c.action.time_embedding_periods[1]),
    "tokenizer_max_length": ("understanding.max_text_tokens", lambda c: c.understanding.max_text_tokens),
}
HISTORY = 15
"""m of the official code (``image_delta_indices`` = [−15, 0, 15])."""
TIME_IN, ACTION_OUT = "action_head.time_mlp_in.weight", "action_head.action_out."


class OfficialImportError(ValueError):
    """The official checkpoint cannot be imported; the message names the file and key."""


# --- reading the official folder ----------------------------------------------------------------
def _json(path: Path) -> Any:
    if not path.is_file():
        raise OfficialImportError(f"{path}: not found (an official InternVLA-A1 folder has model.safetensors, "
                           "config.json and stats.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise OfficialImportError(f"{path}: not valid JSON ({err})") from err


def read_official_config(src: Path) -> dict[str, Any]:
    """``SRC/config.json``: the official policy config (``type: qwena1``)."""
    doc = _json(src / "config.json")
    if not isinstance(doc, dict) or doc.get("type") != "qwena1":
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise OfficialImportError(f"{src / 'config.json'}: expected an InternVLA-A1 policy config (type 'qwena1'), "
                           f"got type {got!r}")
    return doc


def check_settings(official: dict[str, Any], cfg: PolicyConfig, src: Path, config: str) -> None:
    """The a1 config must agree with every official setting that shapes the computation."""
    for key, (name, read) in OFFICIAL_SETTINGS.items():
        value = official.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OfficialImportError(f"{src / 'config.json'}: {key} must be a number, got {value!r}")
        if not np.isclose(float(value), float(read(cfg)), rtol=1e-9, atol=0):
            raise OfficialImportError(f"{src / 'config.json'}: {key} = {official[key]!r}, but {config} has "
                               f"model.policy.{name} = {read(cfg)!r}")
    latent = cfg.generation.image_size // cfg.generation.tokenizer.spatial_compression
    scale = official.get("scale_factor")
    if cfg.generation.enabled and (not isinstance(scale, int) or latent != scale * cfg.generation.token_grid):
        raise OfficialImportError(f"{src / 'config.json'}: scale_factor = {scale} (the generation conv kernel), but "
                           f"{config} gives {latent // cfg.generation.token_grid} (latent {latent} / "
                           f"generation.token_grid {cfg.generation.token_grid})")


def official_policy_config(cfg: PolicyConfig) -> PolicyConfig:
    """The a1 settings that reproduce the official code (module docstring); weights come from SRC."""
    cfg = copy.deepcopy(cfg)
    cfg.understanding = dataclasses.replace(cfg.understanding, deepstack=False, positions="compact",
                                            rotary_precision="bfloat16", attention="bidirectional")
    cfg.generation.tokenizer.weights = None
    cfg.generation.expert.pretrained = None
    cfg.action.expert.pretrained = None
    return cfg


def _features(stats: dict, names: tuple[str, ...], where: str) -> FeatureStats:
    """mean/std of several official features concatenated in order (the official robot layouts)."""
    missing = [n for n in names if n not in stats]
    if missing:
        raise OfficialImportError(f"{where}: no feature {missing[0]!r} (features: {sorted(stats)}); choose them "
                                  "with --state-features / --action-features")
    parts = {}
    for key in ("mean", "std"):
        try:
            parts[key] = np.concatenate([np.asarray(stats[n][key], dtype=np.float64).reshape(-1) for n in names])
        except (KeyError, TypeError, ValueError) as err:
            raise OfficialImportError(f"{where}: feature(s) {list(names)} lack a numeric {key!r} ({err})") from err
    return FeatureStats(parts["mean"], parts["std"], None, None, where=f"{where}: {'+'.join(names)}")


def read_stats(src: Path, robot_type: str | None) -> tuple[str, dict]:
    """(robot type, its {feature: statistics}) from ``SRC/stats.json`` = {robot_type: {feature: …}}."""
    path = src / "stats.json"
    doc = _json(path)
    if not isinstance(doc, dict) or not doc or not all(isinstance(v, dict) for v in doc.values()):
        raise OfficialImportError(f"{path}: expected {{robot_type: {{feature: statistics}}}}")
    if robot_type is None:
        if len(doc) != 1:
            raise OfficialImportError(f"{path}: holds robot types {sorted(doc)}; choose one with --robot-type")
        robot_type = next(iter(doc))
    if robot_type not in doc:
        raise OfficialImportError(f"{path}: no robot type {robot_type!r} (robot types: {sorted(doc)})")
    return robot_type, doc[robot_type]


def action_mode_of(src: Path, mode: str | None) -> str:
    """``--action-mode``, else ``train_config.json: dataset.action_mode`` ('abs' | 'delta')."""
    if mode is not None:
        return mode
    path = src / "train_config.json"
    doc = _json(path) if path.is_file() else None
    dataset = doc.get("dataset") if isinstance(doc, dict) else None
    found = dataset.get("action_mode") if isinstance(dataset, dict) else None
    if found is None:
        raise OfficialImportError(f"{src}: no train_config.json with dataset.action_mode; say --action-mode "
                                  "delta or absolute (the official pre-training and RoboTwin runs use delta)")
    if found not in ("abs", "delta"):
        raise OfficialImportError(f"{path}: dataset.action_mode = {found!r}, expected 'abs' or 'delta'")
    return {"abs": "absolute", "delta": "delta"}[found]


@dataclass
class RobotChoice:
    """Which robot type's statistics to import and how its vectors are laid out (None: from the
    checkpoint and the official tables)."""

    robot_type: str | None = None
    action_mode: str | None = None
    absolute_dims: list[int] | None = None
    state_features: list[str] | None = None
    action_features: list[str] | None = None


def normalization(src: Path, choice: RobotChoice) -> tuple[str, DatasetNorm]:
    """(robot type, `DatasetNorm` ``mean_std_eps``) of the official statistics, delta settings included."""
    robot, stats = read_stats(src, choice.robot_type)
    layout = OFFICIAL_ROBOTS.get(robot, OfficialRobot())
    mode = action_mode_of(src, choice.action_mode)
    dims = choice.absolute_dims
    if mode == "absolute":
        dims = []
    elif dims is None:
        if robot not in OFFICIAL_ROBOTS:
            raise OfficialImportError(f"robot type {robot!r} has no known gripper dims for delta actions; say "
                                      f"--absolute-dims (known robot types: {sorted(OFFICIAL_ROBOTS)})")
        dims = list(layout.absolute_dims)
    where = f"{src / 'stats.json'}: {robot}"
    state = _features(stats, tuple(choice.state_features or layout.state), where)
    action = _features(stats, tuple(choice.action_features or layout.action), where)
    try:
        return robot, DatasetNorm(state, action, "mean_std_eps", mode, list(dims))
    except (KeyError, ValueError) as err:
        raise OfficialImportError(str(err.args[0])) from err


# --- weights ------------------------------------------------------------------------------------
def a1_key(key: str) -> str | None:
    """The a1 name of an official key (None: not a policy weight we know)."""
    for old, new in PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def map_weights(path: Path, expected: dict[str, torch.Size], tied: dict[str, str]) -> dict[str, torch.Tensor]:
    """Read the official ``model.safetensors`` as float32 a1 weights, checked key by key and shape
    by shape against ``expected``; ``tied``: a1 key → the a1 key it is tied to (stored once)."""
    from safetensors import safe_open

    if not path.is_file():
        raise OfficialImportError(f"{path}: not found")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as err:  # safetensors raises several types for corrupt files
        raise OfficialImportError(f"{path}: unreadable safetensors file ({err})") from err
    out, unknown = {}, []
    with handle as f:
        for key in f.keys():
            name = a1_key(key)
            if name is None:
                unknown.append(key)
                continue
            out[name] = f.get_tensor(key).float().contiguous()  # one float32 copy per tensor, as read
    out = drop_patcher_buffers(out)
    for name, source in tied.items():
        if name not in out and source in out:
            out[name] = out[source].clone()  # the policy folder stores tied tensors as separate copies
    _check_keys(path, out, expected, unknown)
    return out


def _check_keys(path: Path, got: dict[str, torch.Tensor], expected: dict[str, torch.Size], unknown: list[str]) -> None:
    back = {new: old for old, new in PREFIXES}

    def official(name: str) -> str:
        for new, old in back.items():
            if name.startswith(new):
                return old + name[len(new):]
        return name

    problems = [f"unknown key {k}" for k in unknown[:5]]
    problems += [f"missing key {official(k)} (a1 {k}, shape {tuple(s)})" for k, s in expected.items() if k not in got][:5]
    problems += [f"unexpected key {official(k)}" for k in got if k not in expected][:5]
    problems += [f"{official(k)}: shape {tuple(v.shape)}, a1 {k} expects {tuple(expected[k])}"
                 for k, v in got.items() if k in expected and v.shape != expected[k]][:5]
    if problems:
        raise OfficialImportError(f"{path}: does not fit the a1 architecture: " + "; ".join(problems))


def fold_conventions(weights: dict[str, torch.Tensor], cfg: PolicyConfig) -> None:
    """Official flow time t = 1 − τ → a1's τ, in place: the time half of ``time_mlp_in`` re-expressed,
    the velocity output negated (the official target is ε − a, a1's a − ε)."""
    hidden = cfg.action.expert.hidden_size
    w = weights[TIME_IN]  # (H, 2H): [noisy-action features | time embedding]
    weights[TIME_IN] = torch.cat([w[:, :hidden], fold_mirrored_time(w[:, hidden:], *cfg.action.time_embedding_periods)], 1)
    for p in ("weight", "bias"):
        weights[ACTION_OUT + p] = -weights[ACTION_OUT + p]


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """a1 key → another a1 key holding the same parameter (tied embeddings, stored once officially)."""
    first: dict[int, str] = {}
    tied = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied[name], tied[first[id(p)]] = first[id(p)], name
        else:
            first[id(p)] = name
    return tied


# --- the import ---------------------------------------------------------------------------------
def _build_meta(cfg: PolicyConfig, tokenizer) -> torch.nn.Module:
    """The a1 model on the meta device (keys and shapes only). The backbone architecture comes from
    ``understanding.pretrained``'s config.json (its weights are not read) or the config's fields."""
    from transformers import AutoConfig

    from a1.model.policy import InternVLAA1
    from a1.model.understanding import backbone_config

    und = cfg.understanding
    with tempfile.TemporaryDirectory() as tmp:
        arch = AutoConfig.from_pretrained(und.pretrained) if und.pretrained else backbone_config(und, tokenizer)
        arch.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        build = dataclasses.replace(cfg, understanding=dataclasses.replace(und, pretrained=tmp))
        with torch.device("meta"):
            return InternVLAA1(build)


def _check_out(src: Path, out: Path, overwrite: bool) -> None:
    """Never write into the official folder, nor over a folder without ``overwrite``."""
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise OfficialImportError(f"{out}: the output must not be (inside) the official folder {src}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OfficialImportError(f"{out}: exists and is not empty (--overwrite replaces what the import writes)")


def _processor(official: dict[str, Any], src: Path) -> dict[str, Any]:
    """The frames the official policy was trained on: letterboxed to ``image_resolution``², m = 15."""
    side = official.get("image_resolution", [OFFICIAL_IMAGE_RESOLUTION] * 2)
    if not (isinstance(side, list) and len(side) == 2 and side[0] == side[1] and isinstance(side[0], int)):
        raise OfficialImportError(f"{src / 'config.json'}: image_resolution must be a square [S, S], got {side!r}")
    return {"image_size": side[0], "history": HISTORY, "geometry": "letterbox"}


def import_official(src: str | Path, out: str | Path, config: str | Path = "configs/pretrain_3b.yaml",
                    tokenizer_dir: str | Path | None = None, robot: RobotChoice | None = None,
                    overwrite: bool = False) -> Path:
    """Write the a1 policy folder ``out`` for the official checkpoint ``src``; returns ``out``."""
    from a1.policy_folder import write_policy_folder

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise OfficialImportError(f"{src}: not a folder")
    _check_out(src, out, overwrite)
    official = read_official_config(src)
    try:
        cfg = official_policy_config(policy_config(config))
    except (ConfigError, OSError) as err:
        raise OfficialImportError(f"{config}: {err}") from err
    check_settings(official, cfg, src, str(config))
    processor = _processor(official, src)
    name, norm = normalization(src, robot or RobotChoice())
    tok_dir = tokenizer_dir or cfg.understanding.pretrained
    if tok_dir is None:
        raise OfficialImportError(f"{config}: the import needs the checkpoint's tokenizer: --tokenizer DIR, or "
                                  "model.policy.understanding.pretrained")
    tokenizer = load_tokenizer(str(tok_dir))
    model = _build_meta(cfg, tokenizer)
    weights = map_weights(src / "model.safetensors", {k: v.shape for k, v in model.state_dict().items()},
                          tied_names(model))
    fold_conventions(weights, cfg)
    meta = {"version": a1.__version__, "source": f"official InternVLA-A1 checkpoint {src.name}",
            "global_step": 0, "ema": False}
    cfg.understanding.pretrained = str(tok_dir)  # recorded; the folder carries the backbone's config
    policy = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return write_policy_folder(out, weights, policy, {name: norm.to_dict()}, processor, meta, tokenizer,
                               model.understanding.backbone.config.to_dict())


def main(argv: list[str] | None = None) -> int:
    from a1.data.stats import parse_dims

    parser = argparse.ArgumentParser(prog="python -m a1.import_official", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="official checkpoint folder (model.safetensors, config.json, stats.json)")
    parser.add_argument("out", help="output a1 policy folder (new or empty, or with --overwrite)")
    parser.add_argument("--config", default="configs/pretrain_3b.yaml",
                        help="a1 config whose model.policy gives the architecture (default: %(default)s)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder (default: the config's understanding.pretrained folder)")
    parser.add_argument("--robot-type", default=None,
                        help="robot type in stats.json whose statistics to use (default: the only one)")
    parser.add_argument("--action-mode", choices=["delta", "absolute"], default=None,
                        help="actions are deltas to the state or absolute (default: train_config.json)")
    parser.add_argument("--absolute-dims", type=parse_dims, default=None,
                        help="with delta actions: action dims that stay absolute, e.g. 6,13 (default: the official "
                             "table per robot type)")
    parser.add_argument("--state-features", nargs="+", default=None,
                        help="stats.json features concatenated into the state (default: the official layout of "
                             "the robot type, else observation.state)")
    parser.add_argument("--action-features", nargs="+", default=None,
                        help="stats.json features concatenated into the action (default: the official layout, "
                             "else action)")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty OUT")
    args = parser.parse_args(argv)
    robot = RobotChoice(args.robot_type, args.action_mode, args.absolute_dims, args.state_features,
                        args.action_features)
    try:
        out = import_official(args.src, args.out, args.config, args.tokenizer, robot, args.overwrite)
    except OfficialImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"imported {args.src} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
