"""Typed configuration of the InternVLA-A1 model.

Every field's docstring is its ``--help`` text under LightningCLI. The shipped YAML files in
``configs/`` set every architecture field explicitly; the defaults below are the paper's 3B
settings where the paper fixes a value (k = 50 actions, K = 10 Euler steps, 32 padded dims,
τ ~ Beta(1.5, 1), three views, 4×4 foresight tokens per image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from a1.model.cosmos import CosmosConfig

Family = Literal["qwen3_vl", "internvl"]

#: The expert-block family that matches each understanding backbone (paper §3.4): Qwen3 blocks
#: next to Qwen3-VL (3B model), Qwen2/Qwen2.5 blocks next to InternVL3 (2B model).
BLOCK_FAMILY: dict[str, str] = {"qwen3_vl": "qwen3", "internvl": "qwen2"}


@dataclass
class UnderstandingConfig:
    """The understanding expert: a multimodal LLM from transformers."""

    family: Family = "qwen3_vl"
    """Backbone: ``qwen3_vl`` (Qwen3VLForConditionalGeneration, the 3B model) or ``internvl``
    (InternVLForConditionalGeneration, the 2B model)."""

    pretrained: str | None = None
    """Local folder (or hub id where a hub is reachable) of a pretrained model loaded with
    ``from_pretrained``; its tokenizer/processor are used too. ``None``: build the architecture
    below with random weights and a small local tokenizer."""

    text: dict[str, Any] = field(default_factory=dict)
    """Language-model architecture: keyword arguments of the transformers ``text_config``
    (hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
    intermediate_size, rope_parameters, …). Ignored when ``pretrained`` is set."""

    vision: dict[str, Any] = field(default_factory=dict)
    """Vision-tower architecture: keyword arguments of the transformers ``vision_config``.
    Ignored when ``pretrained`` is set."""

    model: dict[str, Any] = field(default_factory=dict)
    """Top-level keyword arguments of the transformers config (e.g. ``tie_word_embeddings``,
    ``downsample_ratio``). Ignored when ``pretrained`` is set."""

    image_size: int = 256
    """Side of the square image each view is resized to before the vision tower (Qwen3-VL's
    released preprocessor turns 224² inputs into 256² → 64 tokens; InternVL3 uses 448²)."""

    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    """Per-channel mean used to normalise [0, 1] pixels for the vision tower."""

    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    """Per-channel std used to normalise [0, 1] pixels for the vision tower."""

    max_text_tokens: int = 48
    """Instruction length in tokens (padded/truncated) — a fixed length keeps shapes static."""

    attention: Literal["bidirectional", "causal"] = "bidirectional"
    """Attention inside the understanding block: ``bidirectional`` as in the paper (§3.2), or
    ``causal`` as in the base MLLM (used to check faithfulness against transformers)."""

    deepstack: bool = True
    """Qwen3-VL DeepStack: add the vision tower's multi-level features to the first language
    layers, as Qwen3-VL itself does. The official InternVLA-A1 code computes them and discards
    them (its released weights were trained without), so imported official policies set ``false``.
    Ignored by InternVL (no DeepStack)."""

    rotary_precision: Literal["float32", "bfloat16"] = "float32"
    """Precision of the rotary inverse frequencies (language model and vision tower): ``float32``
    as the backbone computes them, or rounded to ``bfloat16`` as in the official InternVLA-A1
    model, which casts itself to bf16 at construction, buffers included — its released weights
    were trained with those rounded frequencies (they move positions ~300 by up to ~0.1 rad)."""

    positions: Literal["layout", "compact"] = "layout"
    """Rotary positions of the understanding tokens when a view is missing. ``layout``: every token
    keeps the position of its slot in the full layout (a missing view leaves a gap; positions never
    depend on which cameras a robot has). ``compact``: the official InternVLA-A1 inference rule —
    masked tokens (missing views, text padding) are compacted away before the backbone's position
    rule (Qwen3-VL ``get_rope_index``) and get position 1, so later tokens move up; generation,
    state and action tokens follow the last one. (Official *training* also compacts the generation
    tokens of a missing view; a1 trains with the inference layout.) Equal when every view is
    present."""


@dataclass
class ExpertConfig:
    """Decoder blocks (no embeddings) of the generation or the action expert.

    The block family follows the understanding backbone (Qwen3 blocks for ``qwen3_vl``, Qwen2
    blocks for ``internvl``). Experts share one attention per layer, so num_layers, num_heads,
    num_kv_heads and head_dim must equal the understanding expert's (checked at build time);
    hidden and intermediate sizes may differ.
    """

    hidden_size: int = 1024
    """Width of the expert's residual stream."""
    intermediate_size: int = 3072
    """Width of the expert's MLP."""
    num_layers: int = 28
    """Number of decoder blocks (must equal the understanding expert's)."""
    num_heads: int = 16
    """Attention (query) heads (must equal the understanding expert's)."""
    num_kv_heads: int = 8
    """Key/value heads for grouped-query attention (must equal the understanding expert's)."""
    head_dim: int = 128
    """Per-head width (must equal the understanding expert's)."""
    rms_norm_eps: float = 1e-6
    """Epsilon of the expert's RMSNorms."""
    pretrained: str | None = None
    """Optional local folder of a causal LM of the block family (e.g. Qwen3-0.6B) whose decoder
    blocks and final norm initialise this expert. ``None``: random initialisation."""


@dataclass
class GenerationConfig:
    """The generation expert and its Cosmos-latent foresight path (paper §3.2, Fig. 3)."""

    enabled: bool = True
    """``false`` removes the generation expert (the two-expert, pi0-like ablation)."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    """Decoder blocks of the generation expert."""
    tokenizer: CosmosConfig = field(default_factory=CosmosConfig)
    """The frozen Cosmos continuous image tokenizer (CI8x8)."""
    image_size: int = 256
    """Side of the square image given to the Cosmos tokenizer (256 → a 32×32 latent)."""
    token_grid: int = 4
    """Tokens per image side after compression: latent/token_grid is the conv kernel and stride
    (32×32 latents → 8×8 kernel → 4×4 = 16 tokens per image)."""
    num_frames: int = 2
    """Input timestamps per view (t−m and t)."""


@dataclass
class ActionConfig:
    """The action expert and flow matching (paper §3.2–3.3)."""

    expert: ExpertConfig = field(default_factory=ExpertConfig)
    """Decoder blocks of the action expert."""
    chunk_size: int = 50
    """k: action tokens predicted per observation."""
    max_dim: int = 32
    """State and action vectors are zero-padded to this many dims (a dim mask marks real ones)."""
    num_steps: int = 10
    """K: Euler steps from noise (τ = 0) to actions (τ = 1) at inference."""
    time_beta: list[float] = field(default_factory=lambda: [1.5, 1.0])
    """(α, β) of the Beta distribution of the noise level 1 − τ during training (τ = 0 noise,
    τ = 1 actions); (1.5, 1) favours noisier times as in pi0 and the public InternVLA-A1 code
    (see ``a1.model.flow``)."""
    time_embedding_periods: list[float] = field(default_factory=lambda: [4e-3, 4.0])
    """(min, max) periods of the sinusoidal embedding of τ."""


@dataclass
class PolicyConfig:
    """InternVLA-A1: understanding, generation and action experts in one Mixture-of-Transformers."""

    understanding: UnderstandingConfig = field(default_factory=UnderstandingConfig)
    """The understanding expert (multimodal LLM)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """The generation expert and foresight path."""
    action: ActionConfig = field(default_factory=ActionConfig)
    """The action expert and flow matching."""
    views: list[str] = field(default_factory=lambda: ["head", "left_wrist", "right_wrist"])
    """Camera views, in order (paper: head, left wrist, right wrist)."""
    gradient_checkpointing: bool = False
    """Recompute each MoT layer in the backward pass to save activation memory."""


COMPUTATION_KEYS: tuple[str, ...] = (
    "views",
    "understanding.family", "understanding.image_size", "understanding.image_mean", "understanding.image_std",
    "understanding.max_text_tokens", "understanding.attention", "understanding.deepstack",
    "understanding.positions", "understanding.rotary_precision",
    "generation.enabled", "generation.image_size", "generation.token_grid", "generation.num_frames",
    "action.chunk_size", "action.max_dim", "action.time_embedding_periods",
)
"""Settings that change what a policy's weights compute without changing their shapes: weights
trained under one value act differently under another, so loading them elsewhere must agree."""


def computation_diff(a: PolicyConfig, b: PolicyConfig) -> list[str]:
    """``key: a vs b`` for every `COMPUTATION_KEYS` setting where the two configs differ."""
    out = []
    for key in COMPUTATION_KEYS:
        va, vb = a, b
        for part in key.split("."):
            va, vb = getattr(va, part), getattr(vb, part)
        if va != vb:
            out.append(f"{key}: {va!r} vs {vb!r}")
    return out
