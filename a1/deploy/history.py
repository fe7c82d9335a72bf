"""Per-camera frame history at the control rate: frame t and frame t−m for the generation expert.

Training samples pair frame t with frame t−m (m = ``history``, paper: 15) and, at t < m, put
the episode's first frame in the t−m slot and mask it. A deployed episode reproduces that: it
records the frame of every step it sees and looks t−m up.

When frames are not recorded at every step (a policy server sees one observation per chunk of n
executed actions), the t−m slot takes the recorded frame whose step is nearest to t−m (the older
one on a tie). ``pair`` marks the slot valid once t ≥ m, as in training.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

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
        """Record (3, H, W) ``frame`` at ``step`` (steps increase); drop frames too old to be needed."""
        if self.frames and step <= next(reversed(self.frames)):
            raise ValueError(f"frame history: step {step} is not after the last recorded step "
                             f"{next(reversed(self.frames))} (call reset() for a new episode)")
        if self.first is None:
            self.first = frame
        self.frames[step] = frame
        # keep the newest frame at or before step − m (still the nearest candidate) and all after it
        old = [s for s in self.frames if s <= step - self.m]
        for s in old[:-1]:
            del self.frames[s]

    def pair(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """((2, 3, H, W) frames t−m and t, (2,) validity) for the frame recorded at ``step``."""
        if step not in self.frames:
            raise ValueError(f"frame history: no frame recorded at step {step}")
        now, target = self.frames[step], step - self.m
        if target < 0:
            past, valid = self.first, False
        else:
            nearest = min(self.frames, key=lambda s: (abs(s - target), s))
            past, valid = self.frames[nearest], True
        if past.shape != now.shape:
            raise ObservationError(f"camera frame size changed within the episode: {past.shape} at t−m, "
                                   f"{now.shape} now (call reset() after changing cameras)")
        return np.stack([past, now]), np.array([valid, True])
