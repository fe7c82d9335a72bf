"""A policy-server client speaking the openpi-client wire protocol (what `deploy/run_robot.py` uses
against a remote ``deploy/serve.py``; any openpi ``WebsocketClientPolicy`` works the same way).

On connect the server sends one binary metadata message; then each observation (a msgpack map,
`a1.deploy.protocol`) gets one reply: binary = the result map, text = an error (raised here as
`ServerError` with the server's message).
"""

from __future__ import annotations

from typing import Any

from a1.deploy.protocol import packb, unpackb


class ServerError(RuntimeError):
    """The policy server answered with an error (its message is this exception's)."""


class PolicyClient:
    """A blocking websocket client: ``infer(observation) -> {"actions": (n, D), "server_timing": …}``."""

    def __init__(self, uri: str, api_key: str | None = None, open_timeout: float = 10.0) -> None:
        """
        Args:
            uri: ``ws://host:port`` (``host:port`` is accepted too).
            api_key: sent as ``Authorization: Api-Key <key>`` when set.
            open_timeout: seconds to wait for the connection.
        """
        from websockets.sync.client import connect

        self.uri = uri if uri.startswith(("ws://", "wss://")) else f"ws://{uri}"
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._ws = connect(self.uri, compression=None, max_size=None, additional_headers=headers,
                           open_timeout=open_timeout)
        self.metadata: dict[str, Any] = unpackb(self._ws.recv())

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Send one observation, return the server's reply; a text reply raises `ServerError`."""
        self._ws.send(packb(observation))
        reply = self._ws.recv()
        if isinstance(reply, str):
            raise ServerError(f"policy server {self.uri}: {reply}")
        return unpackb(reply)

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
