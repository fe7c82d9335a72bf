"""Shared fixtures: tiny configs of the real architectures (random weights, no download)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from a1.config import from_dict, policy_config
from a1.data.assign import DatasetSpec
from a1.model.config import PolicyConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

#: The paper's pre-training mixture (Table 3): name, frames, sampling weight.
TABLE3 = [
    DatasetSpec("InternData-A1", 396_000_000, 0.64),
    DatasetSpec("RoboTwin", 17_000_000, 0.08),
    DatasetSpec("AgiBot-World (Beta)", 206_000_000, 0.18),
    DatasetSpec("RoboMind", 5_000_000, 0.02),
    DatasetSpec("EgoDex", 68_000_000, 0.08),
]


def tiny_qwen() -> PolicyConfig:
    """configs/tiny.yaml: Qwen3-VL (+DeepStack) understanding, Qwen3 expert blocks."""
    return policy_config(CONFIGS / "tiny.yaml")


def tiny_internvl() -> PolicyConfig:
    """The 2B architecture (InternVL + Qwen2 blocks) shrunk like tiny.yaml, untied LM head."""
    base = tiny_qwen()
    und = {
        "family": "internvl",
        "image_size": 56,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "max_text_tokens": 24,
        "attention": "bidirectional",
        "model": {"tie_word_embeddings": False, "downsample_ratio": 0.5},
        "text": {
            "vocab_size": 272, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
        "vision": {
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": [56, 56], "patch_size": [14, 14],
        },
    }
    cfg = copy.deepcopy(base)
    cfg.understanding = from_dict(type(base.understanding), und, "understanding")
    # Qwen2 blocks need hidden = heads × head_dim: tiny.yaml's 64 = 4 × 16 already holds.
    return cfg


@pytest.fixture(params=["qwen3_vl", "internvl"])
def family_cfg(request) -> PolicyConfig:
    torch.manual_seed(0)
    return tiny_qwen() if request.param == "qwen3_vl" else tiny_internvl()


def read_video(path: Path) -> np.ndarray:
    """Every frame of an mp4 as (N, H, W, 3) uint8, decoded by PyAV directly (an independent check of
    what a1's writers wrote)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
