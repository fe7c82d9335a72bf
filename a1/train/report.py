"""The start-up and closing reports of a training run (printed once on rank 0, saved as JSON).

``startup_report.json`` (in the run folder) says what the run found and built:

- per dataset: kind, path or shards, episodes and frames (train / val), views found and missing,
  state/action dims, normalisation mode and where the statistics came from, configured and
  realised sampling weight;
- the model: parameters per expert, trainable and frozen; what ``model.init_from`` loaded;
- the effective global batch (per-device batch × devices × nodes × accumulation).

``closing_report.json`` says how it ended: status, final step, samples skipped per dataset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

STARTUP, CLOSING = "startup_report.json", "closing_report.json"


def _count(module) -> tuple[int, int]:
    params = list(module.parameters()) if module is not None else []
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def model_report(pl_module: L.LightningModule) -> dict[str, Any]:
    """Parameters (total, trainable) per expert of an ``A1Module``'s policy."""
    policy = pl_module.policy
    parts = {"understanding": policy.understanding, "generation": policy.generation, "action": policy.action}
    out: dict[str, Any] = {}
    for name, module in parts.items():
        total, trainable = _count(module)
        out[name] = {"parameters": total, "trainable": trainable}
    total, trainable = _count(policy)
    out["other"] = {"parameters": total - sum(v["parameters"] for v in out.values()),
                    "trainable": trainable - sum(v["trainable"] for v in out.values())}
    out["total"] = {"parameters": total, "trainable": trainable, "frozen": total - trainable}
    return out


def startup_report(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    dm = trainer.datamodule
    devices, nodes, accumulate = trainer.num_devices, trainer.num_nodes, trainer.accumulate_grad_batches
    return {
        "run_folder": str(trainer.default_root_dir),
        "datasets": dm.describe() if dm is not None else [],
        "model": model_report(pl_module),
        "init_from": getattr(pl_module, "init_report", None),
        "global_batch": {"per_device": dm.batch_size if dm is not None else None, "devices": devices,
                         "nodes": nodes, "accumulate_grad_batches": accumulate,
                         "samples_per_step": (dm.batch_size * devices * nodes * accumulate) if dm is not None else None},
        "max_steps": trainer.max_steps,
        "resumed_at_step": trainer.global_step,
    }


def _m(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def format_startup(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    lines = [f"a1 run in {report['run_folder']}"]
    for d in report["datasets"]:
        lines.append(
            f"  dataset {d['name']} ({d['kind']}, {d['source']}): {d['episodes']['train']}+{d['episodes']['val']} "
            f"episodes, {d['frames']['train']}+{d['frames']['val']} frames (train+val); views {d['views']['found']}"
            + (f", no camera for {d['views']['missing']}" if d["views"]["missing"] else "")
            + (f"; state {d['state_dim']} / action {d['action_dim']} dims, {d['normalization']} "
               f"(statistics: {d['stats']})" if d["action_dim"] is not None else "; no actions (L_gen only)")
            + f"; weight {d['weight']['configured']:.3f} → realised {d['weight']['realised']:.3f}")
    m = report["model"]
    lines.append("  model: " + ", ".join(f"{k} {_m(m[k]['parameters'])}" for k in ("understanding", "generation",
                                                                                  "action", "other"))
                 + f"; total {_m(m['total']['parameters'])}, trainable {_m(m['total']['trainable'])}, "
                 f"frozen {_m(m['total']['frozen'])}")
    init = report["init_from"]
    lines.append(f"  init_from: {init['path']} ({init['tensors']} tensors)" if init else "  init_from: none")
    b = report["global_batch"]
    lines.append(f"  global batch {b['samples_per_step']} = {b['per_device']} per device × {b['devices']} devices "
                 f"× {b['nodes']} nodes × {b['accumulate_grad_batches']} accumulation; max_steps {report['max_steps']}"
                 + (f"; resuming at step {report['resumed_at_step']}" if report["resumed_at_step"] else ""))
    lines.append(f"  validation: {VAL_METRICS}")
    return "\n".join(lines)


#: What the validation metrics measure (also in the README).
VAL_METRICS = ("val/action_mse = mean squared error between action chunks sampled from fixed noise (Euler, "
               "model.policy.action.num_steps steps; EMA weights when enabled) and the dataset's chunks, in "
               "normalised units over real dims and in-episode steps (h0..h4: near → far fifths of the chunk); "
               "val/latent_mse = foresight latent MSE at t+m")


class RunReport(L.Callback):
    """Writes ``startup_report.json`` when training starts and ``closing_report.json`` when it ends."""

    def __init__(self, stream=None) -> None:
        self.stream = stream

    def _write(self, trainer: L.Trainer, name: str, report: dict) -> None:
        path = Path(trainer.default_root_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        report = startup_report(trainer, pl_module)  # every rank: describe() may gather
        if trainer.is_global_zero:
            self._write(trainer, STARTUP, report)
            print(format_startup(report), file=self.stream or sys.stderr, flush=True)

    def _close(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str, error: str | None) -> None:
        totals = pl_module.skipped_totals() if hasattr(pl_module, "skipped_totals") else {}
        report = {"status": status, "final_step": trainer.global_step, "skipped_samples": totals, "error": error}
        if trainer.is_global_zero:
            self._write(trainer, CLOSING, report)
            skipped = ", ".join(f"{k} {v}" for k, v in totals.items() if v) or "none"
            print(f"a1 run {status} at step {trainer.global_step}; skipped samples: {skipped}",
                  file=self.stream or sys.stderr, flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close(trainer, pl_module, "finished", None)

    @rank_zero_only
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._write(trainer, CLOSING, {"status": "failed", "final_step": trainer.global_step,
                                       "error": f"{type(exception).__name__}: {exception}"})
