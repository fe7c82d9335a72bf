"""Action chunks on the episode's step axis: which action runs at step s.

A chunk planned at step s₀ holds k actions for the absolute steps s₀ … s₀+k−1. Chunks are never
shifted: a chunk that lands late (asynchronous planning) simply starts being used at the current
step, and its actions for steps already executed are ignored. At step s:

- without ensembling, the newest chunk that covers s gives the action;
- with temporal ensembling (coefficient c, as in ACT), every chunk that covers s votes, weighted
  exp(−c·i) with i = 0 for the oldest: a smooth, slowly reacting blend (c = 0: plain mean).
"""

from __future__ import annotations

import threading

import numpy as np


class ChunkQueue:
    """Planned chunks by start step (thread-safe: a background planner may add while a loop reads)."""

    def __init__(self, chunk_size: int, ensemble: float | None = None) -> None:
        if ensemble is not None and ensemble < 0:
            raise ValueError(f"ensemble coefficient must be >= 0, got {ensemble}")
        self.k, self.ensemble = chunk_size, ensemble
        self.chunks: list[tuple[int, np.ndarray]] = []
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.chunks.clear()

    def add(self, start: int, actions: np.ndarray) -> None:
        """Add the (k, D) chunk planned at step ``start``."""
        if actions.ndim != 2 or actions.shape[0] != self.k:
            raise ValueError(f"a chunk must be ({self.k}, D), got {actions.shape}")
        with self._lock:
            self.chunks.append((start, actions))
            self.chunks.sort(key=lambda c: c[0])

    def covers(self, step: int) -> bool:
        """Whether some chunk has an action for ``step``."""
        with self._lock:
            return any(s <= step < s + self.k for s, _ in self.chunks)

    def action(self, step: int) -> np.ndarray:
        """The (D,) action for ``step``; drops chunks that ended before it."""
        with self._lock:
            self.chunks = [(s, a) for s, a in self.chunks if s + self.k > step]
            votes = [a[step - s] for s, a in self.chunks if s <= step]
        if not votes:
            raise RuntimeError(f"no action planned for step {step}")
        if self.ensemble is None:
            return votes[-1]
        w = np.exp(-self.ensemble * np.arange(len(votes)))
        return (np.tensordot(w, np.stack(votes), axes=1) / w.sum()).astype(np.float32)
