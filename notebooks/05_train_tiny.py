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
# # 05 · Train the tiny model, and the ablation without foresight
#
# This notebook runs the real training command — `python -m a1.fit --config configs/tiny.yaml`
# (README, *Training*) — from Python, reads back what the run wrote, and compares it with the
# **two-expert ablation** that has no generation expert (`configs/tiny_nogen.yaml`, the pi0-like
# variant of paper §5.5, Fig. 9).
#
# Both runs train on the embedded **synthetic world** (a LeRobot bimanual dataset plus action-free
# human clips, generated on first use) with the joint objective of paper §3.3, Eq. 4:
#
# $$\mathcal{L} = \lambda\,\mathcal{L}_{gen} + \mathcal{L}_{act}, \qquad \lambda = 0.01,$$
#
# where L_gen is the MSE of the predicted Cosmos latent of frame t+m (Eq. 1) and L_act the
# flow-matching velocity error of the action chunk (Eq. 2). Human clips have no actions, so they
# train L_gen only.
#
# **You will see:** the start-up report of a run (§1), its loss and validation curves read from
# `metrics.csv` (§2), and the same for the ablation on one figure (§3).
#
# The default settings (parameters cell) are cut down so that both runs finish in about two
# minutes on two CPU cores; the comments give the values for a real run.
#
# *Edit `notebooks/05_train_tiny.py` (the source); the `.ipynb` is generated from it with
# `jupytext --to ipynb notebooks/05_train_tiny.py`.*

# %% tags=["parameters"]
MAX_STEPS = 100  # real use: 300, configs/tiny.yaml's trainer.max_steps (~2 min per run on 2 cores), or more
VAL_EVERY = 25  # validation every N steps; real use: 100 (the config's trainer.val_check_interval)
LOG_EVERY = 5  # a metrics.csv row every N steps; real use: 10 (the config's trainer.log_every_n_steps)
NUM_WORKERS = 0  # DataLoader workers; 0 starts fastest for short runs; real use: 2 (the config's data.num_workers)
RUN_ROOT = None  # None: a new temporary folder; real use: e.g. "outputs/notebook_05" (relative to the repo root)

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


from a1.teaching import notebook_setup  # noqa: E402

ROOT = notebook_setup()  # the repository root; $A1_CACHE → its .cache/a1 unless set

from a1.fit import main as fit  # noqa: E402
from a1.train.metrics_log import read_metrics  # noqa: E402
from a1.train.report import STARTUP, format_startup  # noqa: E402

# A fresh run never overwrites a folder that holds a run (a1.train.run_folder): each execution of
# this notebook trains into a new folder.
if RUN_ROOT is not None:
    (ROOT / RUN_ROOT).mkdir(parents=True, exist_ok=True)
RUNS = Path(tempfile.mkdtemp(prefix="a1_nb05_", dir=None if RUN_ROOT is None else ROOT / RUN_ROOT))
print("runs go to", RUNS)


def fit_args(*configs: str, folder: Path) -> list[str]:
    """The command line of `python -m a1.fit`: layered configs, then this notebook's overrides."""
    return [*(f"--config={ROOT / 'configs' / c}" for c in configs),
            f"--trainer.default_root_dir={folder}",
            f"--trainer.max_steps={MAX_STEPS}",
            f"--trainer.val_check_interval={VAL_EVERY}",
            f"--trainer.log_every_n_steps={LOG_EVERY}",
            f"--data.num_workers={NUM_WORKERS}"]


print("python -m a1.fit", " ".join(fit_args("tiny.yaml", folder=RUNS / "tiny")))

# %% [markdown]
# ## 1 · Train the tiny model
#
# `a1.fit.main(argv)` is `python -m a1.fit` in-process (LightningCLI): the same checks before
# anything is built, the same run folder. It prints a **start-up report**, then one progress line
# every `LOG_EVERY` steps and one per validation. Everything the run writes lands in
# `trainer.default_root_dir`: `config.yaml`, `metrics.csv`, `tensorboard/`, `checkpoints/`
# (`last.ckpt` is what `python -m a1.export` turns into a policy folder, notebook 06), and the
# start-up / closing reports as JSON.

# %%
tiny_dir = RUNS / "tiny"
fit(fit_args("tiny.yaml", folder=tiny_dir))
print(sorted(p.name for p in tiny_dir.iterdir()))

# %% [markdown]
# The start-up report, read back from `startup_report.json`: per dataset what was found
# (episodes and frames for train/validation, which camera feeds each view — the human clips have
# only a head view and no actions —, state/action dims, where the normalisation statistics came
# from, configured vs realised sampling weight), the parameters per expert, and the global batch.

# %%
tiny_report = json.loads((tiny_dir / STARTUP).read_text())
print(format_startup(tiny_report))
closing = json.loads((tiny_dir / "closing_report.json").read_text())
print("closing report:", closing)

# %% [markdown]
# ## 2 · Read the curves back from `metrics.csv`
#
# Every logged value is a column of `metrics.csv`; training rows leave the validation columns
# empty and vice versa. `a1.train.metrics_log.read_metrics` turns the table into one series
# (steps, values) per metric:

# %%
tiny = read_metrics(tiny_dir)
for name, series in tiny.items():
    print(f"{name:30s} {len(series):3d} points, last {series.last:.4g}")

# %% [markdown]
# What the training curves are (README, *Training*):
#
# * `train/loss_act` — the flow-matching loss. It is noisy: each step draws new noise ε and a new
#   flow time τ per sample, and the error depends strongly on τ (near pure noise the velocity is
#   hard to predict). Its trend is what counts.
# * `train/loss_gen` — the foresight latent MSE. It is small in absolute terms (the latents have a
#   small scale), and enters the total loss with weight λ = 0.01.
#
# And validation, on held-out episodes (`limit_val_batches` batches, fixed noise):
#
# * `val/action_mse` — MSE between action chunks **sampled** with K Euler steps and the
#   demonstrated chunks, in normalised units over real dims and in-episode steps; `h0`…`h4` split
#   it over the near → far fifths of the chunk.
# * `val/latent_mse` — the foresight latent MSE at t+m (L_gen without noise).
#
# A sampled chunk is a *draw* from the policy: a policy that ignored its inputs and drew chunks
# that merely look like the data would score up to about 2 (twice the variance, which
# normalisation makes ≈ 1 per dim). Conditioning on the images, the state and the prompt is what
# brings it below that — it takes far more than a notebook's worth of steps.

# %%
def plot_run(metrics: dict, axes, label: str, color: str) -> None:
    """train/loss_act, train/loss_gen, val/action_mse, val/latent_mse against steps done."""
    for ax, key in zip(axes, ["train/loss_act", "train/loss_gen", "val/action_mse", "val/latent_mse"]):
        if key in metrics:
            s = metrics[key]
            ax.plot(s.steps + 1, s.values, "o-" if key.startswith("val") else "-", color=color, label=label, ms=4)
        ax.set_title(key)
        ax.set_xlabel("step")


fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
plot_run(tiny, axes, "tiny", "tab:blue")
axes[0].set_yscale("log")
plt.tight_layout()
plt.show()

# %% [markdown]
# (Lightning's `step` column is 0-based; the plots show steps done, i.e. step + 1.)
#
# ## 3 · The ablation: no generation expert
#
# `configs/tiny_nogen.yaml` is a three-line **overlay** on `tiny.yaml` (`--config` files layer key
# by key): `model.policy.generation.enabled: false`. The model is then the understanding expert
# plus the action expert — no foresight tokens, no Cosmos tokenizer, no L_gen — and the action
# tokens attend to the prefix and the state only. Same data, same seed, same steps:

# %%
nogen_dir = RUNS / "tiny_nogen"
fit(fit_args("tiny.yaml", "tiny_nogen.yaml", folder=nogen_dir))
nogen = read_metrics(nogen_dir)
nogen_report = json.loads((nogen_dir / STARTUP).read_text())
print(format_startup(nogen_report))

# %% [markdown]
# Side by side, from the two start-up reports: the parameters each expert has (the frozen ones are
# the Cosmos tokenizer and the understanding weights no loss reaches), and the speed of each run.

# %%
print(f"{'':14s} {'tiny':>12s} {'tiny_nogen':>12s}")
for part in ("understanding", "generation", "action", "other"):
    counts = [r["model"][part]["parameters"] for r in (tiny_report, nogen_report)]
    print(f"{part:14s} {counts[0]:12,d} {counts[1]:12,d}")
for what in ("trainable", "frozen"):
    counts = [r["model"]["total"][what] for r in (tiny_report, nogen_report)]
    print(f"{'total ' + what:14s} {counts[0]:12,d} {counts[1]:12,d}")
speed = [np.median(m["train/samples_per_s"].values) for m in (tiny, nogen)]
print(f"{'samples/s':14s} {speed[0]:12.1f} {speed[1]:12.1f}   (median over the logged steps)")

# %% [markdown]
# Both runs on one figure. The ablation logs `train/loss_gen` = 0 (it has nothing to predict) and
# no `val/latent_mse`: only the full model learns to predict the future frame.
#
# The two L_act curves zig-zag *together*: both runs share the seed, hence the same batches and the
# same draws of ε and τ at every step, and those draws — not the model — make most of the
# step-to-step noise. That makes the comparison paired: what separates the curves is the model,
# not the draws (only the initial weights differ by chance).

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
plot_run(tiny, axes, "tiny (3 experts)", "tab:blue")
plot_run(nogen, axes, "tiny_nogen (no generation)", "tab:orange")
axes[0].set_yscale("log")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Where in the chunk do the errors sit? The last validation's `val/action_mse_h0…h4`, near → far
# fifths of the k = 16 predicted steps:

# %%
fifths = np.arange(5)
fig, ax = plt.subplots(figsize=(6, 3))
for offset, (name, m, color) in zip((-0.2, 0.2), (("tiny", tiny, "tab:blue"), ("tiny_nogen", nogen, "tab:orange"))):
    values = [m[f"val/action_mse_h{i}"].last for i in fifths]
    ax.bar(fifths + offset, values, width=0.4, color=color, label=name)
    print(f"{name:10s} last val/action_mse {m['val/action_mse'].last:.3f}; by fifth (near → far): "
          + " ".join(f"{v:.2f}" for v in values))
ax.set_xticks(fifths, [f"h{i}" for i in fifths])
ax.set_xlabel("fifth of the action chunk (near → far)")
ax.set_ylabel("val MSE (normalised)")
ax.legend()
plt.show()

# %% [markdown]
# The near steps are the easiest: tiny's actions are **deltas** to the current state
# (a_{t+i} − q_t, `action_mode: delta`), which are small a step or two ahead and spread out
# further on — so the far end of a chunk is where a policy has to know where the task is going.

# %% [markdown]
# **Reading the comparison.** After a hundred CPU steps on a toy world the two L_act curves
# mostly overlap, and the validation numbers move within their noise (16 validation samples); the
# smaller ablation may well score lower this early. Do not read the paper's result into this: its
# ablation (§5.5, Fig. 9) is measured **closed loop**, with the 3B model on 12 real-world tasks —
# average success 77.0 % with the generation expert, 57.6 % without, the largest drops on the
# dynamic tasks (Express Sorting, In-motion Ingredient Picking). What foresight buys is a
# representation of *how the scene moves*, which pays off when the robot must act on it: notebook
# 07 rolls policies out closed loop in the MuJoCo conveyor scene, where `configs/sim_aloha.yaml`
# and `configs/sim_aloha_nogen.yaml` train the two variants.
#
# ## Where next
#
# * a longer run: set `MAX_STEPS = 300` (or more) and `VAL_EVERY = 100`, or run
#   `python -m a1.fit --config configs/tiny.yaml` in a terminal and look at it with
#   `tensorboard --logdir outputs/tiny`;
# * resume a run: `python -m a1.fit --config configs/tiny.yaml --trainer.default_root_dir DIR --ckpt_path last`;
# * export it and serve it: `python -m a1.export DIR/checkpoints/last.ckpt checkpoints/tiny_policy`,
#   then notebook 06.

# %%
print("run folders:", tiny_dir, nogen_dir, sep="\n  ")
