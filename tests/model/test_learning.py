"""The tiny model really learns: overfitting one batch cuts both losses (issue #2 criterion).

Flow noise and time are re-drawn every step; progress is measured as the mean of the last 20
steps against the mean of the first 20.
"""

import statistics

import torch

from a1.model.policy import InternVLAA1
from a1.testing import random_batch
from tests.conftest import tiny_qwen


def test_overfitting_one_batch_cuts_both_losses():
    torch.manual_seed(0)
    cfg = tiny_qwen()
    model = InternVLAA1(cfg)
    batch = random_batch(cfg, 2)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    gen, act = [], []
    for _ in range(300):
        out = model(batch)  # fresh ε and τ every step
        loss = out.gen.mean() + out.act.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        gen.append(out.gen.mean().item())
        act.append(out.act.mean().item())
    gen_cut = 1 - statistics.mean(gen[-20:]) / statistics.mean(gen[:20])
    act_cut = 1 - statistics.mean(act[-20:]) / statistics.mean(act[:20])
    assert gen_cut >= 0.90, f"L_gen cut {gen_cut:.1%}"
    assert act_cut >= 0.80, f"L_act cut {act_cut:.1%}"
