"""The run folder: one place (``trainer.default_root_dir``) for a run's logs, checkpoints and reports.

::

    <default_root_dir>/
      config.yaml            the resolved config (LightningCLI)
      metrics.csv            every logged value, appended to across resumes
      tensorboard/           the same values as TensorBoard event files
      checkpoints/           step=NNNNNNN.ckpt and last.ckpt (written in place)
      startup_report.json    what the run found and built (a1.train.report)
      closing_report.json    how it ended

The folder is stable (no ``version_N``), so ``--ckpt_path last`` always finds the newest run of a
config, and a resumed run appends to the same ``metrics.csv`` (rows at or after the resumed step,
logged by the interrupted run after its last checkpoint, are dropped first). A fresh run never
overwrites a folder that already holds a run: resume it or choose another folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked; the message names the folder and the fix."""


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, minus deleting an existing ``metrics.csv`` (a resumed run appends)."""

    def _check_log_dir_exists(self) -> None:
        if Path(self.metrics_file_path).is_file():  # continue the existing columns
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` directly in the run folder, kept across resumes."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(save_dir=str(root), name="", version="")
        self._last_row: tuple[int | None, dict] | None = None

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Log a row, skipping an exact repeat of the previous one (`A1Checkpoint` writes a step's
        training row before Lightning's loop logs that same row)."""
        if step is not None and (step, metrics) == self._last_row:
            return
        self._last_row = (step, dict(metrics))
        super().log_metrics(metrics, step)

    def drop_rows_from(self, step: int) -> int:
        """Remove rows logged at ``step`` or later (by a run killed after its last checkpoint)."""
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        if not path.is_file():
            return 0
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        keep = [r for r in rows if not (r.get("step") not in (None, "") and int(float(r["step"])) >= step)]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(keep)
        return len(rows) - len(keep)


def run_loggers(root: str | Path) -> list:
    """The default loggers of a run: CSV (first: it fixes the checkpoint folder) and TensorBoard."""
    return [RunCSVLogger(root), TensorBoardLogger(save_dir=str(root), name="tensorboard", version="",
                                                  default_hp_metric=False)]


class A1Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is rewritten in place and also holds the final step.

    Lightning saves by ``every_n_train_steps`` only, so a run ending between two saves would leave a
    ``last.ckpt`` behind its final weights; this writes ``last.ckpt`` when training ends too.
    """

    def __init__(self, every_n_train_steps: int = 1000, save_top_k: int = -1, filename: str = "{step:07d}",
                 save_last: bool = True) -> None:
        """
        Args:
            every_n_train_steps: optimizer steps between checkpoints.
            save_top_k: how many step checkpoints to keep (the newest; -1: all), besides ``last.ckpt``.
            filename: name of the step checkpoints.
            save_last: also keep ``last.ckpt`` (what ``--ckpt_path last`` resumes).
        """
        if every_n_train_steps < 1:
            raise ValueError(f"checkpoint.every_n_train_steps must be >= 1, got {every_n_train_steps}")
        super().__init__(every_n_train_steps=every_n_train_steps, save_top_k=save_top_k, filename=filename,
                         save_last=save_last, monitor="step" if save_top_k not in (-1, 0) else None, mode="max",
                         enable_version_counter=False, auto_insert_metric_name=True)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        _write_step_row(trainer)
        for logger in trainer.loggers:  # metrics on disk up to the checkpoint survive a kill
            logger.save()
        super()._save_checkpoint(trainer, filepath)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step > 0 and self._last_global_step_saved < trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _write_step_row(trainer) -> None:
    """Write the current training step's row to ``metrics.csv`` before a checkpoint is saved.

    Lightning saves step checkpoints in ``on_train_batch_end`` and logs that step's metrics only
    afterwards, so a run killed while a checkpoint is written would lose the row for good (the
    resumed run starts after it). The row is computed exactly as Lightning's logger connector
    does; `RunCSVLogger` skips the identical row when the loop logs it. Uses Lightning's logger
    connector (internal); where it differs, nothing is written early.
    """
    conn = getattr(trainer, "_logger_connector", None)
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if conn is None or loop is None or not trainer.training or getattr(conn, "_first_loop_iter", None) is None:
        return
    if trainer.fit_loop._should_accumulate() or not (conn.should_update_logs or trainer.fast_dev_run):
        return
    from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

    metrics = convert_tensors_to_scalars(conn.metrics["log"])
    if not metrics:
        return
    step = metrics.pop("step", None)
    if step is None:
        metrics.setdefault("epoch", trainer.current_epoch)
        step = loop._batches_that_stepped
    for logger in trainer.loggers:
        if isinstance(logger, RunCSVLogger):
            logger.log_metrics(metrics, int(step))


def existing_run(root: str | Path) -> Path | None:
    """The ``last.ckpt`` (or metrics) of a run already in ``root``, if any."""
    root = Path(root)
    for p in (root / CHECKPOINTS / LAST, root / ExperimentWriter.NAME_METRICS_FILE):
        if p.is_file():
            return p
    return None


def check_fresh_or_resume(root: str | Path, ckpt_path: str | None) -> str | None:
    """The checkpoint to start from: ``None`` for a fresh run into an unused folder, the folder's
    ``last.ckpt`` for ``last``, or ``ckpt_path``. A fresh run into a used folder is an error."""
    root = Path(root)
    if ckpt_path == "last":
        last = root / CHECKPOINTS / LAST
        if not last.is_file():
            raise RunFolderError(f"--ckpt_path last: {last} not found (trainer.default_root_dir={root}); start "
                                 f"without --ckpt_path to begin a new run there")
        return str(last)
    if ckpt_path is not None:
        if not Path(ckpt_path).exists():
            raise RunFolderError(f"--ckpt_path {ckpt_path}: not found")
        return ckpt_path
    found = existing_run(root)
    if found is not None:
        raise RunFolderError(f"{root} already holds a run ({found}); resume it with --ckpt_path last, or start a "
                             f"new one elsewhere with --trainer.default_root_dir DIR")
    return None


class KeepMetrics(Callback):
    """On resume, drop the ``metrics.csv`` rows the interrupted run logged after its checkpoint."""

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step > 0 and trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, RunCSVLogger):
                    logger.drop_rows_from(trainer.global_step)
