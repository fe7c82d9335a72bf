"""InternVLA-A1 end to end on tiny configs: losses, masks, gradients, KV cache, ablation."""

import dataclasses

import pytest
import torch

from a1.model.policy import InternVLAA1, PolicyLosses, joint_loss, masked_mean
from a1.testing import random_batch
from tests.conftest import tiny_qwen


def test_losses_are_per_sample_with_validity(family_cfg):
    model = InternVLAA1(family_cfg)
    batch = random_batch(family_cfg, 3)
    batch.has_action[1] = False  # human video: no actions → L_gen only
    batch.future_mask[2] = False  # no future frame → L_act only
    out = model(batch)
    assert out.act.shape == out.gen.shape == (3,)
    assert out.act_valid.tolist() == [True, False, True]
    assert out.gen_valid.tolist() == [True, True, False]
    assert torch.isfinite(out.act).all() and torch.isfinite(out.gen).all()


def test_action_loss_is_masked_mse_of_the_velocity():
    cfg = tiny_qwen()
    torch.manual_seed(0)
    model = InternVLAA1(cfg)
    batch = random_batch(cfg, 2)
    batch.action_mask[0, 8:] = False  # episode ends 8 steps into the chunk
    batch.action_dim_mask[1, 7:] = False  # a 7-dim robot
    noise, tau = torch.randn_like(batch.actions), torch.tensor([0.2, 0.7])
    seen = {}
    model.action_head.action_out.register_forward_hook(lambda m, i, o: seen.update(v=o.detach()))
    out = model(batch, noise=noise, tau=tau)
    err = (seen["v"] - (batch.actions - noise)) ** 2  # target velocity u = a − ε
    m = batch.action_mask[:, :, None] & batch.action_dim_mask[:, None, :]
    expected = torch.stack([err[b][m[b]].mean() for b in range(2)])
    torch.testing.assert_close(out.act, expected)
    batch.action_dim_mask[:] = False
    none = model(batch, noise=noise, tau=tau)
    assert torch.equal(none.act, torch.zeros(2)) and not none.act_valid.any()


def test_joint_loss_weights_generation_by_lambda():
    losses = PolicyLosses(
        act=torch.tensor([1.0, 3.0, 100.0]),
        gen=torch.tensor([10.0, 1000.0, 30.0]),
        act_valid=torch.tensor([True, True, False]),
        gen_valid=torch.tensor([True, False, True]),
    )
    assert joint_loss(losses, 0.01).item() == pytest.approx(0.01 * 20.0 + 2.0)
    assert masked_mean(torch.ones(2), torch.zeros(2, dtype=torch.bool)).item() == 0.0


def _frozen_names(model):
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def test_gradients_reach_every_trainable_parameter(family_cfg):
    model = InternVLAA1(family_cfg)
    batch = random_batch(family_cfg, 2)
    joint_loss(model(batch), 0.01).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    frozen = _frozen_names(model)
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    tokenizer = {n for n in frozen if n.startswith("foresight.tokenizer.")}
    assert tokenizer == {n for n, _ in model.named_parameters() if n.startswith("foresight.tokenizer.")}
    unused = {"understanding.backbone." + n for n in model.understanding.unused_parameter_names()}
    assert frozen == tokenizer | unused


def test_each_loss_alone_reaches_its_expert():
    cfg = tiny_qwen()
    model = InternVLAA1(cfg)
    batch = random_batch(cfg, 2)
    out = model(batch)
    out.gen.mean().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.action.parameters())
    assert all(p.grad is not None and p.grad.any() for p in model.generation.parameters())
    model.zero_grad()
    out.act.mean().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.action.parameters())


def test_kv_cached_sampling_equals_full_recompute(family_cfg):
    model = InternVLAA1(family_cfg).eval()
    obs = random_batch(family_cfg, 2).observation
    obs.image_mask[1, 2] = False  # a missing view
    noise = torch.randn(2, family_cfg.action.chunk_size, family_cfg.action.max_dim)
    cached = model.sample_actions(obs, noise=noise)
    full = model.sample_actions(obs, noise=noise, use_cache=False)
    assert cached.shape == noise.shape
    assert (cached - full).abs().max().item() <= 1e-5
    assert not torch.allclose(cached, noise)


def test_foresight_decode_returns_images():
    cfg = tiny_qwen()
    model = InternVLAA1(cfg).eval()
    obs = random_batch(cfg, 2).observation
    noise = torch.randn(2, cfg.action.chunk_size, cfg.action.max_dim)
    actions = model.sample_actions(obs, noise=noise, num_steps=2)
    frames = model.foresight_frames(obs)
    ctx = model.prepare(obs, foresight=True)  # one prefix pass for both (how validation does it)
    assert torch.equal(model.sample_actions(obs, noise=noise, num_steps=2, context=ctx), actions)
    assert torch.equal(model.foresight.decode(ctx.latent), frames)
    assert isinstance(actions, torch.Tensor) and actions.shape == (2, cfg.action.chunk_size, cfg.action.max_dim)
    assert frames.shape == (2, 3, 3, cfg.generation.image_size, cfg.generation.image_size)
    assert frames.dtype == torch.uint8


def test_ablation_without_generation_expert():
    cfg = tiny_qwen()
    cfg.generation = dataclasses.replace(cfg.generation, enabled=False)
    model = InternVLAA1(cfg)
    assert model.generation is None and model.foresight is None and model.mot.names == ["und", "act"]
    batch = random_batch(cfg, 2)
    out = model(batch)
    assert not out.gen_valid.any()
    joint_loss(out, 0.01).backward()
    assert model.sample_actions(batch.observation, num_steps=2).shape == batch.actions.shape
    with pytest.raises(ValueError, match="generation expert"):
        model.foresight_frames(batch.observation)


def test_incompatible_heads_are_rejected():
    cfg = tiny_qwen()
    cfg.action = dataclasses.replace(cfg.action, expert=dataclasses.replace(cfg.action.expert, num_kv_heads=4))
    with pytest.raises(ValueError, match="action.expert.num_kv_heads=4"):
        InternVLAA1(cfg)


def test_bad_batch_names_the_field():
    cfg = tiny_qwen()
    model = InternVLAA1(cfg)
    batch = random_batch(cfg, 2)
    batch.actions = batch.actions[:, :5]
    with pytest.raises(ValueError, match="actions: expected shape"):
        model(batch)
    batch = random_batch(cfg, 2)
    batch.observation.state[0, 0] = float("nan")
    with pytest.raises(ValueError, match="state: contains NaN"):
        model(batch)


def test_gradient_checkpointing_gives_the_same_losses_and_gradients():
    cfg = tiny_qwen()
    torch.manual_seed(0)
    plain = InternVLAA1(cfg)
    ckpt_cfg = dataclasses.replace(cfg, gradient_checkpointing=True)
    ckpt = InternVLAA1(ckpt_cfg)
    ckpt.load_state_dict(plain.state_dict())
    batch = random_batch(cfg, 2)
    noise, tau = torch.randn_like(batch.actions), torch.tensor([0.3, 0.8])
    grads = []
    for model in (plain, ckpt):
        model.train()
        joint_loss(model(batch, noise=noise, tau=tau), 0.01).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6)


def test_attention_layout_of_an_observation():
    cfg = tiny_qwen()
    model = InternVLAA1(cfg)
    obs = random_batch(cfg, 2).observation
    blocks, mask = model.attention_layout(obs)
    lengths = torch.bincount(blocks).tolist()
    assert lengths == [model.understanding.num_image_tokens + cfg.understanding.max_text_tokens, 96, 1,
                       cfg.action.chunk_size]
    assert mask.shape == (2, blocks.numel(), blocks.numel())
    assert not mask[:, : lengths[0], lengths[0]:].any()  # understanding never sees later blocks


def test_freezing_goes_through_the_understanding_expert():
    model = InternVLAA1(tiny_qwen())
    model.understanding.freeze("vision")
    assert not any(p.requires_grad for p in model.understanding.backbone.model.visual.parameters())
    assert any(p.requires_grad for p in model.understanding.language_model.parameters())
    with pytest.raises(ValueError, match="unknown part 'text'"):
        model.understanding.freeze("text")
