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
# # 06 · Deploy: export, serve, drive a robot
#
# A trained policy reaches a robot in three hops (README, *Deployment*):
#
# 1. **export** — `python -m a1.export CKPT OUT` turns a training checkpoint into a *policy
#    folder*: safetensors weights, the config, the normalisation statistics, the tokenizer.
#    Nothing in it needs unpickling;
# 2. **serve** — `python deploy/serve.py --policy OUT --robot NAME` loads it on the GPU (here: the
#    CPU), compiles the hot path and answers observations over a websocket with msgpack messages —
#    the `openpi-client` protocol, so openpi robot clients work unchanged;
# 3. **drive** — the robot's control loop (`deploy/run_robot.py`) reads the cameras and joints at
#    the robot's rate, asks for a chunk of actions every `execute` steps and sends each action
#    through a **safety layer** (`SafeRobot`: joint limits, largest change per step, watchdog).
#
# Here the robot is `sim_aloha`: the `sim` adapter, an ALOHA-shaped 14-joint arm with no hardware
# whose cameras draw one bar per joint. Per request, the policy runs its prefix (understanding +
# generation) once, then K Euler steps of the action expert against the cached prefix (paper
# §3.3, Eq. 3); the paper's 3B model does this at about 13 Hz with `torch.compile` on an RTX 4090
# (§3.4, Table 1).
#
# **You will see:** a policy folder (§1), the server answering the simulated robot for a few
# seconds (§2), the latency of every request (§3), the action chunks as planned and as executed
# (§4), and the future frames the generation expert predicts on the way (§5).
#
# *Edit `notebooks/06_deploy.py` (the source); the `.ipynb` is generated from it with
# `jupytext --to ipynb notebooks/06_deploy.py`.*

# %% tags=["parameters"]
CHECKPOINT = None  # None: a random-weight tiny policy (meaningless actions); real use: a trained run's
# checkpoint, e.g. "outputs/tiny/checkpoints/last.ckpt" (relative to the repo root; from
# `python -m a1.fit --config configs/tiny.yaml` or notebook 05), exported with python -m a1.export
STEPS = 100  # control ticks at the robot's 50 Hz (2 s); real use: 500 (10 s)
EXECUTE = 8  # actions executed per request, of the 16 in a chunk; None: the robot config's (sim_aloha: all 16)
COMPILE = False  # torch.compile in the server; real use: True (about a minute of warm-up on a CPU, faster requests)
PROMPT = "fold the towel"

# %%
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


from a1.teaching import notebook_setup  # noqa: E402
from a1.policy_folder import normalization_names  # noqa: E402

ROOT = notebook_setup()  # the repository root; $A1_CACHE → its .cache/a1 unless set

from a1.deploy.client import PolicyClient  # noqa: E402
from a1.deploy.robots import SafeRobot, load_robot_config, make_robot, policy_images  # noqa: E402
from a1.deploy.runtime import PolicyRuntime, RuntimeOptions  # noqa: E402
from a1.deploy.trace import drive  # noqa: E402
from a1.export import main as export  # noqa: E402
from a1.testing import random_policy_folder  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="a1_nb06_"))  # a new folder per execution: nothing is overwritten
print("repo root:", ROOT, "\nwork folder:", WORK)

# %% [markdown]
# ## 1 · The policy folder
#
# With a checkpoint, this is exactly `python -m a1.export CKPT OUT`. Without one, so that the
# notebook runs on its own in seconds, `a1.testing.random_policy_folder` writes the same kind of
# folder for a random-weight tiny model (configs/tiny.yaml) with made-up statistics for a 14-dim
# robot named `sim_aloha`. Its actions are meaningless; everything around them is real.

# %%
policy_dir = WORK / "tiny_policy"
if CHECKPOINT is None:
    random_policy_folder(policy_dir, ROOT / "configs" / "tiny.yaml", name="sim_aloha")
else:
    assert export([str(ROOT / CHECKPOINT), str(policy_dir)]) == 0, "export failed (the error is printed above)"
for path in sorted(policy_dir.rglob("*")):
    if path.is_file():
        print(f"{path.relative_to(policy_dir)!s:40s} {path.stat().st_size:>10,d} bytes")
config = json.loads((policy_dir / "config.json").read_text())
print("\nprocessor (how raw frames become training-like samples):", config["processor"])
print("export metadata:", config["a1"])
print("normalisations:", normalization_names(policy_dir))

# %% [markdown]
# `config.json: processor` records the training frame size, the frame geometry and m (frames t−m
# and t go in, t+m is predicted), so a deployed policy processes camera frames of any size exactly
# as it was trained. `normalization.json` holds one entry per training dataset: the robot config
# (or `--normalization`) picks one, or the only one with action statistics is used.
#
# ## 2 · Serve it, and drive the simulated robot
#
# The robot's YAML is everything the loop needs to know about the robot:

# %%
robot_cfg = load_robot_config(ROOT / "deploy" / "robots" / "sim_aloha.yaml")
print(f"{robot_cfg.name}: adapter {robot_cfg.adapter}, {robot_cfg.dims} joints at {robot_cfg.control_rate_hz} Hz")
print("cameras → a1 views:", robot_cfg.cameras)
print("largest change per step (rad):", robot_cfg.max_step[:7], "… ; watchdog", robot_cfg.watchdog_s, "s")

# %% [markdown]
# The next cell is the whole deployment:
#
# * start `deploy/serve.py` as its own process (`--port 0`: any free port; it prints the address
#   when ready), as you would on the GPU machine;
# * connect `a1.deploy.client.PolicyClient` (what `deploy/run_robot.py --server` uses); the server
#   first sends its metadata;
# * drive the robot behind `SafeRobot` with `a1.deploy.trace.drive` — `run_robot.py`'s loop at
#   the robot's 50 Hz, recording every request and every tick;
# * stop the server with SIGTERM (its clean shutdown) whatever happened — `try/finally`.

# %%
command = [sys.executable, "deploy/serve.py", "--policy", str(policy_dir), "--robot", robot_cfg.name,
           "--port", "0", *(["--execute", str(EXECUTE)] if EXECUTE else []), *([] if COMPILE else ["--no-compile"])]
server_out, server_err = WORK / "server.out", WORK / "server.err"
with open(server_out, "w") as out, open(server_err, "w") as err:
    server = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + (600 if COMPILE else 120)
    while not (ready := re.search(r"ready on (ws://\S+:\d+)", server_out.read_text())):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start:\n{server_out.read_text()}\n{server_err.read_text()}")
        time.sleep(0.2)
    uri = ready.group(1)
    with PolicyClient(uri) as client, SafeRobot(make_robot(robot_cfg), keepalive=True) as safe:
        metadata = client.metadata
        safe.reset()  # home pose
        trace = drive(safe, client.infer, STEPS, PROMPT, rate_hz=robot_cfg.control_rate_hz)
finally:
    server.terminate()  # SIGTERM: serve.py's clean shutdown (like Ctrl-C in its terminal)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
print("server exit code:", server.returncode)
print(server_out.read_text().strip())
print("server metadata:", {k: metadata[k] for k in ("robot", "views", "chunk_size", "execute", "image_size",
                                                     "normalization")})
print("robot:", safe.stats)

# %% [markdown]
# The server's log (stderr) has a line per connection; the `SafeRobot` counters above say how many
# commands were sent, how many of them the safety layer changed (`clamped`), and how many only
# repeated the last command (`holds`: the stop sends one; the keep-alive thread sends more while
# the loop waits for a reply longer than the watchdog's 0.25 s).

# %%
print("\n".join(line for line in server_err.read_text().splitlines() if "a1.deploy.server" in line))

# %% [markdown]
# ## 3 · Latency per request
#
# Two clocks: the **round trip** the robot waits (`latency_ms`: sending the three 224² frames,
# decoding them, pre-processing, the model, the reply) and the **model** alone as the server
# reports it (`server_timing.infer_ms`). The control loop blocks on each request, so a tick that
# asks for a chunk is late by the round trip: at 50 Hz a tick has 20 ms. This is why real
# deployments compile the model, run it on a GPU and plan the next chunk while the current one
# still executes (`run_robot.py --async` with a local policy). The server warmed the model up
# before it announced itself (the `warm-up` times in its ready line), so the first request is not
# slower than the rest. In the right panel, the tick after a request comes late; the loop then
# catches up with one short tick and is back on its 20 ms grid (never a burst of ticks).

# %%
summary = trace.summary()
print({k: round(v, 2) if isinstance(v, float) else v for k, v in summary.items()})

fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
bins = np.linspace(0, max(trace.latency_ms.max(), 1.0) * 1.05, 30)
axes[0].hist(trace.latency_ms, bins=bins, alpha=0.7, label="round trip (client)")
axes[0].hist(trace.infer_ms, bins=bins, alpha=0.7, label="model (server_timing.infer_ms)")
axes[0].set_xlabel("ms")
axes[0].set_ylabel("requests")
axes[0].legend(fontsize=8)
axes[1].plot(trace.latency_ms, "o-", label="round trip")
axes[1].plot(trace.infer_ms, "s-", label="model")
axes[1].set_xlabel("request")
axes[1].set_ylabel("ms")
axes[1].set_title("latency per request")
axes[1].legend(fontsize=8)
ticks_ms = np.diff(trace.tick_s) * 1e3
axes[2].plot(np.arange(1, len(trace.tick_s)), ticks_ms, lw=1)
axes[2].axhline(1e3 / robot_cfg.control_rate_hz, color="k", ls="--", lw=1, label="50 Hz period")
for step in trace.request_steps:
    axes[2].axvline(step, color="tab:red", alpha=0.2)
axes[2].set_xlabel("tick (red: a request was sent)")
axes[2].set_ylabel("ms since the previous tick")
axes[2].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · The executed action chunks
#
# Each request returns `EXECUTE` raw joint targets (radians; grippers 0 closed … 1 open), which
# the loop sends one per tick. Dashed: what the policy asked for; solid: what `SafeRobot` sent
# after clamping to the limits and to the largest change per step (0.05 rad per tick for the
# arm joints); thin: the joint state the robot measured. A random policy asks for jumps, so the
# safety layer turns its chunks into ramps — exactly its job on a real arm.

# %%
joints = [0, 1, 2, 6, 9, 13]  # left waist, shoulder, elbow, gripper; right elbow, gripper
steps = np.arange(len(trace.commands))
fig, axes = plt.subplots(2, 3, figsize=(15, 5.5), sharex=True)
for ax, j in zip(axes.flat, joints):
    ax.plot(steps, trace.planned[:, j], "--", color="tab:gray", lw=1, label="policy (raw)")
    ax.plot(steps, trace.commands[:, j], color="tab:blue", label="sent (safe)")
    ax.plot(steps, trace.states[:, j], color="tab:green", lw=0.8, label="measured")
    for step in trace.request_steps:
        ax.axvline(step, color="tab:red", alpha=0.15)
    ax.set_title(robot_cfg.joints[j])
for ax in axes[1]:
    ax.set_xlabel("tick (red: a new chunk starts)")
axes[0, 0].legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"{trace.clamped.mean():.0%} of the ticks had their action changed by the safety layer")

# %% [markdown]
# ## 5 · Foresight: the frames the policy imagines
#
# On every request the generation expert predicts the Cosmos latent of the frames **t + m**
# (m = 15 control steps ahead) from frames t − m and t — that prediction is what the action expert
# attends to (paper §3.2). The server does not send it (the openpi protocol carries actions only),
# but the same policy loaded here with `PolicyRuntime` and an `Episode(foresight=True)` gives the
# decoded frames. Replaying the observations the robot sent, with the server's `execute`, gives
# the same frame history (t − m pairing) the server saw.

# %%
runtime = PolicyRuntime.load(policy_dir, cameras=robot_cfg.cameras, options=RuntimeOptions(compile=False, warmup=0))
episode = runtime.episode(metadata["execute"], foresight=True)  # as the server's episodes
predicted = []  # per request: (V, 3, S, S) uint8 decoded frames t + m
for request in trace.requests:
    sent = request.observation  # keyed by robot camera; a local episode takes a1 views
    episode.request({"images": policy_images(sent, robot_cfg), "state": sent["state"], "prompt": PROMPT})
    predicted.append(episode.last.foresight)
print("foresight frames per request:", predicted[-1].shape, predicted[-1].dtype, "for views", runtime.processor.views)

# %% [markdown]
# Take the latest request whose t + m the robot lived to see, and put its camera frames (t), the
# frames the robot saw about m steps later, and the predicted frames of t + m side by side:

# %%
m = runtime.history
steps_sent = trace.request_steps
j = max((i for i, s in enumerate(steps_sent) if s + m <= steps_sent[-1]), default=0)
later = trace.requests[int(np.argmin(np.abs(steps_sent - (steps_sent[j] + m))))]
shown, foresight_frames = trace.requests[j], predicted[j]
fig, axes = plt.subplots(3, len(robot_cfg.views), figsize=(3.2 * len(robot_cfg.views), 9.2))
for col, (view, camera) in enumerate(robot_cfg.views.items()):  # a1 view → robot camera
    axes[0, col].imshow(shown.observation["images"][camera])
    axes[0, col].set_title(f"{view}: frame t (step {shown.step})", fontsize=9)
    axes[1, col].imshow(later.observation["images"][camera])
    axes[1, col].set_title(f"real, step {later.step} (≈ t + {m})", fontsize=9)
    axes[2, col].imshow(foresight_frames[runtime.processor.views.index(view)].transpose(1, 2, 0))
    axes[2, col].set_title(f"predicted t + {m} (foresight)", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# With random weights — and tiny.yaml's Cosmos tokenizer is random too (`weights: null`) — the
# prediction is texture, not a picture: notebook 04 shows the tokenizer round trip and a trained
# generation expert. With the pretrained Cosmos weights (`A1_COSMOS_CI8X8`) and a trained policy,
# these frames show where the scene is going (paper §5.6, Fig. 10: blurry but with the right
# motion — detail is traded for speed on purpose).
#
# ## Where next
#
# * a trained policy: set `CHECKPOINT` to a run's `checkpoints/last.ckpt` (notebook 05);
# * the real thing from a terminal: `python deploy/serve.py --policy FOLDER --robot sim_aloha`, then
#   `python deploy/run_robot.py --robot sim_aloha --server ws://127.0.0.1:8000 --prompt "fold the towel"`;
# * latency without a network, compiled and eager, K = 4 / 10: `python deploy/benchmark.py`;
# * closed loop in a physics simulator: notebook 07.
