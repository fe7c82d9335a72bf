"""``python -m a1.model.summary --config CONFIG [--config OVERLAY …] [--json]``: parameters per expert and tokens per block.

The model is built on the meta device — shapes only, no weights, no memory — from the
architecture fields of the config (pretrained paths are not read), so the 3B and 2B configs
summarise on any laptop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

import torch
from torch import nn

from a1.config import ConfigError, policy_config
from a1.model.config import PolicyConfig


def _architecture_only(cfg: PolicyConfig) -> PolicyConfig:
    """A copy of ``cfg`` that builds from its architecture fields (no files are read)."""
    cfg = dataclasses.replace(cfg)
    cfg.understanding = dataclasses.replace(cfg.understanding, pretrained=None)
    gen = cfg.generation
    cfg.generation = dataclasses.replace(
        gen,
        expert=dataclasses.replace(gen.expert, pretrained=None),
        tokenizer=dataclasses.replace(gen.tokenizer, weights=None),
    )
    cfg.action = dataclasses.replace(cfg.action, expert=dataclasses.replace(cfg.action.expert, pretrained=None))
    return cfg


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def summarize(cfg: PolicyConfig) -> dict[str, Any]:
    """Parameter counts (understanding / generation / action / other / total) and block lengths."""
    from a1.model.policy import InternVLAA1  # heavy import kept out of module import time

    with torch.device("meta"):
        model = InternVLAA1(_architecture_only(cfg))
    total = _count(model)
    und, gen, act = _count(model.understanding), _count(model.generation), _count(model.action)
    cosmos = _count(model.foresight.tokenizer) if model.foresight is not None else 0
    return {
        "understanding": und,
        "generation": gen,
        "action": act,
        "other": total - und - gen - act,
        "total": total,
        "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
        "cosmos_tokenizer": cosmos,
        "tokens": {
            "understanding": model.understanding.num_image_tokens + cfg.understanding.max_text_tokens,
            "understanding_image": model.understanding.num_image_tokens,
            "understanding_text": cfg.understanding.max_text_tokens,
            "generation": model.num_generation_tokens,
            "state": 1,
            "action": cfg.action.chunk_size,
        },
    }


def _fmt(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def format_text(summary: dict[str, Any], cfg: PolicyConfig) -> str:
    lines = [f"InternVLA-A1 ({cfg.understanding.family}, generation expert "
             f"{'on' if cfg.generation.enabled else 'off'})", "parameters:"]
    for key in ("understanding", "generation", "action", "other", "total"):
        lines.append(f"  {key:<14}{_fmt(summary[key]):>10}  ({summary[key]:,})")
    lines.append(f"  of which frozen {_fmt(summary['frozen'])} (Cosmos tokenizer {_fmt(summary['cosmos_tokenizer'])}, "
                 "plus understanding weights no loss can reach)")
    t = summary["tokens"]
    lines.append("tokens per block:")
    lines.append(f"  understanding {t['understanding']:>6}  ({t['understanding_image']} image + "
                 f"{t['understanding_text']} text)")
    for key in ("generation", "state", "action"):
        lines.append(f"  {key:<13} {t[key]:>6}")
    lines.append(f"  sequence      {sum(t[k] for k in ('understanding', 'generation', 'state', 'action')):>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.model.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, action="append",
                        help="YAML config with a model.policy section (repeat to layer overlays)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        cfg = policy_config(*args.config)
        summary = summarize(cfg)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary) if args.json else format_text(summary, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
