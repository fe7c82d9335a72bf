"""The switches that reproduce the official InternVLA-A1 code, each on its own: the flow-time
convention folded into the weights, DeepStack off, and compacted rotary positions."""

import dataclasses

import torch

from a1.import_official import fold_conventions
from a1.model.mot import ACT
from a1.model.policy import InternVLAA1
from a1.testing import random_batch
from tests.conftest import tiny_qwen


def _official_sample(model: InternVLAA1, obs, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """The official sampler on the same weights read in the official convention: the time fed to
    the embedding is t (t = 1 noise), Euler from t = 1 with dt = −1/K accumulated in float32, and
    the network's output is the velocity ε − a."""
    ctx = model.prepare(obs)
    x, t, dt = noise.float(), torch.tensor(1.0), torch.tensor(-1.0 / steps)
    while t >= -dt / 2:
        suffix = torch.cat([ctx.state, model.action_head.action_tokens(x, t.expand(x.shape[0]))], 1)
        outs, _ = model.mot({ACT: suffix}, ctx.mask, (ctx.cos, ctx.sin), past=ctx.cache)
        v = model.action_head.velocity(outs[ACT])
        x = x + dt * v
        t = t + dt
    return x


def test_folded_time_convention_samples_the_official_actions():
    torch.manual_seed(0)
    cfg = tiny_qwen()
    official = InternVLAA1(cfg).eval()
    obs = random_batch(cfg, 2).observation
    noise = torch.randn(2, cfg.action.chunk_size, cfg.action.max_dim)
    want = _official_sample(official, obs, noise, cfg.action.num_steps)
    folded = InternVLAA1(cfg).eval()
    weights = {k: v.clone() for k, v in official.state_dict().items()}
    fold_conventions(weights, cfg)
    folded.load_state_dict(weights)
    got = folded.sample_actions(obs, noise=noise)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
    assert (folded.sample_actions(obs, noise=noise) - official.sample_actions(obs, noise=noise)).abs().max() > 1e-2


def test_deepstack_switch():
    torch.manual_seed(0)
    cfg = tiny_qwen()
    on = InternVLAA1(cfg).eval()
    off_cfg = dataclasses.replace(cfg, understanding=dataclasses.replace(cfg.understanding, deepstack=False))
    off = InternVLAA1(off_cfg).eval()
    off.load_state_dict(on.state_dict())
    obs = random_batch(cfg, 1).observation
    assert on.prefix(obs).deepstack and off.prefix(obs).deepstack == []
    noise = torch.randn(1, cfg.action.chunk_size, cfg.action.max_dim)
    assert (on.sample_actions(obs, noise=noise) - off.sample_actions(obs, noise=noise)).abs().max() > 1e-4
    frozen = {n for n, p in off.named_parameters() if not p.requires_grad}
    mergers = {n for n, _ in off.named_parameters() if "deepstack_merger_list" in n}
    assert mergers and mergers <= frozen  # never on a loss path without DeepStack


def _compact_cfg():
    cfg = tiny_qwen()
    return dataclasses.replace(cfg, understanding=dataclasses.replace(cfg.understanding, positions="compact"))


def test_compact_positions_equal_the_layout_when_every_view_is_there():
    cfg = _compact_cfg()
    torch.manual_seed(0)
    model = InternVLAA1(cfg).eval()
    obs = random_batch(cfg, 2).observation
    und = model.understanding.embed(obs.images[:, :, -1], obs.image_mask[:, :, -1], obs.tokens, obs.token_mask)
    layout = model.understanding.layout_positions
    for b in range(2):
        valid = und.valid[b]
        assert torch.equal(und.positions[:, b, valid], layout[:, valid])
        assert (und.positions[:, b, ~valid] == 1).all()  # text padding
    assert und.next_position.tolist() == [int(layout[0, model.understanding.num_image_tokens]) + int(n)
                                          for n in obs.token_mask.sum(1)]


def test_compact_positions_close_the_gap_of_a_missing_view():
    """Official rule: the tokens of a missing view are compacted away, so the next view's tokens
    take its positions; masked tokens sit at position 1."""
    cfg = _compact_cfg()
    torch.manual_seed(0)
    model = InternVLAA1(cfg).eval()
    und_model = model.understanding
    obs = random_batch(cfg, 1).observation
    mask = obs.image_mask[:, :, -1].clone()
    mask[0, 0] = False  # the head camera is missing
    und = und_model.embed(obs.images[:, :, -1], mask, obs.tokens, obs.token_mask)
    per_view = und_model.num_image_tokens // len(cfg.views)
    layout = und_model.layout_positions
    pos = und.positions[:, 0]
    assert (pos[:, :per_view] == 1).all()
    # view 1 now sits where view 0 sat; the text follows view 2 with the same shift
    torch.testing.assert_close(pos[:, per_view:2 * per_view], layout[:, :per_view])
    text = und_model.num_image_tokens
    shift = layout[0, text] - layout[0, text - per_view]
    n = int(obs.token_mask[0].sum())
    torch.testing.assert_close(pos[:, text:text + n], layout[:, text:text + n] - shift)
    assert und.next_position.item() == pos[:, und.valid[0]].max().item() + 1
    layout_model = InternVLAA1(tiny_qwen()).eval()
    layout_model.load_state_dict(model.state_dict())
    noise = torch.randn(1, cfg.action.chunk_size, cfg.action.max_dim)
    obs.image_mask[0, 1] = False  # a middle view: the views around it move closer (a shift of all is no change)
    moved = (model.sample_actions(obs, noise=noise) - layout_model.sample_actions(obs, noise=noise)).abs().max()
    assert moved > 1e-5


def test_rotary_frequencies_rounded_to_bf16():
    """The official model casts itself to bf16 at construction, rotary buffers included: with
    ``rotary_precision: bfloat16`` every inv_freq (language model, vision tower) holds bf16 values."""
    cfg = tiny_qwen()
    exact = InternVLAA1(cfg).eval()
    rounded_cfg = dataclasses.replace(cfg, understanding=dataclasses.replace(cfg.understanding,
                                                                             rotary_precision="bfloat16"))
    rounded = InternVLAA1(rounded_cfg).eval()
    rounded.load_state_dict(exact.state_dict())
    pairs = [(n, b, dict(rounded.named_buffers())[n]) for n, b in exact.named_buffers() if n.endswith("inv_freq")]
    assert {n.split(".")[3] for n, _, _ in pairs} == {"visual", "language_model"}
    for name, a, b in pairs:
        assert b.dtype == torch.float32 and torch.equal(b, a.to(torch.bfloat16).float()), name
        assert not torch.equal(a, b), name  # the rounding is real
    obs = random_batch(cfg, 1).observation
    noise = torch.randn(1, cfg.action.chunk_size, cfg.action.max_dim)
    assert (exact.sample_actions(obs, noise=noise) - rounded.sample_actions(obs, noise=noise)).abs().max() > 1e-5


def test_compact_positions_of_a_1d_backbone():
    """InternVL (1-D RoPE): the kept tokens count up from 0 with no gaps; masked ones sit at 1."""
    from tests.conftest import tiny_internvl

    cfg = tiny_internvl()
    cfg = dataclasses.replace(cfg, understanding=dataclasses.replace(cfg.understanding, positions="compact"))
    model = InternVLAA1(cfg).eval()
    obs = random_batch(cfg, 1).observation
    mask = obs.image_mask[:, :, -1].clone()
    mask[0, 1] = False
    und = model.understanding.embed(obs.images[:, :, -1], mask, obs.tokens, obs.token_mask)
    valid = und.valid[0]
    n = int(valid.sum())
    assert torch.equal(und.positions[:, 0, valid], torch.arange(n).expand(3, n))
    assert (und.positions[:, 0, ~valid] == 1).all() and und.next_position.item() == n
