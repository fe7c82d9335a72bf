"""`a1.deploy.control`: the remote-policy control loop's parts (run_robot.py --server and trace.drive)."""

from __future__ import annotations

import numpy as np
import pytest

from a1.deploy.control import Pacer, ServerChunks


def test_server_chunks_request_when_used_up_and_reset_only_first():
    sent = []

    def infer(message):
        sent.append(message)
        n = len(sent)
        return {"actions": np.full((3, 2), n, np.float64), "server_timing": {"infer_ms": 5.0 * n}}

    chunks = ServerChunks(infer, dims=2, prompt="go")
    obs = {"images": {"cam": np.zeros((2, 2, 3), np.uint8)}, "state": [0.5, 1]}
    got = [chunks.action(obs)[0] for _ in range(7)]
    assert got == [1, 1, 1, 2, 2, 2, 3] and chunks.requests == 3 and chunks.infer_ms == 15.0
    assert [("reset" in m) for m in sent] == [True, False, False] and all(m["prompt"] == "go" for m in sent)
    assert sent[0]["state"].dtype == np.float32 and chunks.requested


@pytest.mark.parametrize("reply, match", [({"oops": 1}, "no 'actions'"), ({"actions": np.zeros((3, 5))}, r"\(n >= 1, 2\)"),
                                          ({"actions": np.zeros((0, 2))}, r"\(n >= 1, 2\)")])
def test_bad_replies_are_named(reply, match):
    with pytest.raises(ValueError, match=match):
        ServerChunks(lambda m: reply, dims=2).action({"images": {}, "state": [0, 0]})


def test_pacer_keeps_the_rate_and_a_late_tick_does_not_burst():
    now, slept = [0.0], []

    def sleep(dt):
        slept.append(round(dt, 6))
        now[0] += dt

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait()  # on time: sleeps the whole period
    now[0] += 0.35  # a tick that took 3.5 periods
    pacer.wait()
    pacer.wait()  # at most one tick follows at once ...
    pacer.wait()  # ... then the rate again: no burst of the 3 ticks missed
    assert slept == [0.1, 0.0, 0.0, 0.1]
    with pytest.raises(ValueError, match="rate_hz"):
        Pacer(0)
