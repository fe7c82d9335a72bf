"""A run folder's ``metrics.csv`` read back as one series per metric (for notebooks, reports, plots).

Lightning's CSV logger writes one row per logging event with a column per metric ever logged, so
training rows leave the ``val/*`` cells empty and validation rows the ``train/*`` ones::

    ...,step,train/loss,train/loss_act,train/loss_gen,...,val/action_mse,...
    ...,9,2.01,2.01,0.055,...,,...
    ...,99,,,,...,2.23,...            (a validation row)

`read_metrics` turns that table into ``{"train/loss_act": Series(steps, values), ...}``: for each
metric, the rows where it has a value, in step order. ``step`` is Lightning's: the 0-based index
of the last optimizer step taken when the row was logged (so a validation after 100 steps is at
step 99). A resumed run appends to the same file after dropping rows the interrupted run logged
past its checkpoint (`a1.train.run_folder`); should a step still appear twice for a metric, the
later row wins.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.csv"
INDEX_COLUMNS = ("step", "epoch")
"""Columns that index the rows rather than hold a metric."""


@dataclass(frozen=True)
class Series:
    """One metric over training."""

    steps: np.ndarray
    """(N,) int64 Lightning steps, strictly increasing."""
    values: np.ndarray
    """(N,) float64 values (finite or not, as logged)."""

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last(self) -> float:
        """The most recent value (NaN for an empty series)."""
        return float(self.values[-1]) if len(self.values) else math.nan


def metrics_path(run: str | Path) -> Path:
    """``run`` itself when it is a file, else ``run/metrics.csv``."""
    run = Path(run)
    return run if run.is_file() else run / METRICS_FILE


def read_metrics(run: str | Path) -> dict[str, Series]:
    """Every metric of a run folder's ``metrics.csv`` (or of that CSV file given directly).

    Args:
        run: the run folder (``trainer.default_root_dir``) or the path of a ``metrics.csv``.

    Returns:
        metric name → `Series`, in the file's column order; a column that never holds a value is
        left out. Rows without a step are skipped.

    Raises:
        FileNotFoundError: no ``metrics.csv`` there (naming the path: the run has not logged yet).
        ValueError: a cell that is not a number (naming the file, line and column).
    """
    path = metrics_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (has the run logged a step yet?)")
    per_metric: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if c not in INDEX_COLUMNS]
        for column in columns:
            per_metric[column] = {}
        for row in reader:
            step_text = (row.get("step") or "").strip()
            if not step_text:
                continue
            try:
                step = int(float(step_text))
            except ValueError:
                raise ValueError(f"{path}: line {reader.line_num}, column 'step': not a number: {step_text!r}") from None
            for column in columns:
                text = (row.get(column) or "").strip()
                if not text:
                    continue
                try:
                    per_metric[column][step] = float(text)
                except ValueError:
                    raise ValueError(f"{path}: line {reader.line_num}, column {column!r}: not a number: "
                                     f"{text!r}") from None
    out = {}
    for column, by_step in per_metric.items():
        if by_step:
            steps = np.array(sorted(by_step), dtype=np.int64)
            out[column] = Series(steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out
