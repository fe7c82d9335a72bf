# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · A tour of the InternVLA-A1 model
#
# InternVLA-A1 is a robot policy built from **three transformer experts** that share one
# attention per layer (a *Mixture-of-Transformers*, paper §3.1):
#
# 1. an **understanding** expert — a multimodal LLM (Qwen3-VL or InternVL3) reading the camera
#    views and the instruction;
# 2. a **generation** expert — predicts the *future* camera frames (t + 15) in the latent space
#    of the Cosmos image tokenizer ("visual foresight");
# 3. an **action** expert — turns all of that plus the robot state into a chunk of actions with
#    *flow matching*.
#
# This notebook runs on a laptop CPU in well under a minute. Nothing is downloaded: we use
# `configs/tiny.yaml`, the real architecture shrunk to a few million random weights.
#
# **You will see:** the model's size at tiny and 3B scale (§1), the attention mask that wires
# the experts together (§2), flow matching on a 1-D toy (§3), and a tiny model overfitting one
# batch, then predicting actions and a future frame (§4).
#
# *Edit `notebooks/01_model_tour.py` (the source); the `.ipynb` is generated from it with
# `jupytext --to ipynb notebooks/01_model_tour.py`.*

# %%
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch


def find_repo_root(start: Path) -> Path:
    """Walk up from ``start`` until the folder holding ``configs/tiny.yaml``."""
    for folder in [start, *start.parents]:
        if (folder / "configs" / "tiny.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no configs/tiny.yaml above {start}; open the notebook inside the a1 repo")


ROOT = find_repo_root(Path.cwd().resolve())
if str(ROOT) not in sys.path:  # works without `pip install -e .` too
    sys.path.insert(0, str(ROOT))

from a1.config import policy_config  # noqa: E402
from a1.model import flow  # noqa: E402
from a1.model.mask import ACTION, GENERATION, STATE, UNDERSTANDING, attention_mask, block_ids  # noqa: E402
from a1.model.policy import InternVLAA1, joint_loss, masked_mean  # noqa: E402
from a1.model.summary import format_text, summarize  # noqa: E402
from a1.testing import random_batch  # noqa: E402

torch.manual_seed(0)
print("repo root:", ROOT)

# %% [markdown]
# ## 1 · Build the model and count its parameters
#
# A YAML config's `model.policy` section becomes a typed `PolicyConfig`; `InternVLAA1` is a
# plain `torch.nn.Module`.

# %%
cfg = policy_config(ROOT / "configs" / "tiny.yaml")
model = InternVLAA1(cfg)
print(format_text(summarize(cfg), cfg))

# %% [markdown]
# The same code at full size. `summarize` builds the model on PyTorch's **meta device** —
# shapes only, no memory — so even the 3B model "builds" on a laptop (this takes a few seconds).

# %%
cfg_3b = policy_config(ROOT / "configs" / "pretrain_3b.yaml")
summary_3b = summarize(cfg_3b)
print(format_text(summary_3b, cfg_3b))

# %% [markdown]
# Reading the 3B numbers against paper Table 1 (3.2B in total):
#
# * **understanding 2.13B** — Qwen3-VL-2B: vision encoder + language model. Its tokens are the
#   camera views at time t plus the instruction.
# * **generation 0.44B** and **action 0.44B** — Qwen3 decoder blocks *without* embeddings. They
#   have exactly as many layers and attention heads as the understanding LLM, because in every
#   layer the three experts' queries, keys and values are concatenated into **one** attention.
#   Each expert keeps its own weights (projections, MLP, norms) — that is the
#   "Mixture-of-Transformers".
# * **other** — the glue: Cosmos tokenizer (frozen), the foresight projections in and out of
#   the generation expert, the state/action/time projections of the action head.
#
# The generation block is 96 tokens: 3 views × 2 frames (t−15, t) × 16 tokens per image.

# %% [markdown]
# ## 2 · The attention mask: understanding → generation → action
#
# The sequence is `[understanding | generation | state | actions]`. A token may attend to its
# own block and every **earlier** block, never to a later one (paper §3.2). So the action
# tokens read everything, while the understanding tokens never see the (noisy) actions.
# Padding — unused text positions, missing camera views — is never attended to.
#
# A small hand-made example: 5 understanding tokens (the last one padding), 4 generation
# tokens, 1 state token and 3 action tokens.

# %%
lengths = {UNDERSTANDING: 5, GENERATION: 4, STATE: 1, ACTION: 3}
blocks = block_ids(lengths)
valid = torch.ones(1, len(blocks), dtype=torch.bool)
valid[0, 4] = False  # padding text token
mask = attention_mask(blocks, valid)[0]  # (L, L): True = query row may attend key column
print("block id per token:", blocks.tolist())

names = ["understanding", "generation", "state", "actions"]


def draw_mask(ax, mask, lengths, title):
    ax.imshow(mask.numpy(), cmap="Greys", vmin=0, vmax=1.3, interpolation="nearest")
    edges = torch.tensor(list(lengths.values())).cumsum(0).tolist()
    starts = [0] + edges[:-1]
    for e in edges[:-1]:
        ax.axhline(e - 0.5, color="tab:red", lw=1)
        ax.axvline(e - 0.5, color="tab:red", lw=1)
    centers = [(s + e - 1) / 2 for s, e in zip(starts, edges)]
    ax.set_xticks(centers, names, rotation=30, ha="right")
    ax.set_yticks(centers, names)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)


fig, ax = plt.subplots(figsize=(5, 5))
draw_mask(ax, mask, lengths, "dark = may attend")
plt.show()

# %% [markdown]
# Read it row by row: understanding and generation are **bidirectional** inside their block;
# the state token sees itself and the prefix; actions see the state, the prefix and each other.
# The padding column (token 4) is empty except for its own diagonal entry, kept so that no row
# is ever empty.
#
# The model builds the same mask for a real batch. Here is the tiny model's mask for one
# sample: 42 understanding tokens (18 image + 24 text, with text padding), 96 generation, 1
# state, 16 actions. `attention_layout` returns the block id of every token and the mask.

# %%
batch = random_batch(cfg, 2)
obs = batch.observation
token_blocks, full_mask = model.attention_layout(obs)  # (L,), (B, L, L)
real_lengths = {b: int((token_blocks == b).sum()) for b in (UNDERSTANDING, GENERATION, STATE, ACTION)}
print("mask shape:", tuple(full_mask.shape), "blocks:", dict(zip(names, real_lengths.values())))
fig, ax = plt.subplots(figsize=(5, 5))
draw_mask(ax, full_mask[0], real_lengths, "tiny model, sample 0")
plt.show()

# %% [markdown]
# ## 3 · Flow matching in one dimension
#
# The action expert does not regress actions directly. It learns a **velocity field** that
# carries Gaussian noise ε to an action chunk a along straight lines (paper Eq. 2–3,
# `a1/model/flow.py`):
#
# $$a^\tau = (1-\tau)\,\varepsilon + \tau\, a, \qquad \text{target velocity } u = a - \varepsilon,$$
#
# with τ = 0 pure noise and τ = 1 the action. At inference, start from noise and take K = 10
# Euler steps `a ← a + Δτ · v(a, τ)`.
#
# Toy: six noise samples, each paired with a target (2.0 or −1.5). We integrate with the *true*
# velocity of each straight path, written as a function of the current point:
# v(a^τ, τ) = (a − a^τ)/(1 − τ), which equals a − ε on the path. Euler lands exactly on the
# targets because the paths are straight. (A trained network only sees a^τ, not ε, so it learns
# the *average* velocity over all pairs that pass through a^τ — that is what lets it
# represent several modes.)

# %%
g = torch.Generator().manual_seed(0)
n = 6
eps = torch.randn(n, 1, 1, generator=g)  # (B, k, D) = (6, 1, 1): flow.py's shapes
target = torch.where(torch.arange(n) % 2 == 0, 2.0, -1.5).view(n, 1, 1)

taus = torch.linspace(0, 1, 50)
paths = torch.stack([flow.interpolate(target, eps, t.expand(n)) for t in taus])  # (50, n, 1, 1)
assert torch.allclose(flow.target_velocity(target, eps), target - eps)

K = 10
trajectory = [eps]


def true_velocity(a_tau, tau):
    v = (target - a_tau) / (1 - tau).view(-1, 1, 1)
    trajectory.append(a_tau + v / K)  # record the point after this Euler step
    return v


landed = flow.euler(true_velocity, eps, K)
print("max |Euler end − target| =", (landed - target).abs().max().item())

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(taus, paths[:, :, 0, 0], color="tab:blue", alpha=0.5)
steps = torch.stack(trajectory)[:, :, 0, 0]
ax.plot(torch.linspace(0, 1, K + 1), steps, "o", color="tab:orange", ms=3)
ax.set_xlabel("τ  (0 = noise, 1 = action)")
ax.set_ylabel("value")
ax.set_title("straight paths (lines) and Euler steps with the true velocity (dots)")
plt.show()

# %% [markdown]
# **Which τ does training see?** Each training sample draws one τ. Following pi0 and the public
# InternVLA-A1 code, `flow.sample_time` draws the *noise level* 1 − τ ~ Beta(1.5, 1), which puts
# more training on the noisy end (small τ), where predicting the velocity is hardest. (The paper
# writes τ ~ Beta(1.5, 1); `flow.py`'s docstring explains the convention and measures the
# difference.) The density of τ is 1.5·(1 − τ)^½:

# %%
tau_samples = flow.sample_time(100_000, *cfg.action.time_beta)
grid = torch.linspace(0, 1, 200)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(tau_samples.numpy(), bins=50, density=True, alpha=0.6, label="flow.sample_time")
ax.plot(grid, 1.5 * (1 - grid).sqrt(), color="k", label="1.5·(1−τ)^½")
ax.set_xlabel("τ")
ax.set_ylabel("density")
ax.legend()
plt.show()
print(f"mean τ = {tau_samples.mean():.3f} (Beta(1.5, 1) noise level → E[τ] = 0.4)")

# %% [markdown]
# ## 4 · Train the tiny model on one batch
#
# `random_batch` gives smooth random camera frames, real tokenised instructions and smooth
# action chunks: everything a real `Batch` holds. `model(batch)` returns *per-sample* losses
# with masks of which samples they apply to; `joint_loss` forms L = λ·L_gen + L_act (paper Eq. 4).
# The paper trains with λ = 0.01; for this one-batch sanity check we use λ = 1 so that both
# losses visibly fall within a few dozen steps.

# %%
torch.manual_seed(0)
trainable = [p for p in model.parameters() if p.requires_grad]  # the Cosmos tokenizer is frozen
optimizer = torch.optim.AdamW(trainable, lr=3e-3, betas=(0.9, 0.95))
history = {"L_act": [], "L_gen": [], "L": []}
model.train()
for step in range(60):
    losses = model(batch)  # fresh noise ε and time τ every step
    loss = joint_loss(losses, lambda_gen=1.0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history["L_act"].append(masked_mean(losses.act, losses.act_valid).item())
    history["L_gen"].append(masked_mean(losses.gen, losses.gen_valid).item())
    history["L"].append(loss.item())
print(f"first loss {history['L'][0]:.4f}")
print(f"final loss {history['L'][-1]:.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, key in zip(axes, ["L_act", "L_gen"]):
    ax.plot(history[key])
    ax.set_xlabel("step")
    ax.set_title(key)
    ax.set_yscale("log")
plt.tight_layout()
plt.show()

# %% [markdown]
# L_act jumps around because every step draws new noise and a new τ; its trend is what counts.
# L_gen is the mean squared error between the predicted and the real Cosmos latent of the
# future frame.
#
# ## Inference: actions and a foresight frame
#
# `sample_actions` runs understanding + generation **once**, caches their keys and values, and
# then runs only the action expert for the 10 Euler steps. `foresight_frames` decodes the
# generation expert's predicted latent into images, (B, V, 3, H, W) uint8.

# %%
model.eval()
actions = model.sample_actions(obs)
foresight_frames = model.foresight_frames(obs)
print("actions:", tuple(actions.shape), " foresight frames:", tuple(foresight_frames.shape), foresight_frames.dtype)
dims = batch.action_dim_mask[0]
err = (actions[0][:, dims] - batch.actions[0][:, dims]).abs().mean()
print(f"mean |sampled − demonstrated| action on sample 0 (after 60 steps): {err:.3f}")

# %% [markdown]
# Our Cosmos tokenizer has *random* weights here, so even a perfect latent would not decode
# into the real picture. The fair comparison is therefore with the tokenizer's own round trip of
# the real future frame (encode, then decode): that is what the generation expert is trained to
# reproduce. With the pretrained Cosmos weights (`A1_COSMOS_CI8X8`) the round trip is close
# to the real frame.

# %%
view = 0  # head camera
future = batch.future_images  # (B, V, 3, H, W) uint8: the real frame t+m
round_trip = model.foresight.decode(model.foresight.latents(future))
panels = {
    "input frame t": obs.images[0, view, -1],
    "real frame t+m": future[0, view],
    "Cosmos round trip of t+m": round_trip[0, view],
    "predicted t+m (foresight)": foresight_frames[0, view],
}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (title, img) in zip(axes, panels.items()):
    ax.imshow(img.permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Where next
#
# * `a1/model/mot.py` — how one attention is shared by three experts;
# * `a1/model/foresight.py` — the 96 foresight tokens and parallel decoding;
# * `python -m a1.model.summary --config configs/pretrain_2b.yaml` — the InternVL3-based 2B model.
