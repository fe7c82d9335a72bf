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
# # 04 · Visual foresight: the Cosmos tokenizer and the generation expert
#
# InternVLA-A1's **generation expert** imagines the camera frames one second ahead (t + 15 at
# 15 fps) before the action expert acts (paper §3.2, Fig. 3). It works in the latent space of
# NVIDIA's **Cosmos CI8×8** image tokenizer, a frozen autoencoder: frames t − m and t of every view
# are encoded, compressed to 96 tokens, and a single forward pass predicts the latent of frame
# t + m, trained with an MSE against the real frame's latent (L_gen, Eq. 1).
#
# **You will see:** the tokenizer's round trip and latent channels (§1), a stand-in for its
# pretrained weights fitted on the synthetic world (§2), and a tiny policy whose predicted t + m
# frame moves towards the real one during a short training run, with the latent MSE falling (§3).
#
# Nothing is downloaded: `configs/tiny.yaml` is the real architecture with random weights, so the
# run takes about a minute on a laptop CPU. *Edit `notebooks/04_foresight.py` (the source); the
# `.ipynb` is generated from it with `jupytext --to ipynb notebooks/04_foresight.py`.*

# %% tags=["parameters"]
TOKENIZER_STEPS = 300  # autoencoder steps of the stand-in tokenizer (§2); ~3000 for sharp frames
TRAIN_STEPS = 150  # policy steps on the fixed batches (§3); ~1000 for a crisper prediction
NUM_BATCHES = 2  # fixed training batches of 8 samples, cycled (a short overfitting run)
LAMBDA_GEN = 1.0  # weight of L_gen; the paper pre-trains with 0.01 (here we only watch foresight)
LR = 2e-3  # AdamW learning rate of the policy (configs/tiny.yaml: 1e-3 for a real run)
EPISODE, FRAME = 2, 20  # the synthetic frame window of §1–2 (episode 2: the conveyor task)

# %%
import os
from itertools import cycle, islice

import matplotlib.pyplot as plt
import numpy as np
import torch


from a1.teaching import notebook_setup  # noqa: E402

ROOT = notebook_setup()  # the repository root; $A1_CACHE → its .cache/a1 unless set

from a1.config import policy_config  # noqa: E402
from a1.data.preview import source_frames  # noqa: E402
from a1.data.sample import make_sample  # noqa: E402
from a1.data.sources import open_source  # noqa: E402
from a1.fit import data_module, parse_config  # noqa: E402
from a1.model.cosmos import CosmosConfig, CosmosTokenizer  # noqa: E402
from a1.model.foresight_preview import fit_tokenizer, hold_still_loss, round_trip  # noqa: E402
from a1.model.policy import InternVLAA1, joint_loss, masked_mean  # noqa: E402
from a1.train.optim import OptimConfig, build_optimizer  # noqa: E402

torch.manual_seed(0)
print("repo root:", ROOT)

# %% [markdown]
# ## 1 · The Cosmos tokenizer: frame → latent → frame
#
# `a1/model/cosmos.py` writes the CI8×8 architecture out (module names equal the released
# checkpoint's keys): a 2-level Haar wavelet patcher, a convolutional encoder down to a 16-channel
# latent at 1/8 of the resolution, and a mirrored decoder. At 3B scale a 256² frame becomes a
# 16 × 32 × 32 latent; the tiny config keeps the structure at 64² → 16 × 8 × 8 with fewer channels.
#
# The tiny policy and its data come from `configs/tiny.yaml`. Its data section makes the embedded
# synthetic world on first use (`python -m a1.sim.synthetic`, into `$A1_CACHE/synthetic`).

# %%
TINY = str(ROOT / "configs" / "tiny.yaml")
cfg = policy_config(TINY)
config = parse_config(["--config", TINY, "--data.num_workers=0"])  # the a1.fit reader, nothing built
dm = data_module(config.data)  # A1DataModule: sources, mixture, normalisation, collation
dm.prepare_data()  # generates the synthetic world if it is not there yet
dm.setup()
robot, human = (dm.datasets[i] for i in (0, 1))
print("datasets:", [(d.name, d.path) for d in dm.datasets])

policy = InternVLAA1(cfg)
foresight = policy.foresight
tok_cfg = cfg.generation.tokenizer
with torch.device("meta"):  # shapes only: the real CI8x8 needs no memory to count
    real_size = sum(p.numel() for p in CosmosTokenizer(CosmosConfig()).parameters())
tiny_size = sum(p.numel() for p in foresight.tokenizer.parameters())
print(f"tokenizer parameters: tiny {tiny_size / 1e6:.2f}M, Cosmos CI8x8 {real_size / 1e6:.1f}M (all frozen)")

# %%
views = cfg.views
source = open_source(robot, views)
opts = dm.opts
m = opts.history
sample = make_sample(source.episodes[EPISODE], FRAME, views, m, opts.chunk_size, 0, "preview", opts.image_size)
window = torch.from_numpy(sample.images)  # (V, 3 times, 3, H, W) uint8: t−m, t, t+m
latents, decoded = round_trip(foresight, window)
print(f"instruction {sample.instruction!r}: frames {tuple(window.shape)} → latents {tuple(latents.shape)} "
      f"→ decoded {tuple(decoded.shape)}")


def show_round_trip(frames, z, rec, labels, title, channels=4):
    """Per row: a frame, ``channels`` of its latent channels, and its decoding."""
    rows = len(frames)
    fig, axes = plt.subplots(rows, channels + 2, figsize=(1.9 * (channels + 2), 2 * rows + 0.4), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(frames[r].permute(1, 2, 0).numpy())
        axes[r, 0].set_ylabel(labels[r])
        for c in range(channels):
            lim = float(z[r, c].abs().max())
            axes[r, 1 + c].imshow(z[r, c].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r, -1].imshow(rec[r].permute(1, 2, 0).numpy())
    for j, name in enumerate(["frame", *(f"latent ch {c}" for c in range(channels)), "decoded"]):
        axes[0, j].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    plt.tight_layout()
    plt.show()


show_round_trip(window[:, 1], latents[:, 1], decoded[:, 1], views, "frame t of every view, RANDOM tokenizer weights")

# %% [markdown]
# With random weights the latent channels carry the frame only as scrambled features and the
# decoder turns them into noise: the *architecture* is Cosmos', the *weights* are not. The real
# weights are NVIDIA's (Open Model License), converted once from the released TorchScript files
# and loaded from a local path — nothing is fetched at run time (see the README):
#
#     python -m a1.model.cosmos_convert --encoder encoder.jit --decoder decoder.jit --out cosmos_ci8x8.safetensors
#     export A1_COSMOS_CI8X8=/path/to/cosmos_ci8x8.safetensors   # read by configs/pretrain_*.yaml
#
# `CosmosTokenizer.from_config` then loads them strictly (every key and shape checked). When the
# variable is set, the next cell shows the real round trip at 256².

# %%
weights = os.environ.get("A1_COSMOS_CI8X8")
if weights:
    real = CosmosTokenizer.from_config(CosmosConfig(weights=weights))
    x = torch.nn.functional.interpolate(window[0, 1:2].float() / 127.5 - 1, size=(256, 256), mode="bilinear")
    z = real.encode(x)
    rec = real.decode(z).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    show_round_trip((x + 1).mul(127.5).round().to(torch.uint8), z, rec, ["head"], f"Cosmos CI8x8 ({weights})")
else:
    print("A1_COSMOS_CI8X8 is not set: skipping the pretrained round trip")

# %% [markdown]
# ## 2 · A stand-in for the pretrained weights
#
# To make the pictures readable on a laptop, we fit the tiny tokenizer as an autoencoder on the
# synthetic world's frames for `TOKENIZER_STEPS` steps (`a1.model.foresight_preview.fit_tokenizer`)
# and freeze it again. This is **not** part of InternVLA-A1's training — there Cosmos is pretrained
# on millions of images and never changes — it only gives our decoder a meaning. Expect blurry
# frames: a few hundred steps teach it the table, the conveyor and the arms, not the small cubes.

# %%
frames = np.concatenate([source_frames(open_source(d, views).episodes, views, opts.image_size, every=2)
                         for d in (robot, human)])
print("frames to fit on:", frames.shape)
fit_losses = fit_tokenizer(foresight, torch.from_numpy(frames), TOKENIZER_STEPS)
print(f"reconstruction MSE: first {fit_losses[0]:.3f}, last {np.mean(fit_losses[-20:]):.3f}")
assert not any(p.requires_grad for p in foresight.tokenizer.parameters())  # frozen again

fig, ax = plt.subplots(figsize=(5, 2.5))
ax.plot(fit_losses)
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("pixel MSE")
ax.set_title("fitting the stand-in tokenizer")
plt.show()

latents, decoded = round_trip(foresight, window)
show_round_trip(window[:, 1], latents[:, 1], decoded[:, 1], views, "frame t of every view, fitted stand-in tokenizer")

# %% [markdown]
# Now the latent channels are small pictures of the scene: each of the 8 × 8 cells describes an
# 8 × 8 pixel patch, and the 16 channels together are enough for the decoder to redraw it.
#
# ## 3 · The generation expert predicts the latent of t + m
#
# Per view, the latents of frames t − m and t are compressed by a 1×1 and a k×k stride-k
# convolution into 4 × 4 = 16 tokens: 3 views × 2 frames × 16 = **96 tokens**. The generation
# expert reads them (and the understanding tokens) in the shared attention; its 96 outputs are
# averaged over the two frames and expanded back by a transposed convolution to one latent per
# view — all in **one forward pass**, no autoregressive decoding (`a1/model/foresight.py`). The
# Cosmos decoder turns the predicted latent into the foresight frame.
#
# We train the tiny policy on `NUM_BATCHES` fixed batches from `A1DataModule` (the tiny config's
# mixture: 80 % robot, 20 % human clips) with the policy's own losses, L = λ·L_gen + L_act
# (`joint_loss`, what `A1Module.training_step` computes). Before training, the prediction is
# whatever random weights give.
#
# The bar to clear: **"nothing moves"** — predicting that frame t + m looks like frame t
# (`hold_still_loss`). Its latent MSE is small when the scene is still; a generation expert that
# beats it has learned how the scene moves.

# %%
batches = list(islice(iter(dm.train_dataloader()), NUM_BATCHES))
shown = batches[0]
baseline, compared = (torch.cat(parts) for parts in zip(*(hold_still_loss(foresight, b) for b in batches)))
baseline_mean = masked_mean(baseline, compared).item()  # over samples with frames t and t+m of a view
# the sample to look at: a robot sample whose future differs most from its present
score = hold_still_loss(foresight, shown)[0] * shown.has_action
i = int(score.argmax())
print(f"{NUM_BATCHES} batches of {shown.batch_size}; datasets {[b.dataset_id.tolist() for b in batches]}")
print(f"hold-still latent MSE: {baseline_mean:.4f} (batch mean), {score[i]:.4f} (shown sample {i})")

policy.eval()
before = policy.foresight_frames(shown.observation)  # (B, V, 3, H, W) uint8

# %%
optimizer = build_optimizer(policy, OptimConfig(lr=LR))  # AdamW, weight decay on matrices only
history = {"L_gen": [], "L_act": []}
policy.train()
for step, batch in enumerate(islice(cycle(batches), TRAIN_STEPS)):
    losses = policy(batch)
    loss = joint_loss(losses, LAMBDA_GEN)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)  # trainer.gradient_clip_val of the configs
    optimizer.step()
    history["L_gen"].append(masked_mean(losses.gen, losses.gen_valid).item())
    history["L_act"].append(masked_mean(losses.act, losses.act_valid).item())
policy.eval()
after = policy.foresight_frames(shown.observation)
first, final = np.mean(history["L_gen"][:NUM_BATCHES]), np.mean(history["L_gen"][-NUM_BATCHES:])
print(f"first latent MSE {first:.4f}")
print(f"final latent MSE {final:.4f}")
print(f"hold-still baseline {baseline_mean:.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(history["L_gen"], label="L_gen (latent MSE)")
axes[0].axhline(baseline_mean, color="k", ls="--", lw=1, label="hold-still baseline")
axes[0].set_yscale("log")
axes[0].set_title("foresight loss")
axes[0].legend(fontsize=8)
axes[1].plot(history["L_act"], color="tab:orange")
axes[1].set_yscale("log")
axes[1].set_title("action loss (flow matching, noisy per step)")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
plt.show()

# %% [markdown]
# The latent MSE falls below the hold-still line: on these samples the expert predicts motion,
# not a copy of the present. (It has seen only these few batches — on new samples a run this
# short would not generalise; notebook 05 trains for real.) Here is the prediction as pictures,
# for every view of the shown sample: the real frames, the tokenizer's round trip of the real
# t + m (the best a prediction can decode to), and the predicted t + m before and after training.

# %%
obs = shown.observation
_, target = round_trip(foresight, shown.future_images[i])
columns = {
    f"real t − {m}": obs.images[i, :, 0],
    "real t": obs.images[i, :, 1],
    f"real t + {m}": shown.future_images[i],
    "round trip of t + m": target,
    "predicted, before": before[i],
    f"predicted, {TRAIN_STEPS} steps": after[i],
}
fig, axes = plt.subplots(len(views), len(columns), figsize=(2 * len(columns), 2.1 * len(views)))
for j, (title, imgs) in enumerate(columns.items()):
    for v in range(len(views)):
        ax = axes[v, j]
        if shown.future_mask[i, v]:
            ax.imshow(imgs[v].permute(1, 2, 0).numpy())
        ax.set_xticks([])
        ax.set_yticks([])
        if v == 0:
            ax.set_title(title, fontsize=9)
        if j == 0:
            ax.set_ylabel(views[v])
plt.tight_layout()
plt.show()
print("foresight frames:", tuple(after.shape), after.dtype)

# %% [markdown]
# ## Where next
#
# * `a1/model/foresight.py` — token compression and parallel decoding;
# * `a1/model/policy.py` — `foresight_frames` and L_gen (`_losses`);
# * notebook 05 — the full tiny training run, with and without the generation expert;
# * with `A1_COSMOS_CI8X8` set, `configs/pretrain_3b.yaml` trains against the real tokenizer and
#   validation reports PSNR/SSIM of the decoded foresight frames.
