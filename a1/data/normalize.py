"""Per-dataset normalisation of state and action vectors, delta actions, and padding to D = 32 dims.

Statistics use LeRobot's ``meta/stats.json`` layout: per feature a mapping with ``mean`` and
``std`` lists, and usually ``q01``/``q99`` (LeRobot, a1) — the official InternVLA-A1
``stats.json`` has mean/std/min/max/count and no quantiles, which is accepted too. The mode is
chosen per dataset in config:

- ``mean_std`` (a1's default): (x − mean) / std, where a dim with std ≤ ``ZERO_SPREAD`` gets scale
  1 (see below);
- ``mean_std_eps`` (the official InternVLA-A1 rule): (x − mean) / (std + 1e-6), inverse
  x · (std + 1e-6) + mean — use it to reproduce the official checkpoints' normalisation. A dim
  that never moves is divided by 1e-6, so any noise on it comes out a million times larger:
  that is why a1's default guards zero-spread dims instead;
- ``quantile``: the 1st/99th percentiles map to −1/+1 (not clipped: outliers keep their
  information), as in pi0.5-style quantile scaling: (x − (q01 + q99)/2) / ((q99 − q01)/2). Needs
  q01/q99: statistics without them are refused (``StatsError`` naming where they came from);
- ``none``: unchanged.

``apply(..., inverse=True)`` inverts each mode exactly, so exported policies (which carry the
statistics) can turn predicted actions back into robot commands
(`a1.data.collate.DatasetNorm.actions_to_raw`).

**Delta actions** (``action_mode: delta``, as the official pre-training and RoboTwin runs): the
model predicts a_{t+i} − q_t on every action dim except ``absolute_dims`` (e.g. the grippers of
an ALOHA-style 14-dim arm, dims 6 and 13), whose values stay absolute; the statistics are
computed on those deltas (`a1.data.stats`), and at inference the raw state is added back after
un-normalising. `delta_dims` checks the configuration against the dims; `to_delta`/`from_delta`
are the transform, applied to model actions only through `a1.data.collate.DatasetNorm`.

Statistics are never silently wrong: a `FeatureStats` refuses (``StatsError``, naming where the
statistics came from, e.g. ``.../manifest.json: stats.action: NaN in mean[3]``)

- a non-finite value (NaN, ±inf, or JSON ``null``) in mean, std, q01 or q99;
- a negative std, q99 below q01, or only one of q01/q99;
- a feature with no spread in *every* dimension (all std ≈ 0, or q99 ≈ q01 everywhere): such
  statistics normalise nothing and almost always mean the wrong column or a broken recording.

A *single* dimension without spread (a joint that never moves, a gripper that stays open — common
in real data) is allowed: in ``mean_std`` and ``quantile`` it is centred but not scaled, i.e. its
scale is 1 instead of a division by a tiny number that would blow its noise up. "Without spread"
means std (``mean_std``) or q99 − q01 (``quantile``) at most ``ZERO_SPREAD`` = 1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Mode = Literal["mean_std", "mean_std_eps", "quantile", "none"]
MODES = ("mean_std", "mean_std_eps", "quantile", "none")
ActionMode = Literal["absolute", "delta"]
ACTION_MODES = ("absolute", "delta")
STAT_KEYS = ("mean", "std", "q01", "q99")
QUANTILE_KEYS = ("q01", "q99")
ZERO_SPREAD = 1e-6
OFFICIAL_EPS = 1e-6
"""The ``+ 1e-6`` of the official rule (``mean_std_eps``)."""


class StatsError(ValueError):
    """Normalisation statistics are unusable; the message names where they came from and why."""


@dataclass
class FeatureStats:
    """Statistics of one vector feature (each array has the feature's dims); validated on creation.
    ``q01``/``q99`` are both given or both ``None`` (statistics without quantiles)."""

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None
    where: str = field(default="statistics", compare=False, repr=False)
    """Where the statistics came from (file and feature), used in error messages."""

    def __post_init__(self) -> None:
        if (self.q01 is None) != (self.q99 is None):
            have, lack = ("q01", "q99") if self.q99 is None else ("q99", "q01")
            raise StatsError(f"{self.where}: statistics have {have} but no {lack} (give both or neither)")
        for key in self._keys():
            setattr(self, key, np.asarray(getattr(self, key), dtype=np.float64).reshape(-1))
        dims = {getattr(self, k).shape[0] for k in self._keys()}
        if len(dims) != 1:
            raise StatsError(f"{self.where}: statistics have inconsistent dims "
                             f"({', '.join(f'{k}: {getattr(self, k).shape[0]}' for k in self._keys())})")
        if dims == {0}:
            raise StatsError(f"{self.where}: statistics have no dims")
        for key in self._keys():
            values = getattr(self, key)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                v = values[bad[0]]
                kind = "NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf")
                raise StatsError(f"{self.where}: {kind} in {key}[{bad[0]}]")
        if (self.std < 0).any():
            raise StatsError(f"{self.where}: negative std[{int(np.flatnonzero(self.std < 0)[0])}]")
        if (self.std <= ZERO_SPREAD).all():
            raise StatsError(f"{self.where}: std is 0 in every dimension (a constant feature: wrong "
                             f"column, or a broken recording?)")
        if self.has_quantiles:
            self._check_quantiles()

    def _check_quantiles(self) -> None:
        if (self.q99 < self.q01).any():
            i = int(np.flatnonzero(self.q99 < self.q01)[0])
            raise StatsError(f"{self.where}: q99[{i}] = {self.q99[i]} is below q01[{i}] = {self.q01[i]}")
        if (self.q99 - self.q01 <= ZERO_SPREAD).all():
            raise StatsError(f"{self.where}: q99 == q01 in every dimension (a feature that is constant in "
                             f"98% of the frames: wrong column, or a broken recording?)")

    def _keys(self) -> tuple[str, ...]:
        return STAT_KEYS if self.has_quantiles else ("mean", "std")

    @property
    def has_quantiles(self) -> bool:
        """Whether q01/q99 are known (the official stats.json has none)."""
        return self.q01 is not None

    @classmethod
    def from_dict(cls, stats: dict, where: str) -> FeatureStats:
        """From a LeRobot stats entry (other keys such as min/max/count are ignored); a missing mean
        or std, or only one of q01/q99, is a ``KeyError`` and a ``null``/NaN/inf value a
        `StatsError`, both naming ``where``."""
        if not isinstance(stats, dict):
            raise StatsError(f"{where}: statistics must be a mapping with {list(STAT_KEYS)} (q01/q99 optional), "
                             f"got {type(stats).__name__}")
        keys = STAT_KEYS if any(k in stats for k in QUANTILE_KEYS) else ("mean", "std")
        values = {}
        for key in keys:
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
        """The stats entry (q01/q99 only when known)."""
        return {k: getattr(self, k).tolist() for k in self._keys()}

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


def check_mode(stats: FeatureStats | None, mode: str) -> None:
    """``mode`` is known and ``stats`` have what it needs (``quantile``: q01/q99), else an error
    naming where the statistics came from."""
    if mode not in MODES:
        raise ValueError(f"unknown normalisation mode {mode!r} (modes: {list(MODES)})")
    if mode == "quantile" and stats is not None and not stats.has_quantiles:
        raise StatsError(f"{stats.where}: normalization 'quantile' needs q01/q99, these statistics have only "
                         f"mean/std (e.g. an official InternVLA-A1 stats.json); use 'mean_std_eps' or 'mean_std', "
                         f"or compute statistics with percentiles (python -m a1.data.stats)")


def _affine(stats: FeatureStats, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, scale) with y = (x − centre) / scale; ``None`` for ``none``. In ``mean_std`` and
    ``quantile``, dims without spread get scale 1 (see the module docstring)."""
    check_mode(stats, mode)
    if mode == "mean_std_eps":
        return stats.mean, stats.std + OFFICIAL_EPS
    if mode == "mean_std":
        centre, spread, scale = stats.mean, stats.std, stats.std
    elif mode == "quantile":
        spread = stats.q99 - stats.q01
        centre, scale = (stats.q01 + stats.q99) / 2.0, spread / 2.0
    else:
        return None
    return centre, np.where(spread <= ZERO_SPREAD, 1.0, scale)


def normalize(x: np.ndarray, stats: FeatureStats | None, mode: Mode) -> np.ndarray:
    """(…, dims) raw values → normalised float32 (``stats`` may be None only for mode ``none``)."""
    return apply(x, stats, mode, inverse=False).astype(np.float32)


def apply(x: np.ndarray, stats: FeatureStats | None, mode: Mode, inverse: bool) -> np.ndarray:
    """y = (x − centre) / scale, or with ``inverse`` x = y · scale + centre, in float64 (the one body of
    normalisation: `normalize`, and `a1.data.collate.DatasetNorm.actions_to_raw` for the inverse)."""
    if mode == "none" and stats is None:
        return np.asarray(x, dtype=np.float64)
    _check_dims(x, stats)
    x = np.asarray(x, dtype=np.float64)
    affine = _affine(stats, mode)
    if affine is None:
        return x
    centre, scale = affine
    return x * scale + centre if inverse else (x - centre) / scale


def delta_dims(action_dim: int, state_dim: int | None, absolute_dims: Sequence[int], where: str) -> np.ndarray:
    """The action dims that are deltas (every dim not in ``absolute_dims``), checked: the absolute
    dims are distinct and inside the ``action_dim`` dims, and the state (``state_dim``; None: the
    dataset has no state) covers every delta dim. Errors name ``where``."""
    dims = list(absolute_dims)
    bad = [d for d in dims if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < action_dim]
    if bad:
        raise ValueError(f"{where}: absolute_dims {bad} are not action dims (the actions have {action_dim} "
                         f"dims: 0..{action_dim - 1})")
    if len(set(dims)) != len(dims):
        raise ValueError(f"{where}: absolute_dims {dims} name a dim twice")
    delta = np.setdiff1d(np.arange(action_dim), np.asarray(dims, dtype=np.int64))
    if delta.size and state_dim is None:
        raise ValueError(f"{where}: action_mode 'delta' subtracts the state from the actions, but the dataset "
                         f"has no state; use action_mode 'absolute'")
    if delta.size and state_dim < int(delta.max()) + 1:
        raise ValueError(f"{where}: action_mode 'delta' subtracts the state from action dims "
                         f"{delta.tolist()}, but the state has {state_dim} dims; list the action dims past "
                         f"{state_dim - 1} in absolute_dims, or use action_mode 'absolute'")
    return delta


def to_delta(actions: np.ndarray, state: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(…, Da) raw actions → float64 with ``state[..., dims]`` subtracted on ``dims`` (`delta_dims`);
    ``state`` (…, Ds) broadcasts over the leading axes, e.g. (k, Da) actions and a (Ds,) state."""
    out = np.array(actions, dtype=np.float64)
    out[..., dims] -= np.asarray(state, dtype=np.float64)[..., dims]
    return out


def from_delta(actions: np.ndarray, state: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Inverse of `to_delta`: ``state[..., dims]`` added back on ``dims`` (float64)."""
    out = np.array(actions, dtype=np.float64)
    out[..., dims] += np.asarray(state, dtype=np.float64)[..., dims]
    return out


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
