"""Progress display counted in optimizer steps (training streams endless data and stops at
``trainer.max_steps``; epochs mean nothing here).

* :class:`StepProgressBar` (terminals): a rich bar ``step 120/300`` with the losses
  (``loss``, ``act``, ``gen`` = train/loss, train/loss_act, train/loss_gen) and the last
  validation's ``val_mse`` (val/action_mse); validation is its own short ``val`` task. No v_num.
* :class:`LogLines` (log files, pipes, SLURM output): one plain line to stderr every
  ``every_n_steps`` optimizer steps and at the last step, and one after each validation::

      step 100/300 (33%) | loss 0.512 | act 0.401 | gen 11.2 | lr 1.00e-03 | 31.2 samples/s | elapsed 0:53 | ETA 1:46
      val step 100 | action_mse 2.19 | latent_mse 0.015

* :func:`progress_bar` picks one: ``StepProgressBar`` when the stream is a terminal, else
  ``LogLines``. Set ``A1_PROGRESS=rich`` or ``A1_PROGRESS=lines`` to override the detection.

Steps are ``trainer.global_step`` (optimizer steps, so gradient accumulation counts once per
step). The total is ``trainer.estimated_stepping_batches`` (``max_steps`` for streamed data);
without a finite total (``max_steps=-1`` on endless data) there is no percentage and no ETA.
Metrics that were not logged are left out.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, TextIO

import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import RichProgressBarTheme

#: (logged name, display name, format) of the training metrics, in display order.
TRAIN_METRICS = (
    ("train/loss", "loss", ".3g"),
    ("train/loss_act", "act", ".3g"),
    ("train/loss_gen", "gen", ".3g"),
    ("train/lr", "lr", ".2e"),
    ("train/grad_norm", "gnorm", ".3g"),
)
#: (logged name, display name, format) of the validation metrics, in display order.
VAL_METRICS = (
    ("val/action_mse", "action_mse", ".3g"),
    ("val/latent_mse", "latent_mse", ".3g"),
    ("val/foresight_psnr", "psnr", ".3g"),
    ("val/foresight_ssim", "ssim", ".3g"),
)


def metric(metrics: dict[str, Any], name: str) -> float | None:
    """``metrics[name]`` (or the ``name_step`` variant) as a float; ``None`` when not logged."""
    value = metrics.get(name, metrics.get(f"{name}_step"))
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else None
    return None if value is None else float(value)


def format_metrics(metrics: dict[str, Any], table: tuple[tuple[str, str, str], ...]) -> list[str]:
    """``["loss 0.512", "act 0.401", ...]`` for the entries of ``table`` present in ``metrics``."""
    return [f"{short} {value:{fmt}}" for name, short, fmt in table
            if (value := metric(metrics, name)) is not None]


def duration(seconds: float) -> str:
    """``53`` → ``0:53``, ``3723`` → ``1:02:03`` (hours keep counting past a day)."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def total_steps(trainer) -> int | None:
    """The optimizer steps this run will take, or ``None`` when unbounded/unknown."""
    total = trainer.estimated_stepping_batches
    return int(total) if 0 < total < math.inf else None


def batch_size(batch: Any) -> int | None:
    """Samples in one (per-rank) batch: ``batch.batch_size`` (a1's ``Batch``), or the length
    of the first tensor of a tensor / tuple / list / dict batch; ``None`` if unknown."""
    size = getattr(batch, "batch_size", None)
    if isinstance(size, int):
        return size
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        batch = next((b for b in batch if isinstance(b, torch.Tensor)), None)
    return len(batch) if isinstance(batch, torch.Tensor) and batch.ndim else None


class StepProgressBar(RichProgressBar):
    """Rich bar for terminals: ``step 120/300 ━━━━ 0:00:53 • 0:01:46 2.25it/s loss: 0.512 act: ...``.

    Args as :class:`lightning.pytorch.callbacks.RichProgressBar` (``console_kwargs`` e.g.
    ``{"stderr": True}`` or ``{"file": stream}``); metrics use 3 significant digits.
    """

    def __init__(self, refresh_rate: int = 10, console_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(refresh_rate=refresh_rate, console_kwargs=console_kwargs,
                         theme=RichProgressBarTheme(metrics_format=".3g"))

    @property
    def train_description(self) -> str:
        return "step"

    @property
    def validation_description(self) -> str:
        return "val"

    @property
    def sanity_check_description(self) -> str:
        return "sanity check"

    @property
    def total_train_batches(self) -> int | float:
        """The bar's total: optimizer steps of the whole run (``inf`` when unbounded)."""
        return total_steps(self.trainer) or math.inf

    def configure_columns(self, trainer) -> list:
        description, bar, count, *rest = super().configure_columns(trainer)
        return [description, count, bar, *rest]  # "step 120/300 ━━━━"

    def _initialize_train_progress_bar_id(self) -> None:
        """One task for the whole run, starting at the current step (resume: no jump in speed)."""
        self.train_progress_bar_id = self._add_task(self.total_train_batches, self.train_description)
        self.progress.reset(self.train_progress_bar_id, total=self.total_train_batches,
                            completed=self.trainer.global_step)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.is_enabled and self.progress is not None and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.is_enabled and self.progress is not None and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        """Short names: loss, act, gen (training), val_mse (last validation), then any other
        ``prog_bar=True`` metric under its own name; never ``v_num``."""
        shown = {short: value for name, short, _ in TRAIN_METRICS[:3]
                 if (value := metric(trainer.callback_metrics, name)) is not None}
        if (mse := metric(trainer.callback_metrics, "val/action_mse")) is not None:
            shown["val_mse"] = mse
        known = {name for name, _, _ in TRAIN_METRICS + VAL_METRICS}
        for name, value in trainer.progress_bar_metrics.items():
            if name not in known and name != "v_num":
                shown[name] = value
        return shown


class LogLines(ProgressBar):
    """Plain progress lines for non-terminal output (rank 0 only).

    Every ``every_n_steps`` optimizer steps and at the last step::

        step 100/300 (33%) | loss 0.512 | act 0.401 | gen 11.2 | lr 1.00e-03 | 31.2 samples/s | elapsed 0:53 | ETA 1:46

    (``gnorm`` = train/grad_norm follows ``lr`` when logged), and after each validation:
    ``val step 100 | action_mse 2.19 | latent_mse 0.015 | psnr .. | ssim ..``.
    samples/s = samples seen across ranks (per-rank batch size × world size) per wall second and
    ETA = remaining steps / steps per second, both measured from the first optimizer step of this
    process (a resumed run does not count the steps before it). ``elapsed``: since training
    started in this process. ``stream``: where to write (default ``sys.stderr`` at write time).
    """

    def __init__(self, every_n_steps: int = 10, stream: TextIO | None = None) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps, self._stream, self._enabled = every_n_steps, stream, True
        self._start = self._total = None
        self._ref: tuple[float, int, int] | None = None  # (time, step, samples) at the first step
        self._samples, self._start_step, self._printed = 0, 0, -1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, **kwargs, file=self._stream or sys.stderr, flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._total = time.perf_counter(), total_steps(trainer)
        self._start_step = self._printed = trainer.global_step
        self._ref, self._samples = None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += (batch_size(batch) or 0) * trainer.world_size
        step = trainer.global_step
        if self._ref is None and step > self._start_step:
            self._ref = (time.perf_counter(), step, self._samples)
        last = self._total is not None and step >= self._total
        if step != self._printed and (step % self.every_n_steps == 0 or last):
            self._print_step(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step not in (self._printed, self._start_step):
            self._print_step(trainer)  # stopped early (max_time, should_stop, finite data)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            parts = format_metrics(trainer.callback_metrics, VAL_METRICS)
            self.print(" | ".join([f"val step {trainer.global_step}", *parts]))

    def _print_step(self, trainer) -> None:
        step, now = trainer.global_step, time.perf_counter()
        self._printed = step
        head = f"step {step}"
        if self._total is not None:
            head += f"/{self._total} ({100 * step // self._total}%)"
        parts = [head, *format_metrics(trainer.callback_metrics, TRAIN_METRICS)]
        steps_per_s = None
        if self._ref is not None and now > self._ref[0] and step > self._ref[1]:
            seconds = now - self._ref[0]
            steps_per_s = (step - self._ref[1]) / seconds
            if self._samples > self._ref[2]:
                parts.append(f"{(self._samples - self._ref[2]) / seconds:.1f} samples/s")
        parts.append(f"elapsed {duration(now - self._start)}")
        if steps_per_s and self._total is not None:
            parts.append(f"ETA {duration(max(self._total - step, 0) / steps_per_s)}")
        self.print(" | ".join(parts))


def progress_bar(every_n_steps: int = 10, stream: TextIO | None = None) -> ProgressBar:
    """The progress display for ``stream`` (default ``sys.stderr``): :class:`StepProgressBar`
    on a terminal, :class:`LogLines` (a line every ``every_n_steps`` steps) otherwise.
    ``A1_PROGRESS=rich|lines`` overrides the terminal detection."""
    choice = os.environ.get("A1_PROGRESS", "").strip().lower()
    if choice not in ("", "rich", "lines"):
        raise ValueError(f"A1_PROGRESS={choice!r}: use 'rich' or 'lines' (or leave it unset)")
    out = stream if stream is not None else sys.stderr
    if choice == "rich" or (not choice and getattr(out, "isatty", lambda: False)()):
        return StepProgressBar(console_kwargs={"stderr": True} if stream is None else {"file": stream})
    return LogLines(every_n_steps=every_n_steps, stream=stream)
