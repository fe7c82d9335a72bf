"""Our MoT loop reproduces transformers' own language-model hidden states.

With the generation/action streams empty and the understanding block causal (as in the base
MLLM), the understanding stream must equal ``backbone.model(...).last_hidden_state`` of the
transformers model — including Qwen3-VL's M-RoPE positions and DeepStack injection — within fp32
tolerance. Appending generation/action tokens must not change the prefix outputs.
"""

import dataclasses

import torch

from a1.model.mask import UNDERSTANDING, attention_mask, block_ids
from a1.model.mot import ACT, UND
from a1.model.policy import InternVLAA1
from a1.model.prompt import IMAGE_TOKENS, token_id
from a1.testing import random_batch


def _causal(cfg):
    cfg.understanding = dataclasses.replace(cfg.understanding, attention="causal")
    return cfg


def _ours(model, obs):
    und = model.understanding.embed(obs.images[:, :, -1], obs.image_mask[:, :, -1], obs.tokens, obs.token_mask)
    blocks = block_ids({UNDERSTANDING: und.hidden.shape[1]})
    causal = model.cfg.understanding.attention == "causal"
    mask = attention_mask(blocks, und.valid, causal_understanding=causal)
    rope = model.understanding.rotary(und.hidden, und.positions)
    outs, _ = model.mot({UND: und.hidden}, mask, rope, deepstack=und.deepstack)
    return outs[UND], und.valid


def _transformers(model, obs):
    und = model.understanding
    B = obs.tokens.shape[0]
    ids = torch.cat([und.image_ids.expand(B, -1), obs.tokens], dim=1)
    attn = torch.cat([torch.ones(B, und.num_image_tokens, dtype=torch.long), obs.token_mask.long()], 1)
    pixels, grid = und.pixel_values(obs.images[:, :, -1].flatten(0, 1))
    kwargs = dict(input_ids=ids, pixel_values=pixels, attention_mask=attn)
    if und.cfg.family == "qwen3_vl":
        image_id = token_id(und.tokenizer, IMAGE_TOKENS["qwen3_vl"][1])
        kwargs |= dict(image_grid_thw=grid, mm_token_type_ids=(ids == image_id).int())
    return und.backbone.model(**kwargs).last_hidden_state


def test_understanding_stream_equals_transformers(family_cfg):
    model = InternVLAA1(_causal(family_cfg)).eval()
    obs = random_batch(family_cfg, 3).observation  # instructions of different lengths → padding
    assert not obs.token_mask.all(), "the test needs text padding"
    with torch.no_grad():
        ours, valid = _ours(model, obs)
        ref = _transformers(model, obs)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours[valid], ref[valid], rtol=1e-5, atol=1e-5)


def test_deepstack_is_exercised():
    from tests.conftest import tiny_qwen

    model = InternVLAA1(tiny_qwen()).eval()
    obs = random_batch(model.cfg, 1).observation
    und = model.understanding.embed(obs.images[:, :, -1], obs.image_mask[:, :, -1], obs.tokens, obs.token_mask)
    assert len(und.deepstack) == 2
    slots = model.understanding.image_slots
    assert und.deepstack[0][:, slots].abs().sum() > 0
    rest = torch.ones(und.hidden.shape[1], dtype=torch.bool)
    rest[slots] = False
    assert und.deepstack[0][:, rest].abs().sum() == 0


def test_appending_generation_and_action_tokens_leaves_prefix_unchanged(family_cfg):
    for attention in ("causal", "bidirectional"):
        cfg = dataclasses.replace(family_cfg)
        cfg.understanding = dataclasses.replace(family_cfg.understanding, attention=attention)
        torch.manual_seed(0)
        model = InternVLAA1(cfg).eval()
        batch = random_batch(cfg, 2)
        obs = batch.observation
        with torch.no_grad():
            alone, valid = _ours(model, obs)
            prefix = model.prefix(obs)
            full_mask = model._mask(prefix, True)
            suffix = model.action_head.embed(obs.state, batch.actions, torch.full((2,), 0.3))
            pos = torch.cat([prefix.positions, model._positions(prefix.next_position, suffix.shape[1])], 2)
            outs, _ = model.mot({**prefix.streams, ACT: suffix}, full_mask, model._rope(suffix, pos),
                                deepstack=prefix.deepstack)
        torch.testing.assert_close(outs[UND][valid], alone[valid], rtol=1e-5, atol=1e-5)
