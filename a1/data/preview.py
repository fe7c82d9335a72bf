"""Frames of a dataset source for previews and demos (notebooks 02 and 04).

`source_frames` gathers the camera frames of a source's episodes as one uint8 array, made square by
the same `a1.data.sample.resize` as training samples — e.g. to fit a stand-in tokenizer on a world
(`a1.model.foresight_preview.fit_tokenizer`) or to look at what a dataset's cameras show.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from a1.data.sample import DEFAULT_GEOMETRY, EpisodeData, Geometry, resize


def source_frames(
    episodes: Sequence[EpisodeData],
    views: Sequence[str],
    size: int,
    every: int = 1,
    geometry: Geometry = DEFAULT_GEOMETRY,
) -> np.ndarray:
    """Every ``every``-th frame of every view of every episode.

    Args:
        episodes: a source's ``episodes`` (`a1.data.sources.open_source(...).episodes`).
        views: model views to read; a view an episode does not have (e.g. the wrist views of a
            human clip) is skipped.
        size: side of the square output frames (`resize` with ``geometry``).
        every: frame stride inside each episode (≥ 1).
    Returns:
        (N, 3, size, size) uint8, ordered by episode, then view, then frame.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    parts = []
    for episode in episodes:
        indices = np.arange(0, episode.length, every)
        for view in views:
            frames = episode.frames(view, indices)
            if frames is not None:
                parts.append(resize(frames, size, geometry))
    if not parts:
        return np.zeros((0, 3, size, size), dtype=np.uint8)
    return np.concatenate(parts)
