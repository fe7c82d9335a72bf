"""The generation and action experts: decoder blocks of the backbone's LLM family.

Qwen3 blocks (with q/k RMSNorm) next to Qwen3-VL, Qwen2 blocks (q/k/v bias; Qwen2.5 uses the
same architecture) next to InternVL3 — built from transformers' own decoder-layer classes, with
no embeddings or LM head: their inputs come from the foresight path and the action head.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm
from transformers.models.qwen3.modeling_qwen3 import Qwen3DecoderLayer, Qwen3RMSNorm

from a1.model.config import BLOCK_FAMILY, ExpertConfig

_BLOCKS = {
    "qwen3": (Qwen3Config, Qwen3DecoderLayer, Qwen3RMSNorm),
    "qwen2": (Qwen2Config, Qwen2DecoderLayer, Qwen2RMSNorm),
}


def block_config(cfg: ExpertConfig, block_family: str, name: str = "expert"):
    """The transformers config describing one expert's blocks."""
    config_cls = _BLOCKS[block_family][0]
    kwargs = dict(
        vocab_size=1,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        rms_norm_eps=cfg.rms_norm_eps,
        hidden_act="silu",
    )
    if block_family == "qwen3":
        kwargs["head_dim"] = cfg.head_dim
    elif cfg.hidden_size != cfg.num_heads * cfg.head_dim:
        raise ValueError(
            f"{name}: Qwen2 blocks need hidden_size = num_heads × head_dim, got {cfg.hidden_size} ≠ "
            f"{cfg.num_heads} × {cfg.head_dim}"
        )
    config = config_cls(**kwargs)
    config._attn_implementation = "sdpa"
    return config


class ExpertBlocks(nn.Module):
    """``num_layers`` decoder blocks and a final RMSNorm, run by the MoT loop.

    Input/output of the stream: (B, L, hidden_size).
    """

    def __init__(self, cfg: ExpertConfig, family: str, name: str) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_family = BLOCK_FAMILY[family]
        _, layer_cls, norm_cls = _BLOCKS[self.block_family]
        config = block_config(cfg, self.block_family, name)
        self.layers = nn.ModuleList(layer_cls(config, i) for i in range(cfg.num_layers))
        self.norm = norm_cls(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.apply(_init_weights)
        if cfg.pretrained is not None:
            self.load_pretrained(cfg.pretrained, name)

    def load_pretrained(self, path: str, name: str) -> None:
        """Copy the decoder blocks and final norm of a causal LM (e.g. Qwen3-0.6B) from ``path``."""
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).model
        if len(lm.layers) != len(self.layers):
            raise ValueError(
                f"{name}.pretrained={path!r} has {len(lm.layers)} layers, config says {len(self.layers)}"
            )
        state = {f"layers.{k}": v for k, v in lm.layers.state_dict().items()}
        state |= {f"norm.{k}": v for k, v in lm.norm.state_dict().items()}
        self.load_state_dict(state, strict=True)


def _init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Random initialisation as transformers does for these blocks (normal 0.02, zero bias)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
