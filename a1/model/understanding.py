"""The understanding expert: a real transformers multimodal LLM (paper §3.2).

Qwen3-VL (``Qwen3VLForConditionalGeneration``) for the 3B model, InternVL3
(``InternVLForConditionalGeneration``) for the 2B model. The library's own vision tower,
projector and text embeddings encode the inputs (``get_image_features``); the language layers
are run by our Mixture-of-Transformers loop (``a1.model.mot``) so that the generation and
action experts can share their attention. This module prepares that loop's understanding
stream: embeddings, M-RoPE positions, DeepStack features and the padding mask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

from a1.model.config import UnderstandingConfig
from a1.model.prompt import IMAGE_TOKENS, image_layout, load_tokenizer, token_id

_MODELS = {"qwen3_vl": Qwen3VLForConditionalGeneration, "internvl": InternVLForConditionalGeneration}


@dataclass
class UnderstandingInputs:
    """The understanding stream, ready for the MoT loop."""

    hidden: Tensor
    """(B, Lu, D) input embeddings (image features scattered into placeholder slots)."""
    valid: Tensor
    """(B, Lu) bool: False for text padding and for the tokens of missing views."""
    positions: Tensor
    """(3, B, Lu) int64 rotary positions (M-RoPE t/h/w; three equal rows for 1-D RoPE)."""
    next_position: Tensor
    """(B,) int64: first position after the last valid understanding token."""
    deepstack: list[Tensor]
    """Qwen3-VL DeepStack: per early LM layer, (B, Li_img, D) features added to the image
    slots after that layer (empty for InternVL)."""


def _build_backbone(cfg: UnderstandingConfig, tokenizer) -> nn.Module:
    """The transformers model: pretrained from ``cfg.pretrained`` or random from the fields."""
    cls = _MODELS[cfg.family]
    if cfg.pretrained is not None:
        found = AutoConfig.from_pretrained(cfg.pretrained).model_type
        if found != cls.config_class.model_type:
            raise ValueError(
                f"understanding.pretrained={cfg.pretrained!r} is a {found!r} model, but "
                f"understanding.family={cfg.family!r} needs {cls.config_class.model_type!r}"
            )
        _check_preprocessor(cfg)
        if not _has_weights(Path(cfg.pretrained)):  # an architecture-only folder (exported policies)
            config = AutoConfig.from_pretrained(cfg.pretrained)
            config._attn_implementation = "sdpa"
            return cls(config)
        return cls.from_pretrained(cfg.pretrained, dtype=torch.float32)
    config = backbone_config(cfg, tokenizer)
    config._attn_implementation = "sdpa"
    return cls(config)


def backbone_config(cfg: UnderstandingConfig, tokenizer):
    """The transformers config of a backbone described by the fields of ``cfg`` (not
    ``pretrained``), with the special-token ids of ``tokenizer``."""
    vocab = cfg.text.get("vocab_size")
    if vocab is None or vocab < len(tokenizer):
        raise ValueError(
            f"understanding.text.vocab_size must be set and ≥ the tokenizer size {len(tokenizer)}"
        )
    _, image, _ = IMAGE_TOKENS[cfg.family]
    ids = {"image_token_id": token_id(tokenizer, image)}
    if cfg.family == "qwen3_vl":
        start, _, end = IMAGE_TOKENS[cfg.family]
        ids |= {
            "vision_start_token_id": token_id(tokenizer, start),
            "vision_end_token_id": token_id(tokenizer, end),
            "video_token_id": token_id(tokenizer, "<|video_pad|>"),
        }
        return Qwen3VLConfig(text_config=dict(cfg.text), vision_config=dict(cfg.vision), **ids, **cfg.model)
    return InternVLConfig(text_config=dict(cfg.text), vision_config=dict(cfg.vision), **ids, **cfg.model)


def _has_weights(folder: Path) -> bool:
    """A local folder with transformers weight files (a hub id counts as having them)."""
    if not folder.is_dir():
        return True
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) or any(folder.glob("*.index.json"))


def _check_preprocessor(cfg: UnderstandingConfig) -> None:
    """A pretrained folder's image processor must normalise pixels as the config says."""
    path = Path(cfg.pretrained) / "preprocessor_config.json"
    if not path.is_file():
        return
    proc = json.loads(path.read_text())
    for key in ("image_mean", "image_std"):
        want, have = proc.get(key), getattr(cfg, key)
        if want is not None and any(abs(a - b) > 1e-6 for a, b in zip(want, have)):
            raise ValueError(f"understanding.{key}={have} differs from {path} ({key}={want})")


@torch.no_grad()
def _round_rotary_to_bf16(backbone: nn.Module) -> None:
    """Round every rotary ``inv_freq`` (language model, vision tower) to bf16 values, in place."""
    for module in backbone.modules():
        for name in ("inv_freq", "original_inv_freq"):
            value = getattr(module, name, None)
            if isinstance(value, Tensor) and value.is_floating_point():
                value.copy_(value.to(torch.bfloat16).to(value.dtype))


class UnderstandingExpert(nn.Module):
    """Wraps the transformers MLLM; exposes its LM layers to the MoT loop."""

    def __init__(self, cfg: UnderstandingConfig, num_views: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_views = num_views
        self.tokenizer = load_tokenizer(cfg.pretrained)
        self.backbone = _build_backbone(cfg, self.tokenizer)
        if cfg.rotary_precision == "bfloat16":
            _round_rotary_to_bf16(self.backbone)
        self.tokens_per_image = self._tokens_per_image()
        with torch.device("cpu"):  # static layout; computed on CPU even when built on "meta"
            ids, view = image_layout(self.tokenizer, cfg.family, num_views, self.tokens_per_image)
            image_id = token_id(self.tokenizer, IMAGE_TOKENS[cfg.family][1])
            slots = (ids == image_id).nonzero()[:, 0]
        self.register_buffer("image_ids", ids, persistent=False)  # (Li,)
        self.register_buffer("image_view", view, persistent=False)  # (Li,)
        self.register_buffer("image_slots", slots, persistent=False)  # (V·n,) image placeholder slots
        with torch.device("cpu"):  # every token kept: the full layout (all views, text unpadded)
            positions = self._positions_of(torch.ones(ids.shape[0] + cfg.max_text_tokens, dtype=torch.bool))
        self.register_buffer("layout_positions", positions, persistent=False)  # (3, Li + Lt)
        self._compact_cache: dict[bytes, Tensor] = {}  # valid pattern → positions (``compact``)
        # The library's own patch layout for Qwen-VL vision towers (used in pixel_values).
        self._patchifier = Qwen2VLImageProcessor() if cfg.family == "qwen3_vl" else None
        mean, std = torch.tensor(cfg.image_mean), torch.tensor(cfg.image_std)
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)

    # --- the pieces the MoT loop runs -------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        return self.backbone.model.language_model

    @property
    def layers(self) -> nn.ModuleList:
        return self.language_model.layers

    @property
    def norm(self) -> nn.Module:
        return self.language_model.norm

    @property
    def text_config(self):
        return self.backbone.config.text_config

    @property
    def head_dim(self) -> int:
        c = self.text_config
        return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads

    @property
    def num_image_tokens(self) -> int:
        """Li: tokens of the image part (all views, with their start/end tokens)."""
        return int(self.image_ids.shape[0])

    def rotary(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin), each (B, L, head_dim), for (3, B, L) positions."""
        rotary = self.language_model.rotary_emb
        if self.cfg.family == "qwen3_vl":
            return rotary(x, positions)
        return rotary(x, positions[0])

    def freeze(self, part: str) -> None:
        """Stop training ``part`` of the backbone: ``vision`` (the vision tower and its projector
        into the language model) or ``all`` (the whole multimodal LLM)."""
        model = self.backbone.model
        if part == "all":
            modules = [self.backbone]
        elif part == "vision":
            tower = getattr(model, "visual", None) or model.vision_tower  # Qwen3-VL / InternVL
            modules = [tower, getattr(model, "multi_modal_projector", None)]
        else:
            raise ValueError(f"freeze: unknown part {part!r} (parts: 'vision', 'all')")
        for module in modules:
            if module is not None:
                module.requires_grad_(False)

    def unused_parameter_names(self) -> list[str]:
        """Parameters that can never receive a gradient in InternVLA-A1.

        Later experts read the understanding stream only through its keys and values, so the
        last LM layer's query/output projections, post-attention norm and MLP, the final norm,
        an untied LM head, and DeepStack levels added after the last layer (every level when
        ``deepstack`` is off) are never on a loss path. They stay in the module (pretrained
        checkpoints load strictly; the parameter count matches Table 1) but are frozen.
        """
        names = ["model.language_model.norm."]
        last = f"model.language_model.layers.{len(self.layers) - 1}."
        names += [last + p for p in ("self_attn.q_proj.", "self_attn.q_norm.", "self_attn.o_proj.",
                                     "post_attention_layernorm.", "mlp.")]
        if not self.backbone.config.tie_word_embeddings:
            names.append("lm_head.")
        if self.cfg.family == "qwen3_vl":  # DeepStack level i is added after LM layer i
            levels = len(self.backbone.config.vision_config.deepstack_visual_indexes)
            first = len(self.layers) - 1 if self.cfg.deepstack else 0
            names += [f"model.visual.deepstack_merger_list.{i}." for i in range(first, levels)]
        return [n for n, _ in self.backbone.named_parameters() if n.startswith(tuple(names))]

    # --- inputs -----------------------------------------------------------------------------
    def _tokens_per_image(self) -> int:
        S = self.cfg.image_size
        vc = self.backbone.config.vision_config
        if self.cfg.family == "qwen3_vl":
            unit = vc.patch_size * vc.spatial_merge_size
            if S % unit:
                raise ValueError(f"understanding.image_size={S} must be a multiple of {unit}")
            return (S // unit) ** 2
        patch = vc.patch_size[0] if isinstance(vc.patch_size, (list, tuple)) else vc.patch_size
        r = self.backbone.config.downsample_ratio
        side = S // patch
        if S % patch or side * r != int(side * r) or list(vc.image_size) != [S, S]:
            raise ValueError(
                f"understanding.image_size={S} must equal vision image_size {vc.image_size} "
                f"and be a multiple of patch {patch}"
            )
        return int(side * r) ** 2

    def _grid(self) -> tuple[int, int]:
        vc = self.backbone.config.vision_config
        return self.cfg.image_size // vc.patch_size, vc.spatial_merge_size

    def pixel_values(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """(N, 3, H, W) uint8 → the vision tower's input (and Qwen3-VL's grid_thw)."""
        S = self.cfg.image_size
        x = images.float().div(255.0)
        if x.shape[-2:] != (S, S):
            x = F.interpolate(x, size=(S, S), mode="bicubic", antialias=True, align_corners=False)
        x = (x - self.pixel_mean) / self.pixel_std
        if self.cfg.family != "qwen3_vl":
            return x, None
        vc = self.backbone.config.vision_config
        patches, gh, gw = self._patchifier.patchify(
            x, vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
        )  # (N, gh*gw, C*tp*p*p)
        grid = torch.tensor([[1, gh, gw]] * x.shape[0], device=x.device)
        return patches.flatten(0, 1), grid

    def image_features(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, V, 3, H, W) uint8 → ((B, V·n, D) features, DeepStack list of (B, V·n, D))."""
        B, V = images.shape[:2]
        pixels, grid = self.pixel_values(images.flatten(0, 1))
        model = self.backbone.model
        if self.cfg.family == "qwen3_vl":
            out = model.get_image_features(pixels, grid, return_dict=True)
            feats = torch.cat(out.pooler_output).view(B, V * self.tokens_per_image, -1)
            deep = [torch.cat(f).view(B, V * self.tokens_per_image, -1) for f in out.deepstack_features]
            return feats, deep
        out = model.get_image_features(pixel_values=pixels, return_dict=True)
        return out.pooler_output.reshape(B, V * self.tokens_per_image, -1), []

    def embed(self, images: Tensor, image_mask: Tensor, tokens: Tensor, token_mask: Tensor) -> UnderstandingInputs:
        """Build the understanding stream.

        Args:
            images: (B, V, 3, H, W) uint8, the views at time t.
            image_mask: (B, V) bool, the view exists.
            tokens: (B, Lt) int64 instruction tokens, Lt = max_text_tokens.
            token_mask: (B, Lt) bool.
        """
        B, Lt = tokens.shape
        if Lt != self.cfg.max_text_tokens:
            raise ValueError(f"tokens: expected {self.cfg.max_text_tokens} tokens, got {Lt}")
        feats, deep = self.image_features(images)
        embed = self.backbone.get_input_embeddings()
        img = embed(self.image_ids).unsqueeze(0).expand(B, -1, -1)  # (B, Li, D)
        img = img.index_copy(1, self.image_slots, feats.to(img.dtype))
        hidden = torch.cat([img, embed(tokens)], dim=1)  # (B, Lu, D)
        valid = torch.cat([image_mask[:, self.image_view], token_mask], dim=1)
        if self.cfg.positions == "compact":
            positions = self.compact_positions(valid)
            next_position = positions.masked_fill(~valid, 0).amax(dim=(0, 2)) + 1
        else:
            positions = self.layout_positions.unsqueeze(1).expand(3, B, -1)
            text_start = self.layout_positions[0, self.num_image_tokens]
            next_position = text_start + token_mask.sum(dim=1)
        deep = [self._scatter(d, hidden.shape[1]) for d in deep] if self.cfg.deepstack else []
        return UnderstandingInputs(hidden, valid, positions, next_position, deep)

    def compact_positions(self, valid: Tensor) -> Tensor:
        """(B, Lu) bool → (3, B, Lu) int64 positions with masked tokens compacted away: the
        backbone's own position rule (Qwen3-VL ``get_rope_index``; 1-D otherwise) applied to the
        valid tokens only, and position 1 for masked tokens (the official InternVLA-A1 rule)."""
        out = torch.ones(3, *valid.shape, dtype=torch.long)
        for b, row in enumerate(valid.cpu()):
            key = row.numpy().tobytes()
            if key not in self._compact_cache:
                if len(self._compact_cache) >= 4096:  # right-padded text: ≤ 2^V·(Lt + 1) patterns in practice
                    self._compact_cache.clear()
                self._compact_cache[key] = self._positions_of(row)
            out[:, b, row] = self._compact_cache[key]
        return out.to(valid.device)

    def _positions_of(self, keep: Tensor) -> Tensor:
        """(3, n) positions of the n kept tokens of the full layout (keep: (Lu,) bool, CPU)."""
        n = int(keep.sum())
        if self.cfg.family != "qwen3_vl":
            return torch.arange(n).expand(3, n).clone()
        text = torch.zeros(self.cfg.max_text_tokens, dtype=torch.long)
        ids = torch.cat([self.image_ids.cpu(), text])[keep][None]  # (1, n)
        image_id = token_id(self.tokenizer, IMAGE_TOKENS[self.cfg.family][1])
        side, merge = self._grid()
        views = int((ids == image_id).sum()) // self.tokens_per_image
        grid = torch.tensor([[1, side, side]] * views, dtype=torch.long).reshape(-1, 3)
        pos, _ = self.backbone.model.get_rope_index(
            ids, mm_token_type_ids=(ids == image_id).int(), image_grid_thw=grid if views else None
        )
        return pos[:, 0].cpu()

    def _scatter(self, feats: Tensor, length: int) -> Tensor:
        """(B, n, D) image-slot features → (B, length, D) zeros elsewhere (DeepStack add)."""
        out = feats.new_zeros(feats.shape[0], length, feats.shape[-1])
        return out.index_copy(1, self.image_slots, feats)
