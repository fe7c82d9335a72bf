"""Per-dataset normalisation of state and action vectors, and padding to D = 32 dims.

Statistics use LeRobot's ``meta/stats.json`` layout: per feature a mapping with ``mean``,
``std``, ``q01``, ``q99`` (and more) lists. The mode is chosen per dataset in config:

- ``mean_std``: (x − mean) / std
- ``quantile``: the 1st/99th percentiles map to −1/+1 (not clipped: outliers keep their
  information), as in pi0.5-style quantile scaling
- ``none``: unchanged

``unnormalize`` inverts each mode exactly, so exported policies (which carry the statistics)
can turn predicted actions back into robot commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["mean_std", "quantile", "none"]
_EPS = 1e-6


@dataclass
class FeatureStats:
    """Statistics of one vector feature (each array has the feature's dims)."""

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray

    @classmethod
    def from_dict(cls, stats: dict, where: str) -> FeatureStats:
        """From a LeRobot stats entry; a missing key is an error naming ``where``."""
        values = {}
        for key in ("mean", "std", "q01", "q99"):
            if key not in stats:
                raise KeyError(f"{where}: statistics lack {key!r}")
            values[key] = np.asarray(stats[key], dtype=np.float64).reshape(-1)
        dims = {v.shape[0] for v in values.values()}
        if len(dims) != 1:
            raise ValueError(f"{where}: statistics have inconsistent dims {sorted(dims)}")
        return cls(**values)

    @classmethod
    def compute(cls, values: np.ndarray) -> FeatureStats:
        """From an (N, dims) array of samples."""
        v = np.asarray(values, dtype=np.float64)
        q01, q99 = np.quantile(v, [0.01, 0.99], axis=0)
        return cls(v.mean(0), v.std(0), q01, q99)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("mean", "std", "q01", "q99")}

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])


def normalize(x: np.ndarray, stats: FeatureStats, mode: Mode) -> np.ndarray:
    """(…, dims) raw values → normalised float32."""
    _check_dims(x, stats)
    x = np.asarray(x, dtype=np.float64)
    if mode == "mean_std":
        y = (x - stats.mean) / np.maximum(stats.std, _EPS)
    elif mode == "quantile":
        y = 2.0 * (x - stats.q01) / np.maximum(stats.q99 - stats.q01, _EPS) - 1.0
    elif mode == "none":
        y = x
    else:
        raise ValueError(f"unknown normalisation mode {mode!r}")
    return y.astype(np.float32)


def unnormalize(y: np.ndarray, stats: FeatureStats, mode: Mode) -> np.ndarray:
    """Inverse of :func:`normalize`."""
    _check_dims(y, stats)
    y = np.asarray(y, dtype=np.float64)
    if mode == "mean_std":
        x = y * np.maximum(stats.std, _EPS) + stats.mean
    elif mode == "quantile":
        x = (y + 1.0) / 2.0 * np.maximum(stats.q99 - stats.q01, _EPS) + stats.q01
    elif mode == "none":
        x = y
    else:
        raise ValueError(f"unknown normalisation mode {mode!r}")
    return x.astype(np.float32)


def pad(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad the last axis to ``dims``; returns (padded, (dims,) bool mask of real dims)."""
    real = x.shape[-1]
    if real > dims:
        raise ValueError(f"vector has {real} dims, more than the model's {dims}")
    out = np.zeros((*x.shape[:-1], dims), dtype=np.float32)
    out[..., :real] = x
    mask = np.zeros(dims, dtype=bool)
    mask[:real] = True
    return out, mask


def _check_dims(x: np.ndarray, stats: FeatureStats) -> None:
    if np.shape(x)[-1] != stats.dims:
        raise ValueError(f"value has {np.shape(x)[-1]} dims, statistics have {stats.dims}")
