"""Per-camera frame history at the control rate: frame t and frame t−m for the generation expert.

Training samples pair frame t with frame t−m (m = ``history``, paper: 15) and, at t < m, put
the episode's first frame in the t−m slot and mask it. A deployed episode reproduces that: it
records the frame of every step it sees and looks t−m up.

When frames are not recorded at every step (a policy server sees one observation per chunk of n
executed actions), the t−m slot takes the recorded frame whose step is nearest to t−m (the older
one on a tie). ``pair`` marks the slot valid once t ≥ m, as in training.

Frames are (3, H, W) uint8, or float32 in the 0–255 scale (what the processor's letterbox/stretch
gives, kept unrounded); a pair of one of each is returned as float32 (uint8 values are exact in it).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from a1.data.sample import FRAME_DTYPES
from a1.deploy.processor import ObservationError


class FrameHistory:
    """Recorded frames of one camera, by episode step; keeps only what t−m lookups still need."""

    def __init__(self, m: int) -> None:
        if m < 1:
            raise ValueError(f"history m must be >= 1, got {m}")
        self.m = m
        self.frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.first: np.ndarray | None = None

    def clear(self) -> None:
        """Forget everything (a new episode)."""
        self.frames.clear()
        self.first = None

    def push(self, step: int, frame: np.ndarray) -> None:
        """Record (3, H, W) uint8 or float32 ``frame`` at ``step``; steps increase, and the same step
        again replaces its frame (a retried request). Frames too old to be needed are dropped."""
        if frame.dtype not in FRAME_DTYPES:
            raise ValueError(f"frame history: frames must be uint8 or float32 (0–255), got {frame.dtype}")
        last = next(reversed(self.frames)) if self.frames else None
        if last is not None and step < last:
            raise ValueError(f"frame history: step {step} is before the last recorded step {last} "
                             f"(call reset() for a new episode)")
        if self.first is None or (step == last and len(self.frames) == 1):
            self.first = frame
        self.frames[step] = frame
        # keep the newest frame at or before step − m (still the nearest candidate) and all after it
        old = [s for s in self.frames if s <= step - self.m]
        for s in old[:-1]:
            del self.frames[s]

    def pair(self, step: int, now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((2, 3, H, W) frames t−m and t, (2,) validity) for (3, H, W) frame ``now`` at ``step``,
        from the frames recorded before it (nothing is recorded here: see `push`). The pair has
        ``now``'s dtype, or float32 when the two frames' dtypes differ."""
        target = step - self.m
        earlier = [s for s in self.frames if s < step]
        if target < 0 or not earlier:
            past, valid = (self.first if self.first is not None and earlier else now), False
        else:
            past, valid = self.frames[min(earlier, key=lambda s: (abs(s - target), s))], True
        if past.shape != now.shape:
            raise ObservationError(f"camera frame size changed within the episode: {past.shape} at t−m, "
                                   f"{now.shape} now (call reset() after changing cameras)")
        return np.stack([past, now]), np.array([valid, True])
