"""Frame-accurate random access into mp4 files (LeRobot videos).

`decode_frames(path, timestamps)` returns the frames nearest each requested timestamp (seconds,
in the file's own clock) as an ``(N, H, W, 3)`` uint8 array. It seeks to the keyframe before each
request and decodes forward, so a few frames spread through one long multi-episode file (LeRobot
v3.0 packs many episodes per mp4) cost a few GOPs each, not a full decode.

Backends: torchcodec when importable (``backend="auto"``), else PyAV (bundles FFmpeg). Every
failure (missing / truncated / corrupt file, timestamp outside the video or with no frame within
``tolerance_s``) raises `VideoError`, a `ValueError` naming the file and the timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# LeRobot's default `tolerance_s` (timestamps are k / fps; mp4 time bases represent those to ~1e-5).
DEFAULT_TOLERANCE_S = 1e-4
# When the next requested frame lies more than this past the last decoded one, seek instead of
# decoding through the gap (a keyframe-interval-sized gap is cheaper to decode than to seek).
_SEEK_GAP_S = 0.5


class VideoError(ValueError):
    """A video could not be opened/decoded, or a requested timestamp is not in it."""


def torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # ImportError, or a broken FFmpeg/torch ABI raising at import
        return False
    return True


def _resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "torchcodec" if torchcodec_available() else "pyav"
    if backend not in ("pyav", "torchcodec"):
        raise ValueError(f"unknown video backend {backend!r} (expected 'auto', 'pyav' or 'torchcodec')")
    if backend == "torchcodec" and not torchcodec_available():
        raise ImportError("video backend 'torchcodec' requested but `import torchcodec` fails")
    return backend


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    errs: list[type[BaseException]] = [OSError, EOFError]
    for name in ("FFmpegError", "AVError"):
        e = getattr(av, name, None) or getattr(getattr(av, "error", None), name, None)
        if isinstance(e, type):
            errs.append(e)
    return tuple(errs)


def video_info(path: str | Path) -> tuple[int, float, int, int]:
    """(num_frames, fps, height, width) of the first video stream (PyAV; counts packets if the
    container does not store a frame count)."""
    import av

    path = Path(path)
    _check_path(path)
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError(f"{path}: no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or s.base_rate
            fps = float(rate) if rate else float("nan")
            h, w = int(s.codec_context.height), int(s.codec_context.width)
            n = int(s.frames or 0)
            if n <= 0:
                n = sum(1 for p in c.demux(s) if p.size)
    except VideoError:
        raise
    except _av_errors() as e:
        raise VideoError(f"cannot read video {path}: {e}") from e
    return n, fps, h, w


def decode_frames(
    path: str | Path,
    timestamps: Sequence[float],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    backend: str = "auto",
) -> np.ndarray:
    """Frames nearest each timestamp (seconds) as (N, H, W, 3) uint8, in request order.

    Raises `VideoError` (naming file and timestamp) when the file is missing/corrupt or a
    timestamp has no frame within `tolerance_s` (e.g. it lies outside the video)."""
    path = Path(path)
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    _check_path(path)
    if ts.size == 0:
        raise ValueError(f"{path}: no timestamps requested")
    bad = ts[~np.isfinite(ts)]
    if bad.size:
        raise VideoError(f"{path}: non-finite timestamp {bad[0]}")
    if _resolve_backend(backend) == "torchcodec":
        return _decode_torchcodec(path, ts, tolerance_s)
    return _decode_pyav(path, ts, tolerance_s)


def _decode_pyav(path: Path, ts: np.ndarray, tol: float) -> np.ndarray:
    import av

    out: list[np.ndarray | None] = [None] * len(ts)
    order = np.argsort(ts, kind="stable")
    errors = _av_errors()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base
            it = None  # frame iterator of the current seek
            prev = cur = None  # (time, frame) of the last two decoded frames
            exhausted = False
            for qi in order:
                t = float(ts[qi])
                if t < -tol:
                    raise VideoError(f"{path}: timestamp {t:.6f}s is before the start of the video")
                lo = prev[0] if prev is not None else (cur[0] if cur is not None else -math.inf)
                need_seek = it is None or t < lo - tol or (cur is not None and t - cur[0] > _SEEK_GAP_S)
                if need_seek:
                    target = max(t - tol, 0.0)
                    container.seek(int(target / tb) if tb else int(target * av.time_base),
                                   stream=stream, backward=True, any_frame=False)
                    it = container.decode(stream)
                    prev = cur = None
                    exhausted = False
                # decode forward until a frame at or past t (or the end)
                while not exhausted and (cur is None or cur[0] < t - tol):
                    try:
                        f = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    ft = f.time if f.time is not None else (float(f.pts * tb) if f.pts is not None else None)
                    if ft is None:
                        continue
                    prev, cur = cur, (ft, f)
                cands = [c for c in (prev, cur) if c is not None]
                if not cands:
                    raise VideoError(f"{path}: no frame decoded near timestamp {t:.6f}s")
                best = min(cands, key=lambda c: abs(c[0] - t))
                if abs(best[0] - t) > tol:
                    where = "after the end of the video" if exhausted and best[0] < t else "not found"
                    raise VideoError(
                        f"{path}: timestamp {t:.6f}s {where} (nearest frame at {best[0]:.6f}s, "
                        f"tolerance {tol}s)"
                    )
                out[qi] = best[1].to_ndarray(format="rgb24")
    except VideoError:
        raise
    except errors as e:
        raise VideoError(f"cannot decode video {path} (timestamps {ts.tolist()[:8]}): {e}") from e
    return np.stack(out)


def _decode_torchcodec(path: Path, ts: np.ndarray, tol: float) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    try:
        dec = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC")
        meta = dec.metadata
        fps = float(meta.average_fps)
        n = int(meta.num_frames) if meta.num_frames is not None else len(dec)
    except Exception as e:  # torchcodec raises RuntimeError/ValueError from FFmpeg
        raise VideoError(f"cannot open video {path}: {e}") from e
    idx = np.rint(ts * fps).astype(np.int64)
    for t, i in zip(ts, idx):
        if i < 0 or i >= n:
            raise VideoError(f"{path}: timestamp {t:.6f}s outside the video ({n} frames at {fps:g} fps)")
    try:
        batch = dec.get_frames_at(indices=idx.tolist())
    except Exception as e:
        raise VideoError(f"cannot decode video {path} (timestamps {ts.tolist()[:8]}): {e}") from e
    pts = batch.pts_seconds.double().numpy()
    for t, p in zip(ts, pts):
        if abs(p - t) > tol:
            raise VideoError(f"{path}: timestamp {t:.6f}s not found (nearest frame at {p:.6f}s, tolerance {tol}s)")
    data = batch.data.numpy()
    if data.shape[-1] != 3:  # NCHW if the installed version ignored dimension_order
        data = data.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(data, dtype=np.uint8)
