"""Per-dataset normalisation of state and action vectors, and padding to D = 32 dims.

Statistics use LeRobot's ``meta/stats.json`` layout: per feature a mapping with ``mean``,
``std``, ``q01``, ``q99`` (and more) lists. The mode is chosen per dataset in config:

- ``mean_std``: (x − mean) / std
- ``quantile``: the 1st/99th percentiles map to −1/+1 (not clipped: outliers keep their
  information), as in pi0.5-style quantile scaling: (x − (q01 + q99)/2) / ((q99 − q01)/2)
- ``none``: unchanged

``unnormalize`` inverts each mode exactly, so exported policies (which carry the statistics)
can turn predicted actions back into robot commands.

Statistics are never silently wrong: a `FeatureStats` refuses (``StatsError``, naming where the
statistics came from, e.g. ``.../manifest.json: stats.action: NaN in mean[3]``)

- a non-finite value (NaN, ±inf, or JSON ``null``) in mean, std, q01 or q99;
- a negative std, or q99 below q01;
- a feature with no spread in *every* dimension (all std ≈ 0, or q99 ≈ q01 everywhere): such
  statistics normalise nothing and almost always mean the wrong column or a broken recording.

A *single* dimension without spread (a joint that never moves, a gripper that stays open — common
in real data) is allowed: it is centred but not scaled, i.e. its scale is 1 instead of a division
by a tiny number that would blow its noise up. "Without spread" means std (``mean_std``) or
q99 − q01 (``quantile``) at most ``ZERO_SPREAD`` = 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Mode = Literal["mean_std", "quantile", "none"]
MODES = ("mean_std", "quantile", "none")
STAT_KEYS = ("mean", "std", "q01", "q99")
ZERO_SPREAD = 1e-6


class StatsError(ValueError):
    """Normalisation statistics are unusable; the message names where they came from and why."""


@dataclass
class FeatureStats:
    """Statistics of one vector feature (each array has the feature's dims); validated on creation."""

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    where: str = field(default="statistics", compare=False, repr=False)
    """Where the statistics came from (file and feature), used in error messages."""

    def __post_init__(self) -> None:
        for key in STAT_KEYS:
            setattr(self, key, np.asarray(getattr(self, key), dtype=np.float64).reshape(-1))
        dims = {getattr(self, k).shape[0] for k in STAT_KEYS}
        if len(dims) != 1:
            raise StatsError(f"{self.where}: statistics have inconsistent dims "
                             f"({', '.join(f'{k}: {getattr(self, k).shape[0]}' for k in STAT_KEYS)})")
        if dims == {0}:
            raise StatsError(f"{self.where}: statistics have no dims")
        for key in STAT_KEYS:
            values = getattr(self, key)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                v = values[bad[0]]
                kind = "NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf")
                raise StatsError(f"{self.where}: {kind} in {key}[{bad[0]}]")
        if (self.std < 0).any():
            raise StatsError(f"{self.where}: negative std[{int(np.flatnonzero(self.std < 0)[0])}]")
        if (self.q99 < self.q01).any():
            i = int(np.flatnonzero(self.q99 < self.q01)[0])
            raise StatsError(f"{self.where}: q99[{i}] = {self.q99[i]} is below q01[{i}] = {self.q01[i]}")
        if (self.std <= ZERO_SPREAD).all():
            raise StatsError(f"{self.where}: std is 0 in every dimension (a constant feature: wrong "
                             f"column, or a broken recording?)")
        if (self.q99 - self.q01 <= ZERO_SPREAD).all():
            raise StatsError(f"{self.where}: q99 == q01 in every dimension (a feature that is constant in "
                             f"98% of the frames: wrong column, or a broken recording?)")

    @classmethod
    def from_dict(cls, stats: dict, where: str) -> FeatureStats:
        """From a LeRobot stats entry; a missing key is a ``KeyError`` and a ``null``/NaN/inf
        value a `StatsError`, both naming ``where``."""
        if not isinstance(stats, dict):
            raise StatsError(f"{where}: statistics must be a mapping with {list(STAT_KEYS)}, "
                             f"got {type(stats).__name__}")
        values = {}
        for key in STAT_KEYS:
            if key not in stats:
                raise KeyError(f"{where}: statistics lack {key!r}")
            values[key] = _floats(stats[key], where, key)
        return cls(**values, where=where)

    @classmethod
    def compute(cls, values: np.ndarray, where: str = "statistics") -> FeatureStats:
        """From an (N, dims) array of samples."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] == 0:
            raise StatsError(f"{where}: need (frames, dims) samples, got shape {v.shape}")
        q01, q99 = np.quantile(v, [0.01, 0.99], axis=0)
        return cls(v.mean(0), v.std(0), q01, q99, where=where)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in STAT_KEYS}

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])


def _floats(value, where: str, key: str) -> np.ndarray:
    """A (nested) list of numbers as a flat float64 array; ``null`` and non-numbers are named."""
    flat = np.asarray(value, dtype=object).reshape(-1)
    for i, v in enumerate(flat):
        if v is None:
            raise StatsError(f"{where}: null in {key}[{i}]")
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise StatsError(f"{where}: {key}[{i}] is not a number ({v!r})")
    return flat.astype(np.float64)


def _affine(stats: FeatureStats, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, scale) with y = (x − centre) / scale; ``None`` for ``none``. Dims without spread
    get scale 1 (see the module docstring)."""
    if mode == "mean_std":
        centre, spread, scale = stats.mean, stats.std, stats.std
    elif mode == "quantile":
        spread = stats.q99 - stats.q01
        centre, scale = (stats.q01 + stats.q99) / 2.0, spread / 2.0
    elif mode == "none":
        return None
    else:
        raise ValueError(f"unknown normalisation mode {mode!r} (modes: {list(MODES)})")
    return centre, np.where(spread <= ZERO_SPREAD, 1.0, scale)


def normalize(x: np.ndarray, stats: FeatureStats | None, mode: Mode) -> np.ndarray:
    """(…, dims) raw values → normalised float32 (``stats`` may be None only for mode ``none``)."""
    return _apply(x, stats, mode, inverse=False)


def unnormalize(y: np.ndarray, stats: FeatureStats | None, mode: Mode) -> np.ndarray:
    """Inverse of :func:`normalize`."""
    return _apply(y, stats, mode, inverse=True)


def _apply(x: np.ndarray, stats: FeatureStats | None, mode: Mode, inverse: bool) -> np.ndarray:
    """y = (x − centre) / scale, or its inverse, in float64; float32 out."""
    if mode == "none" and stats is None:
        return np.asarray(x, dtype=np.float32)
    _check_dims(x, stats)
    x = np.asarray(x, dtype=np.float64)
    affine = _affine(stats, mode)
    if affine is None:
        return x.astype(np.float32)
    centre, scale = affine
    return (x * scale + centre if inverse else (x - centre) / scale).astype(np.float32)


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


def _check_dims(x: np.ndarray, stats: FeatureStats | None) -> None:
    if stats is None:
        raise ValueError("no statistics to normalise with (only mode 'none' works without them)")
    if np.shape(x)[-1] != stats.dims:
        raise ValueError(f"value has {np.shape(x)[-1]} dims, {stats.where} has {stats.dims}")
