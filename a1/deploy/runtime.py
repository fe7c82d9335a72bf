"""The deployed policy: one compiled model (`PolicyRuntime`) and per-robot episodes (`Episode`).

``PolicyRuntime`` loads an exported policy folder onto the device (bf16 on CUDA, fp32 on CPU),
compiles the hot path with ``torch.compile`` — the action expert's denoising step against the
read-only prefix cache (`InternVLAA1.denoise_step`), the prefix's pass through the MoT
(`InternVLAA1.run_prefix`) and the frozen Cosmos encoder;
``reduce-overhead``, i.e. CUDA graphs, on CUDA — and warms it up so the first real request is not
slow (on CPU compilation takes ~1 min for the tiny model; ``compile=False`` skips it). Per request the prefix
(understanding + generation) runs once, then K compiled denoising steps. Requests are served one
at a time (a lock), so threads and server connections can share one runtime.

``Episode`` is the state of one robot (or one server connection) over an episode:

- a per-camera frame history at the control rate (`a1.deploy.history.FrameHistory`), so the
  generation expert gets frames t−m and t; before m steps have passed, the t−m slot holds the
  episode's first frame and is masked — exactly as training samples at t < m;
- the action chunks (`a1.deploy.chunks.ChunkQueue`): a chunk of k actions is planned at step s for
  steps s … s+k−1; the first ``execute`` (n) are executed before the next plan; with
  ``ensemble`` set, overlapping chunks are averaged per step (temporal ensembling);
- ``asynchronous``: the next chunk is planned in a background thread ``lead`` steps before the
  current one's n actions run out, from the observation of that step; while it computes, the
  current chunk keeps executing, and when it lands its actions are used from the current step on
  (its first actions, for steps that already passed, are dropped) — actions are stitched by their
  absolute step, never shifted. If the current chunk runs out first (k actions consumed), the
  step waits for the plan.

Two ways to drive an episode: ``step(raw)`` once per control tick (a local control loop), or
``request(raw)`` once per chunk (the policy server: each request returns the n actions to
execute and advances the episode by n steps).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from a1.deploy.chunks import ChunkQueue
from a1.deploy.history import FrameHistory
from a1.deploy.processor import Processor, RawObservation, absent_views
from a1.model import flow

log = logging.getLogger(__name__)


@dataclass
class RuntimeOptions:
    """How the policy runs on this machine."""

    compile: bool = True
    """``torch.compile`` the denoising step (off: eager PyTorch)."""
    compile_mode: str | None = None
    """``torch.compile`` mode; None: ``reduce-overhead`` (CUDA graphs) on CUDA, ``default`` on CPU."""
    device: str | None = None
    """Device; None: ``cuda`` when available, else ``cpu``."""
    dtype: str | None = None
    """``bfloat16`` / ``float32``; None: bfloat16 on CUDA, float32 on CPU."""
    tokenizer_dtype: str | None = None
    """dtype of the frozen Cosmos tokenizer alone; None: ``dtype``. ``bfloat16`` is the official
    InternVLA-A1 path (faster; its latents are not reproducible across machines), ``float32`` the
    reference one (an imported official policy then matches the official fp32 outputs to ~1e-6)."""
    num_steps: int | None = None
    """K Euler steps; None: the policy's ``action.num_steps``."""
    warmup: int = 2
    """Inference runs at start-up (compilation happens in the first)."""
    seed: int = 0
    """Seed of the initial noise of each chunk (reproducible runs)."""


@dataclass
class Chunk:
    """One planned action chunk."""

    actions: np.ndarray
    """(k, D_robot) float32 raw robot actions."""
    infer_ms: float
    """Wall time of the inference (prefix + K steps), milliseconds."""
    foresight: np.ndarray | None = None
    """(V, 3, S, S) uint8 predicted frames t+m (when asked for)."""


def _place(policy, device: torch.device, dtype: torch.dtype, tokenizer_dtype: torch.dtype):
    """The policy on ``device`` in eval mode, in ``dtype`` but for the frozen Cosmos tokenizer, which goes
    straight from its loaded float32 to ``tokenizer_dtype`` (never rounded through ``dtype``)."""
    foresight = policy.foresight
    if foresight is None:
        return policy.to(device, dtype).eval()
    tokenizer = foresight.tokenizer
    foresight.register_module("tokenizer", None)  # out of the cast below
    try:
        policy.to(device, dtype)
    finally:
        foresight.register_module("tokenizer", tokenizer.to(device, tokenizer_dtype))
    return policy.eval()


class PolicyRuntime:
    """An exported policy on a device, compiled and warmed up; thread-safe `plan`."""

    def __init__(self, loaded, processor: Processor, options: RuntimeOptions = RuntimeOptions()) -> None:
        self.options = options
        self.device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        name = options.dtype or ("bfloat16" if self.device.type == "cuda" else "float32")
        for key, value in (("dtype", name), ("tokenizer_dtype", options.tokenizer_dtype or name)):
            if value not in ("bfloat16", "float32"):
                raise ValueError(f"{key} must be bfloat16 or float32, got {value!r}")
        self.dtype = getattr(torch, name)
        self.loaded, self.processor = loaded, processor
        self.policy = _place(loaded.policy, self.device, self.dtype, getattr(torch, options.tokenizer_dtype or name))
        self.num_steps = options.num_steps or loaded.config.action.num_steps
        self._lock = threading.Lock()
        self._generator = torch.Generator(self.device).manual_seed(options.seed)
        self._step = self.policy.denoise_step
        self._latents = self.policy.foresight.latents if self.policy.foresight is not None else None
        self._prefix = self.policy.run_prefix
        if options.compile:
            mode = options.compile_mode or ("reduce-overhead" if self.device.type == "cuda" else "default")
            self._step = torch.compile(self.policy.denoise_step, mode=mode, dynamic=False, fullgraph=False)
            self._prefix = torch.compile(self.policy.run_prefix, mode=mode, dynamic=False)
            if self.policy.foresight is not None:  # the frozen Cosmos encoder: a conv stack, ~2× faster compiled
                self._latents = torch.compile(self.policy.foresight.latents, mode=mode, dynamic=False)
        self.warmup_ms: list[float] = []

    @classmethod
    def load(cls, folder: str | Path, normalization: str | None = None,
             cameras: Mapping[str, str | None] | None = None,
             options: RuntimeOptions = RuntimeOptions()) -> PolicyRuntime:
        """Load an exported policy folder and warm it up (``options.warmup`` runs). ``cameras``: a
        robot's camera → view map (`RobotConfig.cameras`); views no camera feeds are masked. None:
        every view has a camera."""
        from a1.policy_folder import load_policy

        loaded = load_policy(folder)
        absent = absent_views(loaded.config.views, cameras) if cameras is not None else ()
        runtime = cls(loaded, loaded.processor(normalization, absent), options)
        runtime.warmup()
        return runtime

    @property
    def chunk_size(self) -> int:
        return self.loaded.config.action.chunk_size

    @property
    def history(self) -> int:
        """m: control steps between frames t−m and t."""
        return self.processor.settings.history

    def warmup(self) -> None:
        """Run ``options.warmup`` inferences on a blank observation (compiles on the first)."""
        S = self.processor.settings.image_size
        blank = RawObservation({v: np.zeros((2, 3, S, S), np.uint8) for v in self.processor.views
                                if v not in self.processor.absent},
                               {v: np.array([False, True]) for v in self.processor.views},
                               np.zeros(self.processor.state_dim or self.processor.action_dim, np.float32), "warm up")
        for _ in range(self.options.warmup):
            self.warmup_ms.append(self.plan(blank).infer_ms)
        if self.warmup_ms:
            log.info("warm-up: %s ms", ", ".join(f"{t:.0f}" for t in self.warmup_ms))

    def plan(self, raw: RawObservation, noise: torch.Tensor | None = None, foresight: bool = False) -> Chunk:
        """One action chunk for a checked raw observation (thread-safe: one inference at a time)."""
        obs = self.processor.observation(raw)
        with self._lock:
            t0 = time.perf_counter()
            chunk, frames = self._infer(obs, noise, foresight)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            ms = (time.perf_counter() - t0) * 1e3
        return Chunk(self.processor.raw_actions(chunk, raw.state), ms, frames)

    @torch.inference_mode()
    def _infer(self, obs, noise: torch.Tensor | None, foresight: bool) -> tuple[torch.Tensor, np.ndarray | None]:
        obs = obs.to(self.device)  # the model casts inputs to its weights' dtype itself
        k, D = self.chunk_size, self.loaded.config.action.max_dim
        if noise is None:
            noise = torch.randn(1, k, D, device=self.device, generator=self._generator)
        else:
            noise = self.processor.check_noise(noise).to(self.device).clone()  # an inference tensor, like
            # the drawn noise: one compiled graph serves both (no recompilation)
        if self.options.compile and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # a new request: earlier graph outputs may be reused
        latents = self._latents(obs.images) if self._latents is not None else None
        ctx = self.policy.prepare(obs, foresight, latents, self._prefix)
        inputs = ctx.step_inputs()
        chunk = flow.euler_steps(lambda a, tau, dt: self._step(a, tau, dt, *inputs), noise.float(), self.num_steps)
        frames = self.policy.foresight.decode(ctx.latent)[0].cpu().numpy() if foresight else None
        return chunk.float().clone(), frames  # our own copy, not a CUDA-graph output buffer

    def episode(self, execute: int | None = None, ensemble: float | None = None, asynchronous: bool = False,
                lead: int = 2, foresight: bool = False) -> Episode:
        """A fresh episode on this runtime (see `Episode`)."""
        return Episode(self, execute, ensemble, asynchronous, lead, foresight)


class Episode:
    """One robot's episode on a shared `PolicyRuntime`: frame history, chunks, stitching."""

    def __init__(self, runtime: PolicyRuntime, execute: int | None = None, ensemble: float | None = None,
                 asynchronous: bool = False, lead: int = 2, foresight: bool = False) -> None:
        """
        Args:
            runtime: the loaded, compiled policy.
            execute: n, actions executed per chunk before the next plan (None: the whole chunk k).
            ensemble: temporal-ensembling coefficient c (weights exp(−c·i), i = 0 the oldest chunk);
                None: no ensembling (each step takes the newest chunk's action).
            asynchronous: plan the next chunk in the background (``step`` only).
            lead: in asynchronous mode, start planning this many steps before n actions run out.
            foresight: also keep the predicted t+m frames of each plan (``last.foresight``).
        """
        k = runtime.chunk_size
        n = k if execute is None else execute
        if not 1 <= n <= k:
            raise ValueError(f"execute must be in 1..{k} (the chunk length), got {execute}")
        if not 0 <= lead < n and asynchronous:
            raise ValueError(f"lead must be in 0..{n - 1} (execute − 1), got {lead}")
        self.runtime, self.execute, self.asynchronous, self.lead = runtime, n, asynchronous, lead
        self.foresight = foresight
        self.queue = ChunkQueue(k, ensemble)
        self.history = {v: FrameHistory(runtime.history) for v in runtime.processor.views}
        self.t = 0
        self.last: Chunk | None = None
        self._pending: threading.Thread | None = None
        self._planned_at = -n

    def reset(self) -> None:
        """Start a new episode: forget the frames and chunks (waits for a pending plan)."""
        self._join()
        for h in self.history.values():
            h.clear()
        self.queue.clear()
        self.t, self.last, self._planned_at = 0, None, -self.execute

    def observe(self, raw: Mapping) -> RawObservation:
        """Check the observation, pair each camera's frame t with its frame t−m, then record frame t
        (all or nothing: a refused observation records nothing, so the request can be retried)."""
        proc = self.runtime.processor
        obs = proc.parse(raw)
        # frames are kept at the training size: resized once, as frame t (the processor's resize is
        # then a no-op for them), and the history stays small
        paired = {view: self.history[view].pair(self.t, proc.resize(frames[1:])[0])
                  for view, frames in obs.frames.items() if not obs.valid[view][0]}  # given t−m: no history
        for view, (frames, valid) in paired.items():
            self.history[view].push(self.t, frames[1])
            obs.frames[view], obs.valid[view] = frames, valid
        return obs

    def _plan(self, obs: RawObservation, at: int) -> None:
        chunk = self.runtime.plan(obs, foresight=self.foresight)
        self.queue.add(at, chunk.actions)
        self.last = chunk

    def request(self, raw: Mapping) -> np.ndarray:
        """Server style: plan at the current step and return the (n, D) actions to execute; the
        episode then advances by n steps (the client executes them before its next request)."""
        obs = self.observe(raw)
        self._plan(obs, self.t)
        actions = np.stack([self.queue.action(self.t + i) for i in range(self.execute)])
        self.t += self.execute
        return actions

    def step(self, raw: Mapping) -> np.ndarray:
        """Control-loop style: record this tick's observation, plan when due, return the (D,)
        action for this step."""
        obs = self.observe(raw)
        due = self.t - self._planned_at >= self.execute - (self.lead if self.asynchronous else 0)
        if due and self._pending is None:
            self._planned_at = self.t
            if self.asynchronous and self.queue.covers(self.t):
                self._pending = threading.Thread(target=self._plan, args=(obs, self.t), name="a1-plan")
                self._pending.start()
            else:
                self._plan(obs, self.t)
        if self._pending is not None and (not self._pending.is_alive() or not self.queue.covers(self.t)):
            self._join()  # landed, or the current chunk ran out: wait for it
        action = self.queue.action(self.t)
        self.t += 1
        return action

    def close(self) -> None:
        """Wait for a pending background plan (call before exiting)."""
        self._join()

    def _join(self) -> None:
        if self._pending is not None:
            self._pending.join()
            self._pending = None
