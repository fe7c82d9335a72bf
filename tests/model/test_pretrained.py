"""The pretrained-path route: real transformers folders written with save_pretrained load back."""

import dataclasses

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from a1.model.experts import ExpertBlocks
from a1.model.policy import InternVLAA1
from a1.testing import random_batch


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_understanding_loads_from_a_local_folder(family_cfg, tmp_path):
    torch.manual_seed(0)
    source = InternVLAA1(family_cfg)
    folder = tmp_path / family_cfg.understanding.family
    source.understanding.backbone.save_pretrained(folder)
    source.understanding.tokenizer.save_pretrained(folder)

    cfg = dataclasses.replace(family_cfg)
    cfg.understanding = dataclasses.replace(family_cfg.understanding, pretrained=str(folder), text={}, vision={}, model={})
    torch.manual_seed(1)  # different random init elsewhere: the backbone must come from disk
    loaded = InternVLAA1(cfg)
    _same_state(source.understanding.backbone, loaded.understanding.backbone)
    assert loaded.understanding.tokenizer.get_vocab() == source.understanding.tokenizer.get_vocab()
    obs = random_batch(cfg, 1).observation
    a = source.understanding.embed(obs.images[:, :, -1], obs.image_mask[:, :, -1], obs.tokens, obs.token_mask)
    b = loaded.understanding.embed(obs.images[:, :, -1], obs.image_mask[:, :, -1], obs.tokens, obs.token_mask)
    torch.testing.assert_close(a.hidden, b.hidden)
    assert torch.equal(a.positions, b.positions)


def test_wrong_family_folder_is_rejected(tmp_path):
    from tests.conftest import tiny_internvl, tiny_qwen

    source = InternVLAA1(tiny_internvl())
    source.understanding.backbone.save_pretrained(tmp_path)
    source.understanding.tokenizer.save_pretrained(tmp_path)
    cfg = tiny_qwen()
    cfg.understanding = dataclasses.replace(cfg.understanding, pretrained=str(tmp_path))
    with pytest.raises(ValueError, match="understanding.family='qwen3_vl'"):
        InternVLAA1(cfg)


@pytest.mark.parametrize("family", ["qwen3_vl", "internvl"])
def test_expert_blocks_initialise_from_a_causal_lm(family, tmp_path):
    from tests.conftest import tiny_qwen

    expert_cfg = tiny_qwen().action.expert
    common = dict(vocab_size=32, hidden_size=expert_cfg.hidden_size, intermediate_size=expert_cfg.intermediate_size,
                  num_hidden_layers=expert_cfg.num_layers, num_attention_heads=expert_cfg.num_heads,
                  num_key_value_heads=expert_cfg.num_kv_heads)
    if family == "qwen3_vl":
        lm = Qwen3ForCausalLM(Qwen3Config(head_dim=expert_cfg.head_dim, **common))
    else:
        lm = Qwen2ForCausalLM(Qwen2Config(**common))
    lm.save_pretrained(tmp_path)
    blocks = ExpertBlocks(dataclasses.replace(expert_cfg, pretrained=str(tmp_path)), family, "action.expert")
    _same_state(lm.model.layers, blocks.layers)
    _same_state(lm.model.norm, blocks.norm)
    bad = dataclasses.replace(expert_cfg, pretrained=str(tmp_path), num_layers=expert_cfg.num_layers + 1)
    with pytest.raises(ValueError, match="action.expert.pretrained"):
        ExpertBlocks(bad, family, "action.expert")


def test_pretrained_normalisation_must_match_the_config(tmp_path):
    import json

    from tests.conftest import tiny_qwen

    source = InternVLAA1(tiny_qwen())
    source.understanding.backbone.save_pretrained(tmp_path)
    source.understanding.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.48, 0.45, 0.41],
                                                                   "image_std": [0.27, 0.26, 0.28]}))
    cfg = tiny_qwen()
    cfg.understanding = dataclasses.replace(cfg.understanding, pretrained=str(tmp_path))
    with pytest.raises(ValueError, match="understanding.image_mean"):
        InternVLAA1(cfg)
