"""The policy-server wire format: msgpack with numpy arrays, compatible with openpi-client.

A numpy array travels as the map ``{"__ndarray__": True, "data": <raw bytes>, "dtype": "<f4",
"shape": [...]}`` and a numpy scalar as ``{"__npgeneric__": True, "data": <value>, "dtype":
"<f4"}``. Object, void and complex dtypes are refused in both directions: nothing is ever
pickled, so a message from an untrusted peer cannot run code.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = {"O": "object", "V": "void", "c": "complex"}


class ProtocolError(ValueError):
    """A message could not be encoded or decoded; the message says which field."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in _REFUSED_KINDS:
        raise ProtocolError(f"refusing {_REFUSED_KINDS[dtype.kind]} dtype {dtype.str!r}")


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(),
                b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise ProtocolError(f"cannot encode {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    get = lambda key: obj.get(key.encode(), obj.get(key))  # noqa: E731 - keys may be str or bytes
    if get("__ndarray__"):
        dtype = np.dtype(get("dtype"))
        _check_dtype(dtype)
        shape = tuple(get("shape"))
        data = get("data")
        if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ProtocolError(f"array of shape {shape} and dtype {dtype.str} needs "
                                f"{dtype.itemsize * int(np.prod(shape))} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if get("__npgeneric__"):
        dtype = np.dtype(get("dtype"))
        _check_dtype(dtype)
        return dtype.type(get("data"))
    return obj


def packb(message: Any) -> bytes:
    """Encode a message (nested maps/lists of numbers, strings, numpy arrays and scalars)."""
    return msgpack.packb(message, default=_encode, use_bin_type=True)


def unpackb(payload: bytes) -> Any:
    """Decode a message; arrays come back as read-only numpy views of the payload."""
    try:
        return msgpack.unpackb(payload, object_hook=_decode, raw=False, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as err:  # msgpack raises several types for corrupt payloads
        raise ProtocolError(f"corrupt message: {err}") from err
