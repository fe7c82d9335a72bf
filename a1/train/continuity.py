"""Weights continue — a ``--ckpt_path`` resume, ``model.init_from`` — only on data prepared as they
were trained on.

Two settings change what the same weights are asked to do without changing a single shape, so a
continued run under other values would train on different inputs or targets without any error:

- the frame geometry and m (``data.options.geometry`` / ``history``; recorded as the checkpoint's
  ``a1_processor`` and the policy folder's ``config.json: processor``);
- per dataset, delta or absolute actions and the dims kept absolute (``action_mode`` /
  ``absolute_dims``; recorded in ``a1_normalization`` / ``normalization.json``), compared for the
  datasets of the same name.

The frame size may change (post-training at another resolution is a real recipe; the experts resize
their inputs). Records written before a setting existed mean what a1 did then: stretched frames,
absolute actions.
"""

from __future__ import annotations

from typing import Any

from a1.data.collate import DatasetNorm
from a1.data.sample import LEGACY_GEOMETRY


def data_diff(processor: dict[str, Any] | None, normalization: dict[str, Any] | None, opts: Any,
              norms: dict[str, DatasetNorm]) -> list[str]:
    """``setting: then vs now`` for each difference between what weights were trained on (a record's
    ``processor`` and ``normalization`` sections) and the data module now (``opts``: its
    ``DataOptions``; ``norms``: dataset name → its `DatasetNorm`)."""
    out = []
    if processor:
        then = {"geometry": processor.get("geometry", LEGACY_GEOMETRY), "history": processor.get("history")}
        for key, value in then.items():
            if value is not None and value != getattr(opts, key):
                out.append(f"data.options.{key}: {value!r} then, {getattr(opts, key)!r} now")
    for name, entry in (normalization or {}).items():
        now = norms.get(name)
        if now is None or not isinstance(entry, dict):
            continue
        then = (entry.get("action_mode", "absolute"), sorted(entry.get("absolute_dims") or []))
        if then != (now.action_mode, sorted(now.absolute_dims)):
            out.append(f"dataset {name!r} action_mode/absolute_dims: {then[0]} {then[1]} then, "
                       f"{now.action_mode} {sorted(now.absolute_dims)} now")
    return out


def check_continuation(what: str, processor: dict[str, Any] | None, normalization: dict[str, Any] | None,
                       datamodule: Any) -> None:
    """Raise ``ValueError`` naming ``what`` (the checkpoint or folder) and every differing setting."""
    opts, norms = getattr(datamodule, "opts", None), getattr(datamodule, "norms", None)
    if opts is None or norms is None:
        return  # not an A1DataModule: nothing to compare with
    names = {datamodule.datasets[d].name: norm for d, norm in norms.items()}
    diffs = data_diff(processor, normalization, opts, names)
    if diffs:
        raise ValueError(f"{what} was trained on data prepared otherwise: {'; '.join(diffs)}. Set the data "
                         "options/datasets as they were, or start a new run")
