"""The action expert's input and output projections (state token, noisy actions, τ)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a1.model.config import ActionConfig
from a1.model.flow import time_embedding


class ActionHead(nn.Module):
    """Maps state and noisy actions into the action expert's stream, and its outputs to velocities.

    State token: Linear(D → hidden). Action tokens: Linear(D → hidden) of the noisy chunk,
    concatenated with a sinusoidal embedding of τ and mixed by a 2-layer SiLU MLP (as in the
    public pi0 / InternVLA-A1 implementations). Output: Linear(hidden → D) velocity.
    """

    def __init__(self, cfg: ActionConfig) -> None:
        super().__init__()
        hidden = cfg.expert.hidden_size
        self.cfg = cfg
        self.state_proj = nn.Linear(cfg.max_dim, hidden)
        self.action_in = nn.Linear(cfg.max_dim, hidden)
        self.time_mlp_in = nn.Linear(2 * hidden, hidden)
        self.time_mlp_out = nn.Linear(hidden, hidden)
        self.action_out = nn.Linear(hidden, cfg.max_dim)

    def embed(self, state: Tensor, noisy_actions: Tensor, tau: Tensor) -> Tensor:
        """(B, D) state, (B, k, D) a^τ, (B,) τ → (B, 1 + k, hidden) suffix stream."""
        return torch.cat([self.state_token(state), self.action_tokens(noisy_actions, tau)], dim=1)

    def state_token(self, state: Tensor) -> Tensor:
        """(B, D) state → (B, 1, hidden) state token (the same for every denoising step)."""
        return self.state_proj(state.to(self.state_proj.weight.dtype))[:, None]

    def action_tokens(self, noisy_actions: Tensor, tau: Tensor) -> Tensor:
        """(B, k, D) a^τ and (B,) τ → (B, k, hidden) action tokens."""
        a = self.action_in(noisy_actions.to(self.action_in.weight.dtype))  # (B, k, H)
        lo, hi = self.cfg.time_embedding_periods
        t = time_embedding(tau, a.shape[-1], lo, hi).to(a.dtype)[:, None].expand_as(a)
        return self.time_mlp_out(F.silu(self.time_mlp_in(torch.cat([a, t], dim=-1))))

    def velocity(self, out: Tensor) -> Tensor:
        """(B, 1 + k, hidden) expert outputs → (B, k, D) velocity (the state token is dropped)."""
        return self.action_out(out[:, 1:]).float()
