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
# # 01 · Architecture tour: three experts, one attention
#
# InternVLA-A1 (paper §3) is a robot policy built from **three transformer experts** that share
# one attention per layer — a *Mixture-of-Transformers* (MoT, §3.1):
#
# 1. an **understanding** expert — a multimodal LLM (Qwen3-VL-2B for the 3B model, InternVL3-1B
#    for the 2B model) reading the camera views at time t and the instruction;
# 2. a **generation** expert — predicts the camera frames at t + m (m = 15) as latents of the
#    Cosmos image tokenizer ("visual foresight", §3.2);
# 3. an **action** expert — turns all of that plus the robot state into a chunk of actions by
#    flow matching (§3.3; notebook 03).
#
# **You will see:** the real modules of one MoT layer and how many tokens each expert feeds into
# it (§1), the token budget of every block at 3B and 2B scale (§2), the attention mask that wires
# the experts together, drawn for a tiny policy (§3), and the parameters per expert against the
# paper's Table 1 (§4).
#
# Nothing is downloaded and nothing is trained: the tiny model (`configs/tiny.yaml`) is the real
# architecture with a million random weights, and the 3B / 2B models are built on PyTorch's
# *meta* device — shapes only, no memory. About half a minute on a laptop CPU.
#
# *Edit `notebooks/01_model_tour.py` (the source); the `.ipynb` is generated from it with
# `jupytext --to ipynb --update notebooks/01_model_tour.py`.*

# %% tags=["parameters"]
TINY_CONFIG = "configs/tiny.yaml"  # the model whose modules and mask we run (random weights, CPU)
# The full-size models, summarised on the meta device (seconds, no weights): any config with a
# model.policy section works, e.g. configs/posttrain_3b.yaml.
SCALE_CONFIGS = {"3B": "configs/pretrain_3b.yaml", "2B": "configs/pretrain_2b.yaml"}
BATCH_SIZE = 2  # samples in the tiny batch; sample 1 gets its right wrist camera removed

# %%

import matplotlib.pyplot as plt
import torch


from a1.teaching import notebook_setup  # noqa: E402

ROOT = notebook_setup()  # the repository root; $A1_CACHE → its .cache/a1 unless set

from a1.config import policy_config  # noqa: E402
from a1.model.mask import ACTION, GENERATION, STATE, UNDERSTANDING  # noqa: E402
from a1.model.policy import InternVLAA1  # noqa: E402
from a1.model.summary import format_text, summarize  # noqa: E402
from a1.testing import random_batch  # noqa: E402

torch.manual_seed(0)
print("repo root:", ROOT)

# %% [markdown]
# ## 1 · One MoT layer, three experts
#
# A YAML config's `model.policy` section becomes a typed `PolicyConfig`; `InternVLAA1` is a
# plain `torch.nn.Module` holding the three experts. The layer loop, `model.mot`
# (`a1/model/mot.py`), runs them side by side: in layer i every expert normalises **its own**
# tokens and projects them to queries, keys and values with **its own** weights; the three
# streams' q, k, v are concatenated and go through **one** attention; each expert then takes
# back its slice of the attention output and applies its own output projection and MLP.

# %%
cfg = policy_config(ROOT / TINY_CONFIG)
model = InternVLAA1(cfg).eval()
print("streams of the MoT, in sequence order:", model.mot.names)
print("layers:", model.mot.num_layers)
for name, expert in zip(model.mot.names, model.mot.experts):
    print(f"  {name}: {type(expert).__name__:<20} layer 0 is a {type(expert.layers[0]).__name__}")

# %% [markdown]
# Here is one of those blocks — the action expert's layer 0 — as PyTorch prints it. The
# understanding and generation experts' layer 0 have the same parts (input norm, `q_proj`,
# `k_proj`, `v_proj`, q/k RMSNorm, `o_proj`, post-attention norm, MLP) with their own weights.
# The block's own `forward` is never called: `MoT.layer` calls its parts in the order above.

# %%
print(model.action.layers[0])

# %% [markdown]
# To see what flows through one layer, we hook layer 0 of each expert during a real training
# forward pass on a random batch (`a1.testing.random_batch`: smooth random camera frames, real
# tokenised instructions, smooth action chunks). Each `q_proj` sees only its expert's tokens;
# each `o_proj` sees that expert's slice of the **shared** attention output.

# %%
batch = random_batch(cfg, BATCH_SIZE)
seen: dict[str, dict[str, tuple]] = {name: {} for name in model.mot.names}


def record(name, key, use_input):
    def hook(module, inputs, output):
        seen[name][key] = tuple((inputs[0] if use_input else output).shape)
    return hook


hooks = []
for name, expert in zip(model.mot.names, model.mot.experts):
    attn = expert.layers[0].self_attn
    hooks += [attn.q_proj.register_forward_hook(record(name, "stream in", True)),
              attn.q_proj.register_forward_hook(record(name, "q", False)),
              attn.k_proj.register_forward_hook(record(name, "k, v", False)),
              attn.o_proj.register_forward_hook(record(name, "attention slice", True))]
with torch.no_grad():
    model(batch)
for h in hooks:
    h.remove()

print(f"{'stream':<7}" + "".join(f"{key:>20}" for key in seen["und"]))
for name, shapes in seen.items():
    print(f"{name:<7}" + "".join(f"{s!s:>20}" for s in shapes.values()))
lengths = {name: shapes["stream in"][1] for name, shapes in seen.items()}
print(f"tokens per stream: {lengths} -> one attention over {sum(lengths.values())} tokens per sample")

# %% [markdown]
# Shapes are (batch, tokens, features). The tiny model has 42 understanding tokens, 96
# generation tokens and 17 action-stream tokens (1 state + 16 actions), so every layer runs one
# attention over 155 tokens. Queries have 4 heads × 16 dims, keys and values 2 heads × 16
# (grouped-query attention): these head counts must be **equal** across experts for the
# concatenation to work, while hidden and MLP sizes may differ. In the tiny model all three
# experts are 64 wide; at full size they are not:

# %%
scale_cfgs = {name: policy_config(ROOT / path) for name, path in SCALE_CONFIGS.items()}


def geometry(c):
    """Per expert: (layers, hidden, MLP, query heads, KV heads, head_dim) from a PolicyConfig."""
    t = c.understanding.text
    rows = {"understanding": (t["num_hidden_layers"], t["hidden_size"], t["intermediate_size"],
                              t["num_attention_heads"], t["num_key_value_heads"],
                              t.get("head_dim", t["hidden_size"] // t["num_attention_heads"]))}
    for name, e in (("generation", c.generation.expert), ("action", c.action.expert)):
        rows[name] = (e.num_layers, e.hidden_size, e.intermediate_size, e.num_heads, e.num_kv_heads, e.head_dim)
    return rows


print(f"{'model':<6}{'expert':<15}{'layers':>7}{'hidden':>8}{'MLP':>7}{'heads':>7}{'KV':>4}{'head_dim':>10}")
for variant, c in scale_cfgs.items():
    for name, row in geometry(c).items():
        print(f"{variant:<6}{name:<15}" + "".join(f"{v:>{w}}" for v, w in zip(row, (7, 8, 7, 7, 4, 10))))

# %% [markdown]
# In the 3B model the understanding expert (Qwen3-VL-2B's language model) is 2048 wide and the
# generation/action experts (Qwen3-0.6B-shaped blocks) 1024 wide, but all have 28 layers, 16
# query heads, 8 KV heads and head_dim 128: a 1024-wide expert's `q_proj` maps 1024 → 16·128 =
# 2048. The 2B model pairs InternVL3-1B's Qwen2.5 language model with Qwen2.5-0.5B-shaped
# blocks: 24 layers, 14 heads, 2 KV heads, head_dim 64 (and the same 896 width throughout).

# %% [markdown]
# ## 2 · Token budget per block
#
# `a1.model.summary` builds a model on the meta device and reports parameters per expert and
# tokens per block (also from the shell: `python -m a1.model.summary --config CONFIG`).

# %%
summaries = {name: summarize(c) for name, c in scale_cfgs.items()}
summaries["tiny"] = summarize(cfg)
for name, path in SCALE_CONFIGS.items():
    print(f"== {name}: {path}")
    print(format_text(summaries[name], scale_cfgs[name]))
    print()

# %% [markdown]
# Where the numbers come from (3 views: head, left wrist, right wrist):
#
# * **understanding** = image tokens + instruction tokens. Qwen3-VL sees each view at 256²
#   (the released preprocessor upsamples 224² views): 16-pixel patches, 2×2 merged → 8×8 = 64
#   tokens, plus a vision-start and a vision-end token → 3 × 66 = 198. InternVL3 sees 448²:
#   14-pixel patches, pixel-shuffled by ½ → 16×16 = 256 tokens (+2) → 3 × 258 = 774. Then 48
#   instruction tokens (padding masked).
# * **generation** = 3 views × 2 frames (t − 15, t) × 16 tokens: each 256² frame becomes a
#   16×32×32 Cosmos latent, and an 8×8 stride-8 convolution makes a 4×4 token grid (§3.2).
# * **state** = 1 token (the proprioceptive state); **action** = k = 50 tokens, one per step of
#   the chunk.
#
# The 2B model's sequence is 2.5× longer than the 3B model's — attention costs grow with its
# square — which is why the paper finds both run at ~13 Hz despite the 2B model's fewer
# parameters (§3.4).

# %%
parts = [("understanding_image", "und: image", "tab:blue"), ("understanding_text", "und: text", "lightsteelblue"),
         ("generation", "generation", "tab:green"), ("state", "state", "tab:orange"), ("action", "actions", "tab:red")]
fig, ax = plt.subplots(figsize=(9, 2.6))
names = ["tiny", *SCALE_CONFIGS]
for y, name in enumerate(names):
    left = 0
    for key, label, color in parts:
        n = summaries[name]["tokens"][key]
        ax.barh(y, n, left=left, color=color, label=label if y == 0 else None)
        if n >= 40:
            ax.text(left + n / 2, y, str(n), ha="center", va="center", fontsize=8, color="white")
        left += n
    ax.text(left + 8, y, f"{left} tokens", va="center", fontsize=9)
ax.set_yticks(range(len(names)), names)
ax.set_xlim(0, 1100)
ax.set_xlabel("tokens per sample in the sequence [understanding | generation | state | actions]")
ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.35))
plt.show()

# %% [markdown]
# ## 3 · The attention mask
#
# The sequence is `[understanding | generation | state | actions]`. A token may attend to every
# token of its own block and of every **earlier** block, never to a later one (§3.2,
# `a1/model/mask.py`): understanding → generation → action. Padding (unused instruction
# positions, missing camera views) is never attended to.
#
# `model.attention_layout(obs)` returns the block id of every token and the (B, L, L) mask the
# training forward pass uses. We draw it for the tiny policy: sample 0 with all three cameras,
# sample 1 with its right wrist camera marked missing (as for a robot without one).

# %%
obs = batch.observation
obs.image_mask[1, 2] = False  # sample 1: no right wrist camera (both frames)
token_blocks, mask = model.attention_layout(obs)  # (L,), (B, L, L): True = query row may attend key column
n_img = model.understanding.num_image_tokens
block_len = {b: int((token_blocks == b).sum()) for b in (UNDERSTANDING, GENERATION, STATE, ACTION)}
print("mask:", tuple(mask.shape), "| block lengths:", block_len, "| understanding image tokens:", n_img)

# segments to label: understanding split into its image and text parts
seg_names = ["und: image", "und: text", "generation", "state", "actions"]
seg_len = [n_img, block_len[UNDERSTANDING] - n_img, block_len[GENERATION], block_len[STATE], block_len[ACTION]]
edges = torch.tensor(seg_len).cumsum(0).tolist()
starts = [0, *edges[:-1]]
centres = [(s + e - 1) / 2 for s, e in zip(starts, edges)]


def draw_mask(ax, m, title):
    ax.imshow(m.numpy(), cmap="Greys", vmin=0, vmax=1.3, interpolation="nearest")
    for i, e in enumerate(edges[:-1]):
        style = {"color": "tab:red", "lw": 1, "ls": ":" if i == 0 else "-"}  # dotted: inside understanding
        ax.axhline(e - 0.5, **style)
        ax.axvline(e - 0.5, **style)
    ax.set_xticks(centres, seg_names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(centres, seg_names, fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_title(title, fontsize=10)


fig, axes = plt.subplots(1, 2, figsize=(11, 5.4))
draw_mask(axes[0], mask[0], "sample 0: all cameras")
draw_mask(axes[1], mask[1], "sample 1: right wrist camera missing")
axes[0].set_ylabel("query (attending)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read it row by row (dark = may attend):
#
# * **understanding** rows see only the understanding block — bidirectionally, image and text
#   alike — so the multimodal LLM never sees the foresight or the noisy actions;
# * **generation** rows see the understanding block and all 96 generation tokens;
# * the **state** row (one token) sees the whole prefix and itself, **not** the actions: the
#   state token is the same at every denoising step, so its keys and values could be cached too;
# * **action** rows see the prefix, the state and every action token: the whole chunk is
#   denoised jointly, each step attending to all others.
#
# The white columns are padding: instruction positions after the end of the text, and in
# sample 1 the right wrist camera's image tokens and its 32 generation tokens. A padded *row*
# keeps only its diagonal entry (so no row is empty); its output is ignored.
#
# At inference the prefix (understanding + generation) runs **once** and its keys and values are
# cached; each of the K flow-matching steps then computes only the **state and action rows**,
# against that cache (`InternVLAA1.prepare` keeps exactly these rows):

# %%
suffix_rows = mask[0, -(block_len[STATE] + block_len[ACTION]):]  # (1 + k, L)
fig, ax = plt.subplots(figsize=(11, 2.4))
ax.imshow(suffix_rows.numpy(), cmap="Greys", vmin=0, vmax=1.3, interpolation="nearest", aspect="auto")
for i, e in enumerate(edges[:-1]):
    ax.axvline(e - 0.5, color="tab:red", lw=1, ls=":" if i == 0 else "-")
ax.axhline(0.5, color="tab:red", lw=1)
ax.set_xticks(centres, seg_names, fontsize=8)
ax.set_yticks([0, 1 + block_len[ACTION] // 2], ["state", "actions"], fontsize=8)
ax.set_title("sample 0: the rows computed at every denoising step", fontsize=10)
plt.show()

for row, label in ((0, "state row"), (1, "action row 0")):
    visible = {seg: int(suffix_rows[row, s:e].sum()) for seg, s, e in zip(seg_names, starts, edges)}
    print(f"{label:<13} attends to", ", ".join(f"{seg} {n}/{e - s}" for (seg, n), s, e in zip(visible.items(), starts, edges)))

# %% [markdown]
# ## 4 · Parameters per expert vs the paper's Table 1
#
# The paper's Table 1 lists each expert's size, from which we build the models; `summarize`
# counts the parameters of the modules a1 actually builds.

# %%
TABLE1 = {  # paper Table 1 (billions): total, understanding, generation, action
    "3B": {"total": 3.2, "understanding": 2.13, "generation": 0.44, "action": 0.44},
    "2B": {"total": 1.8, "understanding": 0.94, "generation": 0.36, "action": 0.36},
}
BACKBONES = {"3B": ("Qwen3-VL-2B", "Qwen3 blocks"), "2B": ("InternVL3-1B", "Qwen2.5 blocks")}

print(f"{'model':<6}{'part':<15}{'built by a1':>14}{'paper':>9}   what")
for variant, paper in TABLE1.items():
    s = summaries[variant]
    und, blocks = BACKBONES[variant]
    what = {"understanding": und, "generation": blocks, "action": blocks, "other": "glue, see below",
            "total": ""}
    for part in ("understanding", "generation", "action", "other", "total"):
        ref = f"{paper[part]:.2f}B" if part in paper else "—"
        print(f"{variant:<6}{part:<15}{s[part] / 1e9:>13.3f}B{ref:>9}   {what[part]}")
    print(f"{'':<6}{'  Cosmos':<15}{s['cosmos_tokenizer'] / 1e9:>13.3f}B{'':>9}   frozen image tokenizer, part of 'other'")
    print()

# %% [markdown]
# Every expert matches Table 1 to the paper's two digits: **3B total 3.223B** (2.128B + 0.440B +
# 0.440B + 0.214B) against 3.2B, and 2B 1.836B against 1.8B. The 2B's understanding expert
# counts InternVL3-1B with an untied LM head (0.94B); with tied embeddings it would be ~0.80B.
#
# **other** is what Table 1 folds into the total: the frozen Cosmos CI8x8 tokenizer (76.8M;
# encodes frames t − 15 and t, and the target t + 15 during training); the generation path's
# 8×8 stride-8 convolution into the expert and its transposed convolution out (~67M each at
# width 1024, ~51M at 896); and the action head's state / action / time projections (a few M).
# The generation and action experts are *exactly* equal in size: the same decoder blocks with
# different weights and inputs.

# %%
fig, ax = plt.subplots(figsize=(9, 2.2))
stack = [("understanding", "understanding", "tab:blue"), ("generation", "generation", "tab:green"),
         ("action", "action", "tab:red"), ("cosmos_tokenizer", "Cosmos (frozen)", "0.6"),
         ("glue", "other glue", "0.8")]
for y, variant in enumerate(TABLE1):
    s = dict(summaries[variant], glue=summaries[variant]["other"] - summaries[variant]["cosmos_tokenizer"])
    left = 0.0
    for key, label, color in stack:
        ax.barh(y, s[key] / 1e9, left=left, color=color, label=label if y == 0 else None)
        left += s[key] / 1e9
    ax.plot([TABLE1[variant]["total"]] * 2, [y - 0.45, y + 0.45], color="k", lw=2,
            label="paper total" if y == 0 else None)
ax.set_yticks(range(len(TABLE1)), list(TABLE1))
ax.set_xlabel("parameters (billions)")
ax.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.4))
plt.show()

# %% [markdown]
# ## Where next
#
# * `a1/model/mot.py` — the layer loop: per-expert projections, one attention, per-expert MLPs;
# * `a1/model/foresight.py` — the 96 foresight tokens in and the predicted latent out;
# * notebook 03 — flow matching, the action expert's sampler;
# * notebooks 04 and 05 — foresight and training the tiny model.
