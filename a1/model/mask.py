"""The blockwise attention mask of InternVLA-A1 (paper §3.2).

The sequence is [understanding | generation | state | actions]. A cumulative segment mask
enforces understanding → generation → action: a token may attend to every token of its own
block and of earlier blocks, never to later ones. Understanding and generation blocks are
bidirectional inside; the state token is a block of its own (it sees itself and earlier
blocks); action tokens see the state, earlier blocks and each other. Padding (text padding,
missing views) is never attended to.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Block ids of the four segments.
UNDERSTANDING, GENERATION, STATE, ACTION = 0, 1, 2, 3


def block_ids(lengths: dict[int, int], device: torch.device | None = None) -> Tensor:
    """(L,) int64 block id per token for segments given as {block id: length}, in order."""
    parts = [torch.full((n,), b, dtype=torch.long, device=device) for b, n in lengths.items()]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=device)


def attention_mask(
    blocks: Tensor, valid: Tensor, causal_understanding: bool = False
) -> Tensor:
    """Boolean mask: ``True`` where query i may attend key j.

    Args:
        blocks: (L,) int64 block id of each token (non-decreasing).
        valid: (B, L) bool, ``False`` for padding / missing-view tokens.
        causal_understanding: make the understanding block causal (as in the base MLLM).

    Returns:
        (B, L, L) bool. Every row also allows its own position, so a padding query never has
        an empty row (its output is ignored).
    """
    L = blocks.shape[0]
    allowed = blocks[None, :] <= blocks[:, None]  # (L, L): key block ≤ query block
    if causal_understanding:
        und = blocks == UNDERSTANDING
        later = torch.ones(L, L, dtype=torch.bool, device=blocks.device).triu(1)
        allowed = allowed & ~(later & und[:, None] & und[None, :])
    mask = allowed[None] & valid[:, None, :]  # (B, L, L)
    eye = torch.eye(L, dtype=torch.bool, device=blocks.device)
    return mask | eye[None]
