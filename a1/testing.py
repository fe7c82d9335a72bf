"""Random, correctly shaped batches for tests, benchmarks and notebooks (no data on disk)."""

from __future__ import annotations

import torch

from a1.batch import Batch, Observation
from a1.model.config import PolicyConfig
from a1.model.prompt import load_tokenizer, tokenize

INSTRUCTIONS = [
    "fold the towel",
    "pick up the red cube and place it in the bowl",
    "open the drawer",
    "grab the box riding on the conveyor",
]


def random_batch(
    cfg: PolicyConfig, batch_size: int, image_size: int = 64, state_dims: int = 14, seed: int = 0
) -> Batch:
    """A batch with random pixels, real tokenised instructions and ``state_dims`` real dims."""
    g = torch.Generator().manual_seed(seed)
    V, T = len(cfg.views), cfg.generation.num_frames
    k, D = cfg.action.chunk_size, cfg.action.max_dim
    tok = load_tokenizer(cfg.understanding.pretrained)
    texts = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(batch_size)]
    tokens, token_mask = tokenize(tok, texts, cfg.understanding.max_text_tokens)
    dim_mask = torch.zeros(batch_size, D, dtype=torch.bool)
    dim_mask[:, :state_dims] = True
    state = torch.randn(batch_size, D, generator=g) * dim_mask
    obs = Observation(
        images=torch.randint(0, 256, (batch_size, V, T, 3, image_size, image_size), generator=g, dtype=torch.uint8),
        image_mask=torch.ones(batch_size, V, T, dtype=torch.bool),
        tokens=tokens,
        token_mask=token_mask,
        state=state,
        state_mask=dim_mask.clone(),
    )
    return Batch(
        observation=obs,
        future_images=torch.randint(0, 256, (batch_size, V, 3, image_size, image_size), generator=g, dtype=torch.uint8),
        future_mask=torch.ones(batch_size, V, dtype=torch.bool),
        actions=torch.randn(batch_size, k, D, generator=g) * dim_mask[:, None],
        action_mask=torch.ones(batch_size, k, dtype=torch.bool),
        action_dim_mask=dim_mask,
        has_action=torch.ones(batch_size, dtype=torch.bool),
        dataset_id=torch.zeros(batch_size, dtype=torch.long),
    )
