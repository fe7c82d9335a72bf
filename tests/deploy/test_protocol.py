"""The msgpack + numpy wire format round-trips and refuses anything that could carry code."""

import msgpack
import numpy as np
import pytest

from a1.deploy.protocol import ProtocolError, packb, unpackb


def test_round_trip_of_an_observation():
    obs = {
        "observation/images/head": np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8),
        "observation/state": np.arange(14, dtype=np.float32),
        "prompt": "fold the towel",
        "step": np.int64(7),
        "nested": {"list": [1, 2.5, "x"], "flag": True},
    }
    out = unpackb(packb(obs))
    assert out.keys() == obs.keys()
    np.testing.assert_array_equal(out["observation/images/head"], obs["observation/images/head"])
    assert out["observation/state"].dtype == np.float32
    assert out["step"] == 7 and isinstance(out["step"], np.int64)
    assert out["prompt"] == "fold the towel" and out["nested"] == obs["nested"]


def test_wire_layout_matches_openpi_client():
    # openpi-client packs the markers as bytes keys and reads them back as bytes (raw=False).
    raw = msgpack.unpackb(packb({"a": np.zeros((2, 3), dtype="<f4")}), raw=False)
    a = raw["a"]
    assert a[b"__ndarray__"] is True
    assert a[b"dtype"] == "<f4" and a[b"shape"] == [2, 3] and len(a[b"data"]) == 24
    # and a message written that way by a peer decodes here
    peer = msgpack.packb({"a": {b"__ndarray__": True, b"data": np.ones(3, "<f4").tobytes(), b"dtype": "<f4",
                                b"shape": (3,)}}, use_bin_type=True)
    np.testing.assert_array_equal(unpackb(peer)["a"], np.ones(3, np.float32))


@pytest.mark.parametrize("bad", [np.array([object()]), np.zeros(2, dtype=complex), np.zeros(2, dtype="V4")])
def test_refuses_object_void_and_complex(bad):
    with pytest.raises(ProtocolError, match="refusing"):
        packb({"x": bad})
    forged = msgpack.packb({"x": {"__ndarray__": True, "data": b"\0" * 16, "dtype": bad.dtype.str, "shape": [1]}})
    with pytest.raises(ProtocolError, match="refusing"):
        unpackb(forged)


def test_corrupt_and_inconsistent_messages_are_errors():
    with pytest.raises(ProtocolError, match="corrupt"):
        unpackb(b"\xc1\xff\x00")
    short = msgpack.packb({"x": {"__ndarray__": True, "data": b"\0" * 3, "dtype": "<f4", "shape": [2]}})
    with pytest.raises(ProtocolError, match="needs 8 bytes"):
        unpackb(short)
