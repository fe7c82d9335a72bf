"""A policy-server client speaking the openpi-client wire protocol (what `deploy/run_robot.py` uses
against a remote ``deploy/serve.py``; any openpi ``WebsocketClientPolicy`` works the same way).

On connect the server sends one binary metadata message; then each observation (a msgpack map,
`a1.deploy.protocol`) gets one reply: binary = the result map, text = an error (raised here as
`ServerError` with the server's message). A refused handshake (e.g. HTTP 401: a wrong or missing
API key) and a connection the server closes are `ServerError` too; an unreachable server is the
socket's `OSError` (``ConnectionRefusedError``, ``TimeoutError``).
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
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect

        if "://" in uri and not uri.startswith(("ws://", "wss://")):
            raise ValueError(f"not a websocket address: {uri!r} (expected ws://host:port)")
        self.uri = uri if uri.startswith(("ws://", "wss://")) else f"ws://{uri}"
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        try:
            self._ws = connect(self.uri, compression=None, max_size=None, additional_headers=headers,
                               open_timeout=open_timeout)
        except InvalidURI as err:
            raise ValueError(f"not a websocket address: {uri!r} (expected ws://host:port)") from err
        except InvalidStatus as err:
            status = err.response.status_code
            hint = " (wrong or missing API key)" if status in (401, 403) else ""
            raise ServerError(f"policy server {self.uri} refused the connection: HTTP {status} "
                              f"{err.response.reason_phrase}{hint}") from err
        except InvalidHandshake as err:
            raise ServerError(f"policy server {self.uri}: websocket handshake failed: {err}") from err
        self.metadata: dict[str, Any] = unpackb(self._recv())

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Send one observation, return the server's reply; a text reply raises `ServerError`."""
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws.send(packb(observation))
        except ConnectionClosed as err:
            raise self._closed(err) from err
        reply = self._recv()
        if isinstance(reply, str):
            raise ServerError(f"policy server {self.uri}: {reply}")
        return unpackb(reply)

    def _recv(self) -> bytes | str:
        from websockets.exceptions import ConnectionClosed

        try:
            return self._ws.recv()
        except ConnectionClosed as err:
            raise self._closed(err) from err

    def _closed(self, err: Exception) -> ServerError:
        frame = getattr(err, "rcvd", None)
        why = f" (code {frame.code}{': ' + frame.reason if frame.reason else ''})" if frame is not None else ""
        return ServerError(f"policy server {self.uri} closed the connection{why}")

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
