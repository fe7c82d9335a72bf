"""InternVLA-A1: understanding → generation → action in one Mixture-of-Transformers.

Training (``forward``) runs the whole sequence [understanding | generation | state | actions]
once and returns per-sample losses with validity masks: L_gen (foresight latent MSE, Eq. 1)
and L_act (flow-matching velocity MSE, Eq. 2). ``joint_loss`` forms λ·L_gen + L_act (Eq. 4).

Inference (``sample_actions``) runs understanding and generation once, keeps their per-layer
keys/values as a read-only cache, and runs only the action expert for the K Euler steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from a1.batch import Batch, Observation
from a1.model import flow
from a1.model.action import ActionHead
from a1.model.config import PolicyConfig
from a1.model.experts import ExpertBlocks
from a1.model.foresight import Foresight
from a1.model.mask import ACTION, GENERATION, STATE, UNDERSTANDING, attention_mask, block_ids
from a1.model.mot import ACT, GEN, KV, UND, MoT, Streams
from a1.model.understanding import UnderstandingExpert


@dataclass
class PolicyLosses:
    """Per-sample losses and the masks saying which samples they apply to."""

    act: Tensor
    """(B,) flow-matching MSE over real steps and dims."""
    gen: Tensor
    """(B,) foresight latent MSE over existing future views (zeros when generation is off)."""
    act_valid: Tensor
    """(B,) bool: the sample has actions."""
    gen_valid: Tensor
    """(B,) bool: the sample has a future frame for at least one view."""


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` entries (0 with a graph when none are valid)."""
    w = valid.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1.0)


def joint_loss(losses: PolicyLosses, lambda_gen: float) -> Tensor:
    """L = λ·L_gen + L_act, each the mean over the samples where it applies (paper Eq. 4)."""
    return lambda_gen * masked_mean(losses.gen, losses.gen_valid) + masked_mean(losses.act, losses.act_valid)


@dataclass
class Prefix:
    """Everything about the [understanding | generation] prefix of one batch."""

    streams: Streams
    """The prefix's input streams by expert name: ``und`` and (with the generation expert) ``gen``."""
    valid: Tensor
    """(B, Lp) bool key validity."""
    positions: Tensor
    """(3, B, Lp) rotary positions."""
    next_position: Tensor
    """(B,) first position after the prefix."""
    deepstack: list[Tensor]
    """DeepStack additions to the understanding stream."""
    frame_mask: Tensor
    """(B, V, T) input frames that exist."""


@dataclass
class ActionContext:
    """What every denoising step of one observation reuses (from `InternVLAA1.prepare`)."""

    cache: list[KV]
    """Per layer, the prefix's keys and values (B, H_kv, Lp, head_dim), read only."""
    mask: Tensor
    """(B, 1 + k, Lp + 1 + k) bool: the state and action rows of the attention mask."""
    cos: Tensor
    """(B, 1 + k, head_dim) rotary cosines of the suffix positions."""
    sin: Tensor
    """(B, 1 + k, head_dim) rotary sines."""
    state: Tensor
    """(B, 1, hidden) the state token."""
    latent: Tensor | None = None
    """(B, V, 16, h, w) predicted latent of frame t+m, when foresight was asked for."""

    def step_inputs(self) -> tuple:
        """The arguments of `InternVLAA1.denoise_step` after (a_tau, tau, dt)."""
        return self.mask, self.cos, self.sin, self.state, self.cache


class InternVLAA1(nn.Module):
    """The InternVLA-A1 policy (core ``nn.Module``, no Lightning)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        family, V = cfg.understanding.family, len(cfg.views)
        self.understanding = UnderstandingExpert(cfg.understanding, V)
        gen = cfg.generation
        self.generation = ExpertBlocks(gen.expert, family, "generation.expert") if gen.enabled else None
        self.foresight = Foresight(gen) if gen.enabled else None
        self.action = ExpertBlocks(cfg.action.expert, family, "action.expert")
        self.action_head = ActionHead(cfg.action)
        self._check_compatible()
        experts = {UND: self.understanding, GEN: self.generation, ACT: self.action}
        self.mot = MoT({n: e for n, e in experts.items() if e is not None}, self.understanding.head_dim,
                       cfg.gradient_checkpointing)
        unused = set(self.understanding.unused_parameter_names())
        for name, p in self.understanding.backbone.named_parameters():
            if name in unused:
                p.requires_grad_(False)

    def _check_compatible(self) -> None:
        """Experts sharing one attention need equal layers, heads, KV heads and head_dim."""
        tc = self.understanding.text_config
        want = {
            "num_layers": tc.num_hidden_layers,
            "num_heads": tc.num_attention_heads,
            "num_kv_heads": tc.num_key_value_heads,
            "head_dim": self.understanding.head_dim,
        }
        for name, expert in (("generation", self.generation), ("action", self.action)):
            if expert is None:
                continue
            for field, value in want.items():
                got = getattr(expert.cfg, field)
                if got != value:
                    raise ValueError(
                        f"{name}.expert.{field}={got} must equal the understanding expert's {value} "
                        "(experts share one attention per layer)"
                    )

    # --- sequence assembly ------------------------------------------------------------------
    @property
    def num_generation_tokens(self) -> int:
        return self.foresight.num_tokens(len(self.cfg.views)) if self.foresight is not None else 0

    def prefix(self, obs: Observation, input_latents: Tensor | None = None, validate: bool = True) -> Prefix:
        """Embed the understanding and generation streams of an observation."""
        if validate:
            obs.validate(len(self.cfg.views), self.cfg.action.max_dim)
        frame_mask = obs.image_mask  # (B, V, T)
        und = self.understanding.embed(obs.images[:, :, -1], frame_mask[:, :, -1], obs.tokens, obs.token_mask)
        streams: Streams = {UND: und.hidden}
        valid, positions, nxt = [und.valid], [und.positions], und.next_position
        if self.foresight is not None:
            if input_latents is None:
                input_latents = self.foresight.latents(obs.images)
            gen = self.foresight.tokens(input_latents)  # (B, Lg, Dg)
            streams[GEN] = gen
            valid.append(frame_mask.repeat_interleave(self.foresight.tokens_per_image, dim=2).flatten(1))
            positions.append(self._positions(nxt, gen.shape[1]))
            nxt = nxt + gen.shape[1]
        return Prefix(streams, torch.cat(valid, 1), torch.cat(positions, 2), nxt, und.deepstack, frame_mask)

    @staticmethod
    def _positions(start: Tensor, length: int) -> Tensor:
        """(3, B, length) 1-D positions (p, p, p) counting up from ``start`` (B,)."""
        pos = start[:, None] + torch.arange(length, device=start.device)
        return pos.unsqueeze(0).expand(3, -1, -1)

    def _blocks(self, prefix: Prefix, with_suffix: bool) -> Tensor:
        lengths = {UNDERSTANDING: prefix.streams[UND].shape[1]}
        if self.foresight is not None:
            lengths[GENERATION] = prefix.streams[GEN].shape[1]
        if with_suffix:
            lengths |= {STATE: 1, ACTION: self.cfg.action.chunk_size}
        return block_ids(lengths, prefix.valid.device)

    def _mask(self, prefix: Prefix, with_suffix: bool) -> Tensor:
        """(B, L, L) attention mask of the prefix (and the state + action suffix)."""
        valid = prefix.valid
        if with_suffix:
            valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1 + self.cfg.action.chunk_size)], 1)
        causal = self.cfg.understanding.attention == "causal"
        return attention_mask(self._blocks(prefix, with_suffix), valid, causal)

    def attention_layout(self, obs: Observation) -> tuple[Tensor, Tensor]:
        """(L,) block id per token and the (B, L, L) attention mask of the full training
        sequence [understanding | generation | state | actions] for an observation."""
        prefix = self.prefix(obs)
        return self._blocks(prefix, True), self._mask(prefix, True)

    def _rope(self, like: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.understanding.rotary(like, positions)

    # --- training ---------------------------------------------------------------------------
    def forward(self, batch: Batch, noise: Tensor | None = None, tau: Tensor | None = None) -> PolicyLosses:
        """Per-sample L_act and L_gen for a training batch (noise and τ drawn when not given)."""
        cfg = self.cfg.action
        batch.validate(len(self.cfg.views), cfg.chunk_size, cfg.max_dim)
        obs, B = batch.observation, batch.batch_size
        latents = None  # (B, V, T+1, 16, h, w): frames t−m, t and the target t+m, one encoder call
        if self.foresight is not None:
            latents = self.foresight.latents(torch.cat([obs.images, batch.future_images[:, :, None]], 2))
        prefix = self.prefix(obs, latents[:, :, :-1] if latents is not None else None, validate=False)  # checked above
        actions = batch.actions
        noise = torch.randn_like(actions) if noise is None else noise
        tau = flow.sample_time(B, *cfg.time_beta, device=actions.device) if tau is None else tau
        suffix = self.action_head.embed(obs.state, flow.interpolate(actions, noise, tau), tau)
        streams = {**prefix.streams, ACT: suffix}
        positions = torch.cat([prefix.positions, self._positions(prefix.next_position, suffix.shape[1])], 2)
        outs, _ = self.mot(streams, self._mask(prefix, True), self._rope(suffix, positions), deepstack=prefix.deepstack)
        return self._losses(batch, outs, prefix, latents, flow.target_velocity(actions, noise))

    def _losses(self, batch: Batch, outs: Streams, prefix: Prefix, latents: Tensor | None, target: Tensor) -> PolicyLosses:
        v = self.action_head.velocity(outs[ACT])  # (B, k, D)
        m = (batch.action_mask[:, :, None] & batch.action_dim_mask[:, None, :]).float()
        act = ((v - target) ** 2 * m).sum((1, 2)) / m.sum((1, 2)).clamp(min=1.0)
        act_valid = batch.has_action & (m.sum((1, 2)) > 0)
        if self.foresight is None:
            return PolicyLosses(act, torch.zeros_like(act), act_valid, torch.zeros_like(act_valid))
        pred = self.foresight.predict(outs[GEN], prefix.frame_mask)  # (B, V, 16, h, w)
        per_view = ((pred - latents[:, :, -1].float()) ** 2).mean((2, 3, 4))  # (B, V)
        fm = batch.future_mask.float()
        gen = (per_view * fm).sum(1) / fm.sum(1).clamp(min=1.0)
        return PolicyLosses(act, gen, act_valid, batch.future_mask.any(1))

    # --- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, obs: Observation, foresight: bool = False, input_latents: Tensor | None = None,
                run_prefix=None) -> ActionContext:
        """Run understanding + generation once for an observation: everything each denoising
        step reuses (the read-only prefix cache, the suffix's mask, positions and state token).
        ``input_latents``: (B, V, T, 16, h, w) Cosmos latents of the input frames when already
        encoded (e.g. by a compiled encoder); None: encoded here. ``run_prefix``: the function that
        runs the prefix through the MoT (default `run_prefix`; the runtime passes a compiled copy)."""
        k = self.cfg.action.chunk_size
        prefix = self.prefix(obs, input_latents)
        full_mask = self._mask(prefix, True)
        Lp = prefix.valid.shape[1]
        cache, outs = (run_prefix or self.run_prefix)(prefix, full_mask[:, :Lp, :Lp])
        state = self.action_head.state_token(obs.state)
        cos, sin = self._rope(state, self._positions(prefix.next_position, 1 + k))
        latent = None
        if foresight:
            if self.foresight is None:
                raise ValueError("foresight frames need the generation expert (generation.enabled: true)")
            latent = self.foresight.predict(outs[GEN], prefix.frame_mask)
        return ActionContext(cache, full_mask[:, Lp:], cos, sin, state, latent)

    def denoise_step(self, a_tau: Tensor, tau: Tensor, dt: Tensor, mask: Tensor, cos: Tensor, sin: Tensor,
                     state: Tensor, cache: list[KV]) -> Tensor:
        """One Euler step of the action expert against the read-only prefix cache (the hot path,
        plain tensors in and out so that ``torch.compile`` can take it whole).

        Args:
            a_tau: (B, k, D) current chunk; tau: (B,) its flow time; dt: () step size.
            mask: (B, 1 + k, Lp + 1 + k) the suffix rows of the attention mask.
            cos, sin: (B, 1 + k, head_dim) rotary tables of the suffix positions.
            state: (B, 1, hidden) the state token; cache: per layer, the prefix keys/values.
        Returns:
            (B, k, D) float32 chunk at τ + dt.
        """
        suffix = torch.cat([state, self.action_head.action_tokens(a_tau, tau)], dim=1)
        outs, _ = self.mot({ACT: suffix}, mask, (cos, sin), past=cache)
        return a_tau + dt * self.action_head.velocity(outs[ACT])

    @torch.no_grad()
    def sample_actions(
        self,
        obs: Observation,
        noise: Tensor | None = None,
        num_steps: int | None = None,
        use_cache: bool = True,
        context: ActionContext | None = None,
    ) -> Tensor:
        """Sample a (B, k, D) float32 action chunk by Euler integration from noise (τ: 0 → 1).

        With ``use_cache`` (default) the prefix runs once (`prepare`, or the given ``context`` of
        ``obs``) and only the action expert runs per step (`denoise_step`); without it every step
        recomputes the full sequence (reference path). The predicted frames come from
        `foresight_frames` (or ``foresight.decode(context.latent)`` of a context prepared with them).
        """
        cfg = self.cfg.action
        B = obs.batch_size
        steps = cfg.num_steps if num_steps is None else num_steps
        if noise is None:
            noise = torch.randn(B, cfg.chunk_size, cfg.max_dim, device=obs.state.device)
        if use_cache:
            ctx = context if context is not None else self.prepare(obs)
            return flow.euler_steps(lambda a, tau, dt: self.denoise_step(a, tau, dt, *ctx.step_inputs()),
                                    noise.float(), steps)
        return flow.euler(self._full_velocity(obs), noise.float(), steps)

    @torch.no_grad()
    def foresight_frames(self, obs: Observation) -> Tensor:
        """(B, V, 3, H, W) uint8: the predicted frames t+m of every view (the generation expert's
        latents decoded by the Cosmos decoder; needs ``generation.enabled``)."""
        latent = self.prepare(obs, foresight=True).latent  # raises without the generation expert
        return self.foresight.decode(latent)

    def _full_velocity(self, obs: Observation, input_latents: Tensor | None = None, velocity=None):
        """The reference velocity field v(a_τ, τ) of an observation: every call runs the whole
        sequence (no cache). ``velocity``: the function to bind (default `full_velocity`; a
        compiled copy of it in the benchmark)."""
        prefix = self.prefix(obs, input_latents)
        suffix_pos = self._positions(prefix.next_position, 1 + self.cfg.action.chunk_size)
        return functools.partial(velocity or self.full_velocity, state=obs.state, streams=prefix.streams,
                                 mask=self._mask(prefix, True), positions=torch.cat([prefix.positions, suffix_pos], 2),
                                 deepstack=prefix.deepstack)

    def full_velocity(self, a_tau: Tensor, tau: Tensor, state: Tensor, streams: Streams, mask: Tensor,
                      positions: Tensor, deepstack: list[Tensor]) -> Tensor:
        """(B, k, D) velocity at (a_τ, τ) from the whole sequence: the prefix ``streams`` (``und``,
        ``gen``), (B, L, L) ``mask``, (3, B, L) rotary ``positions`` and DeepStack additions."""
        suffix = self.action_head.embed(state, a_tau, tau)
        outs, _ = self.mot({**streams, ACT: suffix}, mask, self._rope(suffix, positions), deepstack=deepstack)
        return self.action_head.velocity(outs[ACT])

    def run_prefix(self, prefix: Prefix, mask: Tensor) -> tuple[list[KV], Streams]:
        """Run understanding + generation once under the (B, Lp, Lp) prefix ``mask``; return the
        per-layer keys/values and the experts' outputs by name."""
        like = prefix.streams[UND]
        outs, kv = self.mot(prefix.streams, mask, self._rope(like, prefix.positions),
                            deepstack=prefix.deepstack, return_kv=True)
        return kv, outs
