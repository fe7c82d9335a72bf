"""The Mixture-of-Transformers layer loop (paper §3.1–3.2).

Each expert keeps its own weights — input norm, q/k/v projections (+ q/k RMSNorm for Qwen3),
output projection, post-attention norm and MLP — while one attention per layer runs over the
concatenation of every expert's tokens, [understanding | generation | state + actions], under
the blockwise mask of ``a1.model.mask``. The attention is
``torch.nn.functional.scaled_dot_product_attention`` with grouped-query heads.

Streams are named after their experts (``und``, ``gen``, ``act``) and given in a mapping; a
stream that is absent in a call is left out (or ``None``): inference runs the prefix
(understanding and generation) once, keeps its per-layer keys/values, and then runs only the
action stream against that read-only cache. Tokens are concatenated in the experts' order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

KV = tuple[Tensor, Tensor]  # (B, H_kv, L, head_dim) keys and values after RoPE
UND, GEN, ACT = "und", "gen", "act"
"""Names of the understanding, generation and action streams."""
Streams = dict[str, Tensor | None]
"""Per expert name, (B, L_e, D_e) hidden states (None or left out: absent)."""


class MoT(nn.Module):
    """Runs named experts (each with ``.layers`` and ``.norm``) through shared attention."""

    def __init__(self, experts: Mapping[str, nn.Module], head_dim: int, checkpointing: bool = False) -> None:
        super().__init__()
        self.names = list(experts)
        self.experts = list(experts.values())  # registered by the owner; not duplicated here
        self.head_dim = head_dim
        self.checkpointing = checkpointing
        depths = {len(e.layers) for e in self.experts}
        if len(depths) != 1:
            raise ValueError(f"all experts need the same number of layers, got {sorted(depths)}")
        self.num_layers = depths.pop()

    def forward(
        self,
        streams: Mapping[str, Tensor | None],
        mask: Tensor,
        rope: tuple[Tensor, Tensor],
        past: Sequence[KV] | None = None,
        deepstack: Sequence[Tensor] = (),
        return_kv: bool = False,
    ) -> tuple[Streams, list[KV] | None]:
        """Run every layer.

        Args:
            streams: per expert name, (B, L_e, D_e) hidden states (None or left out: absent).
            mask: (B, Lq, Lpast + Lq) bool attention mask, Lq = Σ L_e of present streams.
            rope: (cos, sin), each (B, Lq, head_dim), for the present tokens.
            past: per layer, cached keys/values of earlier tokens (read only).
            deepstack: (B, L_und, D_und) tensors added to the understanding stream after layers
                0, 1, … (Qwen3-VL).
            return_kv: also return each layer's keys/values (past + present).

        Returns:
            per expert name, the final-normed (B, L_e, D_e) outputs (None where absent), and the
            per-layer keys/values when ``return_kv``.
        """
        unknown = sorted(set(streams) - set(self.names))
        if unknown:
            raise KeyError(f"MoT: unknown stream(s) {unknown}; the experts are {self.names}")
        hs = [streams.get(name) for name in self.names]
        kvs: list[KV] = []
        attn_mask = mask[:, None]  # (B, 1, Lq, Lk): broadcast over heads
        for i in range(self.num_layers):
            layer_past = past[i] if past is not None else None
            if self.checkpointing and self.training and torch.is_grad_enabled():
                hs, kv = checkpoint(self.layer, i, hs, attn_mask, rope, layer_past, use_reentrant=False)
            else:
                hs, kv = self.layer(i, hs, attn_mask, rope, layer_past)
            if i < len(deepstack) and hs[0] is not None:  # the understanding expert comes first
                hs[0] = hs[0] + deepstack[i]
            if return_kv:
                kvs.append(kv)
        outs = {n: e.norm(h) if h is not None else None for n, e, h in zip(self.names, self.experts, hs)}
        return outs, (kvs if return_kv else None)

    def layer(
        self, i: int, hs: list[Tensor | None], attn_mask: Tensor, rope: tuple[Tensor, Tensor], past: KV | None
    ) -> tuple[list[Tensor | None], KV]:
        """One MoT layer: per-expert projections, one shared attention, per-expert MLPs."""
        blocks = [e.layers[i] for e in self.experts]
        present = [j for j, h in enumerate(hs) if h is not None]
        qs, ks, vs = zip(*(self._qkv(blocks[j], hs[j]) for j in present))
        q, k, v = torch.cat(qs, dim=2), torch.cat(ks, dim=2), torch.cat(vs, dim=2)  # (B, H, Lq, Dh)
        cos, sin = rope
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, scale=self.head_dim**-0.5, enable_gqa=q.shape[1] != k.shape[1]
        )
        o = o.transpose(1, 2).flatten(2)  # (B, Lq, H·Dh)
        out: list[Tensor | None] = list(hs)
        start = 0
        for j in present:
            block, h = blocks[j], hs[j]
            end = start + h.shape[1]
            h = h + block.self_attn.o_proj(o[:, start:end])
            out[j] = h + block.mlp(block.post_attention_layernorm(h))
            start = end
        return out, (k, v)

    def _qkv(self, block: nn.Module, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, D) → queries (B, H, L, Dh), keys and values (B, H_kv, L, Dh), before RoPE."""
        attn = block.self_attn
        x = block.input_layernorm(h)
        shape = (*x.shape[:2], -1, self.head_dim)
        q, k = attn.q_proj(x).view(shape), attn.k_proj(x).view(shape)
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over head_dim before RoPE
            q, k = attn.q_norm(q), attn.k_norm(k)
        v = attn.v_proj(x).view(shape)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
