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
# # 03 · Flow matching: how the action expert samples an action chunk
#
# The action expert does not regress actions. It learns a **velocity field** v_θ that carries
# Gaussian noise ε to an action chunk a along straight lines, and samples a chunk by following
# that field with a few Euler steps (paper §3.3, Eq. 2–3; `a1/model/flow.py`):
#
# $$a^\tau = (1-\tau)\,\varepsilon + \tau\, a, \qquad
#   \mathcal{L}_{act} = \big\| v_\theta(a^\tau, \tau) - (a - \varepsilon) \big\|^2, \qquad
#   a^{\tau+\Delta\tau} = a^\tau + \Delta\tau\, v_\theta(a^\tau, \tau),\ \Delta\tau = 1/K .$$
#
# **a1's clock is the paper's:** τ = 0 is pure noise, τ = 1 is the action chunk, and sampling
# runs τ from 0 to 1 in K steps (K = 10 in the paper). pi0 and the public InternVLA-A1 code write
# the mirrored time t = 1 − τ (t = 1 noise, t = 0 data); a1 counts that *noise level* internally
# so that an imported official policy sees exactly the times it was trained on.
#
# **You will see:** a 2-D toy — a tiny MLP learning a ring of six Gaussian blobs — with the τ
# distribution training uses, the Euler trajectories for K = 1, 4, 10 and the learned field
# itself (§1–4); then the very same sampler on the action expert of a tiny policy trained on two
# opposite demonstrations of one observation (§5). Everything calls a1's own `flow.sample_time`,
# `flow.interpolate`, `flow.target_velocity` and `flow.euler`. About a minute on a laptop CPU.
#
# *Edit `notebooks/03_flow_matching.py` (the source); the `.ipynb` is generated from it with
# `jupytext --to ipynb --update notebooks/03_flow_matching.py`.*

# %% tags=["parameters"]
TOY_STEPS = 1500  # AdamW steps for the 2-D toy (5000: crisper blobs, ~4× the time)
TOY_BATCH = 256  # target samples per step
MODES = 6  # Gaussian blobs on the ring
RADIUS, STD = 2.0, 0.15  # ring radius and blob standard deviation
POLICY_CONFIGS = ["configs/tiny.yaml", "configs/tiny_nogen.yaml"]  # tiny policy, no generation expert
POLICY_STEPS = 200  # training steps of the tiny policy on its two demonstrations (600: sharper)
POLICY_BATCH = 16  # copies of the observation per step: half demonstrate a, half −a
STEPS_K = [1, 4, 10]  # Euler steps to compare (the paper samples with K = 10)
SEED = 0

# %%

import matplotlib.pyplot as plt
import torch


from a1.teaching import notebook_setup  # noqa: E402

ROOT = notebook_setup()  # the repository root; $A1_CACHE → its .cache/a1 unless set

from a1.config import policy_config  # noqa: E402
from a1.model import flow  # noqa: E402
from a1.model.flow_toy import (  # noqa: E402
    VelocityMLP,
    flow_matching_loss,
    gaussian_ring,
    ring_centres,
    train,
    two_mode_batch,
)
from a1.model.policy import InternVLAA1, joint_loss  # noqa: E402

torch.manual_seed(SEED)
g = torch.Generator().manual_seed(SEED)
print("repo root:", ROOT)

# %% [markdown]
# ## 1 · Target, noise and the straight paths between them
#
# The "actions" of the toy are 2-D points from a ring of Gaussian blobs (`gaussian_ring`) — a
# **multi-modal** target: a good sampler must land in one blob or another, never between them.
# Shapes follow `flow.py`: a point is a chunk of k = 1 step with D = 2 dims, (B, 1, 2).
#
# Training pairs each data point a with an independent noise sample ε and a time τ, and asks
# the network for the velocity a − ε of the straight path through a^τ. The paths cross: at a
# given a^τ, many (ε, a) pairs pass, and the best the network can do is predict their
# **average** velocity. That average is what makes the learned flow go *somewhere* sensible.

# %%
target = gaussian_ring(2000, MODES, RADIUS, STD, generator=g)  # (2000, 1, 2)
noise = torch.randn(2000, 1, 2, generator=g)
taus = torch.linspace(0, 1, 21)
pairs = 14
paths = torch.stack([flow.interpolate(target[:pairs], noise[:pairs], t.expand(pairs)) for t in taus])  # (21, pairs, 1, 2)

fig, ax = plt.subplots(figsize=(5, 5))
ax.scatter(*noise[:, 0].T, s=3, alpha=0.3, color="tab:gray", label="noise ε (τ = 0)")
ax.scatter(*target[:, 0].T, s=3, alpha=0.3, color="tab:blue", label="data a (τ = 1)")
ax.plot(paths[:, :, 0, 0], paths[:, :, 0, 1], color="tab:orange", lw=1)
ax.plot([], [], color="tab:orange", label="a^τ = (1 − τ)ε + τa")
ax.set_aspect("equal")
ax.set_xlim(-3.5, 3.5)
ax.set_ylim(-3.5, 3.5)
ax.legend(fontsize=8, loc="upper right")
ax.set_title("training pairs: straight paths from noise to data")
plt.show()

# %% [markdown]
# ## 2 · Which τ does training see?
#
# Each training sample draws one τ with `flow.sample_time`. The paper writes τ ~ Beta(1.5, 1);
# the public code (and pi0, whose recipe it follows) applies that Beta to the mirrored time, the
# *noise level* 1 − τ. a1 trains like the public code: 1 − τ ~ Beta(1.5, 1), so τ has density
# 1.5·(1 − τ)^½ and training spends more samples near the **noisy** end, where the velocity is
# hardest to predict (`flow.py`'s docstring measures the difference).

# %%
tau_samples = flow.sample_time(100_000, 1.5, 1.0)
grid = torch.linspace(0, 1, 200)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(tau_samples.numpy(), bins=50, density=True, alpha=0.6, label="flow.sample_time(·, 1.5, 1)")
ax.plot(grid, 1.5 * (1 - grid).sqrt(), color="k", label="1.5·(1 − τ)^½  (a1, public code)")
ax.plot(grid, 1.5 * grid.sqrt(), color="k", ls="--", label="1.5·τ^½  (Beta(1.5, 1) on τ itself)")
ax.set_xlabel("τ   (0 = noise, 1 = data)")
ax.set_ylabel("density")
ax.legend(fontsize=8)
plt.show()
print(f"mean τ = {tau_samples.mean():.3f}   (E[τ] = 1 − 1.5/2.5 = 0.4)")

# %% [markdown]
# ## 3 · Train a tiny velocity field
#
# `VelocityMLP` is a three-layer SiLU MLP fed with the point and the same sinusoidal time
# embedding as the action head (`flow.time_embedding`). `flow_matching_loss` is L_act above —
# fresh ε and τ for every sample — and `train` is a plain AdamW loop over it.

# %%
velocity = VelocityMLP(dim=2)
print(f"VelocityMLP: {sum(p.numel() for p in velocity.parameters()):,} parameters")
toy_losses = train(lambda: flow_matching_loss(velocity, gaussian_ring(TOY_BATCH, MODES, RADIUS, STD)),
                   velocity.parameters(), TOY_STEPS, lr=3e-3)
first, last = sum(toy_losses[:50]) / 50, sum(toy_losses[-100:]) / 100
print(f"toy loss: first 50 steps {first:.3f}, last 100 steps {last:.3f}")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(toy_losses, lw=0.5, alpha=0.5)
window = 50
smooth = torch.tensor(toy_losses).unfold(0, window, 1).mean(1)
ax.plot(range(window - 1, len(toy_losses)), smooth, color="k", label=f"mean of {window}")
ax.set_xlabel("step")
ax.set_ylabel("L_act")
ax.legend()
plt.show()

# %% [markdown]
# The loss never approaches zero, and should not: the target velocity a − ε is random given
# a^τ (many pairs cross there), so the floor is its variance. What matters is whether the
# *sampler* lands on the target.
#
# ## 4 · Sampling with K = 1, 4, 10 Euler steps
#
# `flow.euler(velocity, noise, K)` integrates from τ = 0 to 1. We wrap the velocity to record
# every point it is called at, which gives the trajectories.

# %%
def euler_path(v, start, num_steps):
    """flow.euler, also returning the (num_steps + 1, B, k, D) points visited and the τ's used."""
    points, times = [], []

    def recorded(a, tau):
        points.append(a)
        times.append(round(tau[0].item(), 4))
        return v(a, tau)

    end = flow.euler(recorded, start, num_steps)
    return torch.stack([*points, end]), times


centres = ring_centres(MODES, RADIUS)  # (MODES, 2)
start = torch.randn(600, 1, 2, generator=g)
fig, axes = plt.subplots(1, len(STEPS_K), figsize=(4 * len(STEPS_K), 4.2), sharey=True)
with torch.no_grad():
    for ax, K in zip(axes, STEPS_K):
        path, times = euler_path(velocity, start, K)  # (K + 1, 600, 1, 2)
        end = path[-1, :, 0]
        near = torch.cdist(end, centres).min(1).values < 3 * STD  # within 3σ of a blob centre
        print(f"K = {K:>2}: τ handed to v = {times}; {near.float().mean():.0%} of samples land on a blob")
        ax.scatter(*target[:, 0].T, s=2, alpha=0.15, color="tab:blue")
        ax.plot(path[:, :120, 0, 0], path[:, :120, 0, 1], color="tab:gray", lw=0.6, alpha=0.7)
        ax.scatter(*end.T, s=4, color="tab:red", zorder=3)
        ax.set_title(f"K = {K} Euler step{'s' if K > 1 else ''}: {near.float().mean():.0%} on a blob")
        ax.set_aspect("equal")
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
plt.tight_layout()
plt.show()

# %% [markdown]
# Blue: the target. Grey: trajectories of 120 of the 600 samples. Red: where they end.
#
# * **K = 1** jumps straight along v(ε, 0). At τ = 0 the point carries no information about
#   which blob its partner is in, so the learned velocity is the average, E[a] − ε: every
#   sample lands near the **mean of the data** — the centre of the ring, where no data is. This
#   is what a regression head does to a multi-modal action distribution.
# * **K = 4** already commits most samples to a blob; **K = 10** (the paper's K) lands almost
#   all of them, with the trajectories bending once the field "decides".
#
# The τ's printed above are what the velocity receives: 0, 1/K, …, (K − 1)/K. (Internally
# `flow.euler_steps` counts the noise level 1 − τ down from 1 in float32 steps of 1/K, exactly
# like the public samplers, so the τ's are k/K up to float32 rounding.)
#
# Why does the trajectory bend? Look at the learned field itself at three times:

# %%
axis = torch.linspace(-3, 3, 17)
xx, yy = torch.meshgrid(axis, axis, indexing="xy")
points = torch.stack([xx.flatten(), yy.flatten()], -1)[:, None]  # (289, 1, 2)
fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
with torch.no_grad():
    for ax, tau in zip(axes, (0.0, 0.5, 0.9)):
        v = velocity(points, torch.full((points.shape[0],), tau))[:, 0]
        ax.scatter(*target[:, 0].T, s=2, alpha=0.15, color="tab:blue")
        ax.quiver(points[:, 0, 0], points[:, 0, 1], v[:, 0], v[:, 1], color="k", angles="xy")
        ax.set_title(f"v_θ(x, τ = {tau})")
        ax.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# At τ = 0 the field is a plain pull towards the centre of the data. By τ = 0.5 it has split into
# basins, one per blob, and near τ = 1 every arrow points into the nearest blob (the arrows grow
# like 1/(1 − τ): the remaining distance has to be covered in the remaining time). A single
# Euler step only ever sees the τ = 0 field.
#
# ## 5 · The same sampler on the action expert of a tiny policy
#
# `InternVLAA1.sample_actions(obs, noise, num_steps=K)` calls the same `flow.euler` loop
# (`flow.euler_steps`), with the action expert as the velocity field: the prefix (understanding
# and generation) runs once and is cached, then each step runs only the state and action tokens
# (notebook 01, §3). To keep this notebook fast we use the tiny policy **without** the generation
# expert (the `configs/tiny_nogen.yaml` overlay, the paper's ablation): the action expert and
# the sampler are unchanged.
#
# A multi-modal robot data set in miniature: `two_mode_batch` repeats one observation and
# demonstrates two opposite chunks for it, a and −a (pass an obstacle left or right). The mean
# demonstration, 0, is wrong for both. We train on it for a few seconds, from random weights.

# %%
torch.manual_seed(SEED)
pcfg = policy_config(*(ROOT / c for c in POLICY_CONFIGS))
policy = InternVLAA1(pcfg)
demo = two_mode_batch(pcfg, POLICY_BATCH, seed=SEED)
dims = demo.action_dim_mask[0]  # the 14 real action dims (the rest is padding up to 32)
a_plus = demo.actions[0][:, dims]  # (k, 14) demonstration a; the other half is −a
policy.train()
policy_losses = train(lambda: joint_loss(policy(demo), lambda_gen=0.0), policy.parameters(), POLICY_STEPS, lr=3e-3)
policy.eval()
print(f"policy L_act: first 20 steps {sum(policy_losses[:20]) / 20:.3f}, last 20 steps {sum(policy_losses[-20:]) / 20:.3f}")

# %% [markdown]
# Now sample the chunk for that observation from 16 noise draws, with K = 1, 4, 10, the same
# noise for every K. To see which demonstration a sample follows, project it on a:
# c = ⟨chunk, a⟩ / ⟨a, a⟩ is +1 for a, −1 for −a and 0 for the mean demonstration.

# %%
obs = demo.observation  # POLICY_BATCH copies of the one observation
chunk_noise = torch.randn(POLICY_BATCH, pcfg.action.chunk_size, pcfg.action.max_dim, generator=g)
chunks = {K: policy.sample_actions(obs, noise=chunk_noise, num_steps=K)[:, :, dims] for K in STEPS_K}
uncached = policy.sample_actions(obs, noise=chunk_noise, num_steps=STEPS_K[-1], use_cache=False)[:, :, dims]
print(f"K = {STEPS_K[-1]}: cached vs full-sequence sampler differ by at most "
      f"{(chunks[STEPS_K[-1]] - uncached).abs().max():.1e}")

coef = {K: (c * a_plus).sum((1, 2)) / (a_plus**2).sum() for K, c in chunks.items()}
for K, c in coef.items():
    err = torch.minimum((chunks[K] - a_plus).pow(2).mean((1, 2)), (chunks[K] + a_plus).pow(2).mean((1, 2)))
    print(f"K = {K:>2}: mean |c| = {c.abs().mean():.2f}, follows a: {int((c > 0).sum())}/{len(c)}, "
          f"mean squared error to the nearer demonstration {err.mean():.3f}")

# %%
fig, axes = plt.subplots(1, 1 + len(STEPS_K), figsize=(15, 3.6),
                         gridspec_kw={"width_ratios": [1.3] + [1] * len(STEPS_K)})
ax0 = axes[0]
for i, K in enumerate(STEPS_K):
    ax0.scatter(coef[K], torch.full_like(coef[K], i) + 0.08 * torch.randn(len(coef[K]), generator=g), s=18)
for x, style in ((-1, "--"), (1, "--"), (0, ":")):
    ax0.axvline(x, color="k" if x else "tab:gray", ls=style, lw=1)
ax0.set_yticks(range(len(STEPS_K)), [f"K = {K}" for K in STEPS_K])
ax0.set_xlim(-1.5, 1.5)
ax0.set_xlabel("c = ⟨chunk, a⟩ / ⟨a, a⟩")
ax0.set_title("±1: a demonstration, 0: their mean", fontsize=10)

dim, steps = 0, range(pcfg.action.chunk_size)
for ax, K, color in zip(axes[1:], STEPS_K, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
    ax.plot(steps, chunks[K][:, :, dim].T, color=color, lw=0.8, alpha=0.7)
    ax.plot(steps, a_plus[:, dim], "k--", lw=1.5)
    ax.plot(steps, -a_plus[:, dim], "k--", lw=1.5)
    ax.set_title(f"K = {K}: {POLICY_BATCH} chunks, dashed: a and −a", fontsize=10)
    ax.set_xlabel("step of the chunk")
    ax.set_ylim(-1.4, 1.4)
axes[1].set_ylabel(f"action dim {dim}")
plt.tight_layout()
plt.show()

# %% [markdown]
# The toy's picture again, in a 16 × 14-dimensional action space: with **K = 1** every chunk is
# pulled towards the mean demonstration (c near 0), a motion neither demonstrator made; with
# **K = 10** the chunks commit to a or to −a. More steps cost latency — each is one pass of the
# action expert over the cached prefix — which is why K is small (10 in the paper, 4 in GR00T
# N1.5) and why a1 compiles the denoising step for deployment.
#
# ## Where next
#
# * `a1/model/flow.py` — the path, the τ sampler, the Euler loop and the time embedding;
# * `a1/model/action.py` — how the state, the noisy chunk and τ become the action expert's tokens;
# * notebook 05 — the tiny policy trained on real (synthetic) demonstrations.
