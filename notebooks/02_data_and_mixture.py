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
# # 02 · Data: one training sample, and the pre-training mixture
#
# InternVLA-A1 learns from robot demonstrations (camera frames, joint states, actions) and from
# human videos (frames only), mixed with fixed sampling weights (paper §3.4, Table 3). This
# notebook opens a real dataset folder with a1's own readers and then plans the paper's 692M-frame
# mixture over data-loading workers — without any data on disk.
#
# **You will see:** the embedded synthetic world written as a LeRobot v3.0 folder (§1), the
# three camera views at t − m, t, t + m (§2), an action chunk against the robot state (§3), the
# greedy dataset → worker assignment of the paper (§4), and configured vs realized sampling
# weights (§5).
#
# Runs on a laptop CPU in well under a minute. *Edit `notebooks/02_data_and_mixture.py` (the
# source); the `.ipynb` is generated from it with `jupytext --to ipynb notebooks/02_data_and_mixture.py`.*

# %% tags=["parameters"]
EPISODE = 2  # which synthetic episode to look at (tasks cycle pick / push / conveyor: 2 is the conveyor)
FRAME = 20  # the sample's frame t (episodes are 60 frames at 15 fps)
WORLD_SIZE = 2  # ranks (GPUs) of the planned run; the paper's run: 64 (8 nodes × 8 GPUs)
NUM_WORKERS = 4  # DataLoader workers per rank; configs/pretrain_3b.yaml: 8 (→ 512 slots)
DRAWS = 20_000  # samples drawn from the mixture samplers; more → realized weights closer to configured

# %%

import matplotlib.pyplot as plt
import numpy as np


from a1.teaching import notebook_setup  # noqa: E402

ROOT = notebook_setup()  # the repository root; $A1_CACHE → its .cache/a1 unless set

from a1.config import load_yaml, policy_config  # noqa: E402
from a1.data.assign import DatasetSpec, assign_datasets, greedy_assign, slot_position  # noqa: E402
from a1.data.collate import DatasetNorm  # noqa: E402
from a1.data.mixture import build_mixture, simulate_frequencies, uniform_slot_probs  # noqa: E402
from a1.data.sample import make_sample  # noqa: E402
from a1.data.sources import DatasetConfig, open_source  # noqa: E402
from a1.data.stats import cache_root, dataset_stats  # noqa: E402
from a1.sim.synthetic import generate  # noqa: E402

print("repo root:", ROOT)

# %% [markdown]
# ## 1 · The synthetic world as a LeRobot dataset
#
# `configs/tiny.yaml` trains on an embedded synthetic world (`a1/sim/synthetic.py`): a top-down
# bimanual table with three tasks — pick a cube, push a block, grab a box riding a conveyor (the
# *dynamic* task, where foreseeing the future matters) — rendered by a scripted expert into a
# **LeRobot v3.0** folder (parquet + mp4 per camera), plus action-free "human" clips. It is the
# same layout as a real robot dataset, so everything below works unchanged on yours.
#
# The training config generates it on first use into `$A1_CACHE/synthetic`; we do the same.

# %%
synthetic = cache_root() / "synthetic"
if not (synthetic / "robot" / "meta" / "info.json").is_file():  # what A1DataModule.prepare_data does
    info = generate(synthetic, overwrite=True)
    print(f"generated {info['episodes']} episodes ({info['frames']} frames) and {info['human_clips']} human clips "
          f"in {info['seconds']:.1f} s")
print(sorted(p.name for p in (synthetic / "robot").iterdir()), sorted(p.name for p in (synthetic / "human").iterdir()))

# %% [markdown]
# The data section of `configs/tiny.yaml` lists the two datasets with their sampling weights; a
# `DatasetConfig` is one entry. `open_source` reads the folder and checks that every model view
# (`head`, `left_wrist`, `right_wrist`) maps to one of its cameras.

# %%
tiny = load_yaml(ROOT / "configs" / "tiny.yaml")
cfg = policy_config(ROOT / "configs" / "tiny.yaml")
views, k = cfg.views, cfg.action.chunk_size
m = tiny["data"]["options"]["history"]  # the paper's m = 15 frames (1 s at 15 fps)
size = tiny["data"]["options"]["image_size"]
entries = {d["name"]: d for d in tiny["data"]["datasets"]}
robot_cfg = DatasetConfig(**{**entries["synthetic_robot"], "path": str(synthetic / "robot")})
human_cfg = DatasetConfig(**{**entries["synthetic_human"], "path": str(synthetic / "human")})
robot, human = open_source(robot_cfg, views), open_source(human_cfg, views)
print(f"robot: {len(robot.episodes)} episodes, cameras {robot.cameras}")
print(f"human: {len(human.episodes)} clips, cameras {human.cameras}")
print(f"m = {m} frames, chunk k = {k} actions, frames {size}²")

# %% [markdown]
# ## 2 · One sample: every view at t − m, t and t + m
#
# `make_sample` cuts the training sample at frame t (paper §3.2): per view the frames **t − m**
# and **t** (the model's input) and **t + m** (the generation expert's target, "visual
# foresight"), the state q_t and the action chunk a_{t:t+k}. Indices outside the episode are
# clamped and flagged invalid in `image_valid`, so they are masked out of attention and losses.

# %%
episode = robot.episodes[EPISODE]
sample = make_sample(episode, FRAME, views, m, k, 0, f"synthetic_robot/{EPISODE}/{FRAME}", size)
print("instruction:", repr(sample.instruction))
print("images", sample.images.shape, sample.images.dtype, "(views, t−m/t/t+m, RGB, H, W)")
print("image_valid", sample.image_valid.tolist())
print("state", sample.state.shape, " actions", sample.actions.shape, f" valid steps {sample.action_valid.sum()} of {k}")


def show_window(sample, title):
    times = [f"t − {m}", "t", f"t + {m}"]
    fig, axes = plt.subplots(len(views), 3, figsize=(6.5, 2.2 * len(views)))
    for v, view in enumerate(views):
        for j in range(3):
            ax = axes[v, j]
            if sample.image_valid[v, j]:
                ax.imshow(sample.images[v, j].transpose(1, 2, 0))
            else:  # a masked view: the model never looks at these pixels
                ax.text(0.5, 0.5, "missing\n(masked)", ha="center", va="center", color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            if v == 0:
                ax.set_title(times[j] + ("  (target)" if j == 2 else "  (input)"), fontsize=9)
            if j == 0:
                ax.set_ylabel(view)
    fig.suptitle(title, fontsize=10)
    plt.tight_layout()
    plt.show()


show_window(sample, f"{sample.instruction!r}, frame t = {FRAME}")

# %% [markdown]
# On the conveyor the box keeps moving whatever the arms do: frame t + m cannot be copied from t.
# That is what the generation expert learns to predict (notebook 04).
#
# A human clip has one egocentric camera, fed to the `head` view; both wrist views are missing
# and masked. It has no state and no actions, so it trains only the foresight loss L_gen.

# %%
clip = human.episodes[0]
human_sample = make_sample(clip, FRAME, views, m, k, 1, f"synthetic_human/0/{FRAME}", size)
print("has actions:", human_sample.has_action, " image_valid:", human_sample.image_valid.tolist())
show_window(human_sample, f"human clip: {human_sample.instruction!r}")

# %% [markdown]
# ## 3 · An action chunk over time
#
# The action expert predicts a **chunk** of k actions a_t … a_{t+k−1} at once (paper §3.3). Here
# the actions are 14 joint targets (6 joints + gripper per arm); in this world `action[t] =
# state[t + 1]`, the next commanded state, so the action curve leads the state curve by one step.

# %%
states, actions = episode.vectors()  # (T, 14) raw states and actions of the whole episode
steps = np.arange(FRAME, FRAME + k)
valid = sample.action_valid
names = [f"{arm} j{i}" for arm in ("left", "right") for i in range(6)]
names = names[:6] + ["left grip"] + names[6:] + ["right grip"]
fig, axes = plt.subplots(2, 7, figsize=(14, 4), sharex=True)
for d, ax in enumerate(axes.flat):
    ax.plot(steps[valid], sample.actions[valid, d], "o-", ms=2.5, color="tab:orange", label="action a")
    ax.plot(steps[valid], states[steps[valid], d], color="tab:blue", label="state q")
    ax.set_title(names[d], fontsize=9)
    ax.tick_params(labelsize=7)
axes[0, 0].legend(fontsize=7)
fig.supxlabel("frame")
fig.suptitle(f"raw action chunk a_{{t:t+{k}}} (orange) and the state over the same frames (blue), t = {FRAME}")
plt.tight_layout()
plt.show()

# %% [markdown]
# The model does not predict these raw numbers. `configs/tiny.yaml` trains this ALOHA-style
# layout with **delta actions** (joint action − q_t; grippers, dims 6 and 13, stay absolute) —
# the official InternVLA-A1 recipe — **normalised** per dataset with mean/std statistics.
# `dataset_stats` finds or computes them (and caches them under `$A1_CACHE/stats`); a
# `DatasetNorm` applies the transform the collator uses for every batch, and inverts it at
# deployment.

# %%
state_stats, action_stats, origin = dataset_stats(robot_cfg, k)
norm = DatasetNorm(state_stats, action_stats, robot_cfg.normalization, robot_cfg.action_mode, robot_cfg.absolute_dims)
model_actions = norm.actions_to_model(sample.actions, sample.state)  # (k, 14): what L_act compares against
back = norm.actions_to_raw(model_actions, sample.state)
print("statistics:", origin)
print(f"max |raw − actions_to_raw(actions_to_model(raw))| = {np.abs(back - sample.actions).max():.2e}")

fig, ax = plt.subplots(figsize=(7, 3))
for d in range(14):
    ax.plot(steps[valid], model_actions[valid, d], lw=1, color="tab:red" if d in robot_cfg.absolute_dims else "grey")
ax.set_xlabel("frame")
ax.set_ylabel("normalised value")
ax.set_title("the chunk as the model sees it: joint deltas (grey) and grippers (red), normalised")
plt.show()

# %% [markdown]
# ## 4 · The paper's mixture over data-loading workers
#
# Pre-training mixes five sources (paper Table 3): 396M + 17M + 206M + 5M + 68M frames with
# sampling weights 0.64 / 0.08 / 0.18 / 0.02 / 0.08. `configs/pretrain_3b.yaml` holds them; we
# only read its `data.datasets` (name, `frames`, `weight`) — the datasets themselves are not
# needed to plan.
#
# Every DataLoader worker on every rank is a **slot**; a slot opens only the datasets assigned to
# it (opening 692M frames in every worker would exhaust memory). The paper's rule (§3.4,
# "load-balanced parallel training"): sort datasets by size, give each to the currently
# least-loaded slot.

# %%
pretrain = load_yaml(ROOT / "configs" / "pretrain_3b.yaml")
specs = [DatasetSpec(d["name"], float(d["frames"]), float(d["weight"])) for d in pretrain["data"]["datasets"]]
names = [s.name for s in specs]
weights = np.array([s.weight for s in specs])
for s in specs:
    print(f"{s.name:<18} {s.size / 1e6:6.0f}M frames  weight {s.weight:.2f}")
slots = WORLD_SIZE * NUM_WORKERS
paper_ranks = pretrain["trainer"]["devices"] * pretrain["trainer"]["num_nodes"]
print(f"planning {WORLD_SIZE} ranks × {NUM_WORKERS} workers = {slots} slots "
      f"(the paper's run: {paper_ranks} ranks × {pretrain['data']['num_workers']} workers)")

colors = plt.cm.tab10(np.arange(len(specs)))
slot_labels = [f"r{r}w{w}" for r, w in (slot_position(s, NUM_WORKERS) for s in range(slots))]


def stacked_bars(ax, values, ylabel, title):
    """values: (slots, datasets), stacked per slot in dataset colours."""
    bottom = np.zeros(len(values))
    for d in range(values.shape[1]):
        ax.bar(np.arange(len(values)), values[:, d], bottom=bottom, color=colors[d], label=names[d])
        bottom += values[:, d]
    ax.set_xticks(np.arange(len(values)), slot_labels, fontsize=7, rotation=90 if len(values) > 16 else 0)
    ax.set_xlabel("slot (rank r, worker w)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


greedy = greedy_assign([s.size for s in specs], slots)  # the bare rule: each dataset exactly once
greedy_loads = np.zeros((slots, len(specs)))
for s, members in enumerate(greedy):
    greedy_loads[s, members] = [specs[d].size for d in members]
fig, ax = plt.subplots(figsize=(8.5, 3.5))
stacked_bars(ax, greedy_loads / 1e6, "frames held (M)", "paper's greedy rule, each dataset once")
ax.axhline(greedy_loads.sum() / slots / 1e6, color="k", ls="--", lw=1, label="mean load")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
plt.tight_layout()
plt.show()
print("slots holding nothing:", [slot_labels[s] for s, members in enumerate(greedy) if not members])

# %% [markdown]
# With five datasets of very different sizes the bare rule cannot balance: one slot holds all
# 396M frames of InternData-A1, and with more slots than datasets some slots stay idle. The paper
# allows **replication** ("controlled replication to avoid idle workers ... load-aware
# placement"). a1 (`a1/data/assign.py`) gives each dataset about S·w slots (its weight's share),
# counts each replica's part of the dataset towards its slot's load, places the replicas with the
# same greedy rule (every replica samples the dataset with its own seed), and
# `a1/data/mixture.py` then computes per-slot sampling probabilities.

# %%
mixture = build_mixture(specs, slots, seed=0)
assignment = mixture.assignment
loads = np.zeros((slots, len(specs)))
for s, placements in enumerate(assignment.slots):
    for p in placements:
        loads[s, p.dataset] = p.share * specs[p.dataset].size
print("replicas per dataset:", dict(zip(names, assignment.num_replicas)))
print(f"load balance (max/mean slot load): {assignment.balance:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
stacked_bars(axes[0], loads / 1e6, "frames held (M)", "a1: replicated greedy placement")
axes[0].axhline(loads.sum() / slots / 1e6, color="k", ls="--", lw=1, label="mean load")
stacked_bars(axes[1], mixture.probs, "P(draw dataset)", "per-slot sampling probabilities")
fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="center right")
plt.tight_layout(rect=(0, 0, 0.86, 1))
plt.show()

# %% [markdown]
# ## 5 · Configured vs realized sampling weights
#
# A DataLoader takes batches from its workers in turn, so every slot contributes the same number
# of samples: the realized mixture is the **mean over slots** of what each slot draws. The naive
# scheme — each slot samples its datasets uniformly — therefore distorts the configured weights.
# a1 solves for per-slot probabilities whose slot mean is exactly the configured weights (a
# transportation problem, see `a1/data/mixture.py`). Below, both are measured by actually drawing
# `DRAWS` samples round-robin over the slots with a1's seeded `SlotSampler`s.

# %%
naive_probs = uniform_slot_probs(assign_datasets(specs, slots, seed=0))
naive = simulate_frequencies(naive_probs, names, DRAWS, NUM_WORKERS, seed=0)
realized = simulate_frequencies(mixture.probs, names, DRAWS, NUM_WORKERS, seed=0)
configured = dict(zip(names, mixture.weights))
print(f"{'dataset':<18}{'configured':>11}{'naive':>9}{'a1':>9}")
for n in names:
    print(f"{n:<18}{configured[n]:>11.3f}{naive[n]:>9.3f}{realized[n]:>9.3f}")
tv = 0.5 * sum(abs(realized[n] - configured[n]) for n in names)
tv_naive = 0.5 * sum(abs(naive[n] - configured[n]) for n in names)
print(f"total variation from configured: naive {tv_naive:.3f}, a1 {tv:.3f} ({DRAWS} draws)")

x = np.arange(len(names))
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.bar(x - 0.27, [configured[n] for n in names], 0.27, label="configured (Table 3)", color="k")
ax.bar(x, [naive[n] for n in names], 0.27, label="naive: uniform within a slot", color="tab:grey")
ax.bar(x + 0.27, [realized[n] for n in names], 0.27, label="a1: solved per-slot probabilities", color="tab:green")
ax.set_xticks(x, names, fontsize=8)
ax.set_ylabel("share of samples")
ax.set_title(f"sampling weights, {slots} slots, {DRAWS} draws")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The a1 bars match the configured ones up to sampling noise (about √(w/DRAWS)). With the
# paper's 512 slots the naive scheme happens to land close too, because the weight-driven
# replication already gives each dataset about S·w slots; on small clusters — like the 8 slots
# here — it does not. The same plan for any config, as text:
#
#     python -m a1.data.plan --config configs/pretrain_3b.yaml --world-size 64 --num-workers 8
#
# ## Where next
#
# * `a1/data/sample.py` — the t ± m windows and the action chunk;
# * `a1/data/datamodule.py` — how `A1DataModule` wires sources, mixture and workers together;
# * notebook 04 — what the generation expert does with the frame t + m.
