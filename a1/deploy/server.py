"""The policy server: one `PolicyRuntime` served to robot clients over websocket + msgpack.

Wire-compatible with the ``openpi-client`` package (``WebsocketClientPolicy``), so a lab's openpi
robot client works unchanged; `a1.deploy.protocol` is the message format (msgpack, numpy arrays
as ``{"__ndarray__", "data", "dtype", "shape"}`` maps).

The conversation on one connection::

    client                                   server
    ── websocket handshake (ws://HOST:PORT) ─►  401 without the right ``Authorization: Api-Key K``
                                         ◄──  metadata (binary msgpack map, see `PolicyServer.metadata`)
    ── observation (binary msgpack map) ────►
                                         ◄──  {"actions": (n, D) float32, "server_timing": {...}}
    ── observation ─────────────────────────►
                                         ◄──  "bad observation: state: contains NaN ..." (a text frame)
    ...

An observation is the map an openpi ALOHA client sends, keyed by the robot's camera names::

    {"state": (D,) float, "images": {camera: uint8 (3, H, W) or (H, W, 3)}, "prompt": str}

Frames may be of any size (they are resized as in training). Cameras the robot config maps to
null are dropped; a camera name the robot does not have, or a missing camera, is an error naming
it. ``prompt`` may be left out when the server was started with a default prompt (openpi's ALOHA
client sends none). a1 extension: ``"reset": true`` starts a new episode (forgets the frame
history) before planning; openpi clients never send it — a new connection is a new episode too.

The reply holds the n = ``execute`` raw robot actions to run before the next request (the
episode advances by n steps) and ``server_timing``: ``infer_ms`` (the model: prefix + K denoising
steps), ``wait_ms`` (queued behind other clients' requests) and, from the second request on,
``prev_total_ms`` (the previous request, receipt to reply sent), as openpi reports it.

Errors. Every error goes back to that client as a text frame, which an openpi client raises as
``RuntimeError``; the server keeps serving every other client:

- a bad message (a text frame, not msgpack, not a map) or a bad observation (missing key or
  camera, unknown camera, wrong array shape or dtype, wrong state dims, NaN/inf state): text frame
  ``"bad message: …"`` / ``"bad observation: …"`` naming the key, expected vs got; the connection
  stays open (same episode), so the client can fix the message and retry;
- an unexpected error in the server: text frame ``"internal server error: …"`` (the traceback
  goes to the server log), then the connection is closed with code 1011 (its episode state is
  unknown); reconnect to start a new episode;
- a message larger than ``max_message_bytes``: the websocket library closes that connection with
  code 1009 (message too big) without reading it;
- a client that disconnects while its request computes: the result is dropped.

Requests from all clients are served one at a time, in arrival order, in a worker thread, so the
event loop stays free for ``GET /healthz`` (200 ``OK``, no key needed), handshakes and errors.
Each connection has its own `Episode` (frame history, step counter).

The server binds 127.0.0.1 unless told otherwise: anyone who can reach it can drive the robot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.frames import CloseCode

import a1
from a1.deploy.processor import ObservationError
from a1.deploy.protocol import ProtocolError, packb, unpackb
from a1.deploy.runtime import Episode, PolicyRuntime

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20
"""Largest observation message accepted (64 MiB: four 1080p RGB frames fit)."""
HEALTH_PATH = "/healthz"


class RequestError(ValueError):
    """A client's message cannot be served; the text (sent back to the client) says why."""


class PolicyServer:
    """Serves one `PolicyRuntime` over websocket (protocol in the module docstring)."""

    def __init__(self, runtime: PolicyRuntime, cameras: Mapping[str, str | None] | None = None,
                 metadata: Mapping[str, Any] | None = None, *, execute: int | None = None,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, prompt: str | None = None) -> None:
        """
        Args:
            runtime: the loaded, warmed-up policy (its processor knows the absent views).
            cameras: robot camera name → a1 view, or None for a camera that is not fed to the
                policy (a robot config's ``cameras``); None: clients send the policy's view names.
            metadata: extra metadata sent on connect (robot, control_rate_hz, policy, ...);
                overrides the server's own keys of the same name.
            execute: n, actions returned (and executed) per request; None: the whole chunk.
            host: interface to bind (127.0.0.1: this machine only; 0.0.0.0: every interface).
            port: TCP port (0: any free port; see ``address`` once serving).
            api_key: when set, a client must send ``Authorization: Api-Key <api_key>``.
            max_message_bytes: larger messages close the connection with code 1009.
            prompt: instruction used when an observation has no ``prompt``.
        """
        proc = runtime.processor
        if cameras is None:
            cameras = {view: view for view in proc.views if view not in proc.absent}
        cameras = dict(cameras)
        fed: dict[str, str] = {}
        for camera, view in cameras.items():
            if view is None:
                continue
            if view not in proc.views:
                raise ValueError(f"camera {camera!r} maps to view {view!r}, which the policy does not have "
                                 f"(its views: {proc.views})")
            if view in proc.absent:
                raise ValueError(f"camera {camera!r} maps to view {view!r}, which the runtime was loaded with "
                                 f"as absent (masked)")
            if view in fed:
                raise ValueError(f"cameras {fed[view]!r} and {camera!r} both map to view {view!r}")
            fed[view] = camera
        unfed = [view for view in proc.views if view not in proc.absent and view not in fed]
        if unfed:
            raise ValueError(f"no camera maps to the policy view(s) {unfed}: map one in the robot config, or load "
                             f"the runtime with them as absent_views")
        if api_key is not None and not api_key:
            raise ValueError("api_key must be a non-empty string (None: no key)")
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be >= 1, got {max_message_bytes}")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        self.runtime, self.cameras, self.prompt = runtime, cameras, prompt
        self.execute = runtime.episode(execute).execute  # checks 1 <= n <= k
        self.host, self.port, self.api_key = host, port, api_key
        self.max_message_bytes = int(max_message_bytes)
        self.address: tuple[str, int] | None = None
        """(host, port) actually bound, once serving."""
        self._extra = dict(metadata or {})
        self._lock: asyncio.Lock | None = None
        self._clients = 0

    @property
    def metadata(self) -> dict[str, Any]:
        """What a client receives on connect (openpi: ``get_server_metadata()``)."""
        proc, settings = self.runtime.processor, self.runtime.processor.settings
        return {
            "server": "a1",
            "a1_version": a1.__version__,
            "cameras": [camera for camera, view in self.cameras.items() if view is not None],
            "camera_views": dict(self.cameras),
            "views": list(proc.views),
            "absent_views": sorted(proc.absent),
            "state_dim": proc.state_dim,
            "action_dim": proc.action_dim,
            "chunk_size": self.runtime.chunk_size,
            "execute": self.execute,
            "history": self.runtime.history,
            "image_size": settings.image_size,
            "normalization": proc.name,
            "default_prompt": self.prompt,
            "max_message_bytes": self.max_message_bytes,
            **self._extra,
        }

    # --- one request ----------------------------------------------------------------------------
    def observation(self, message: bytes | str) -> tuple[dict[str, Any], bool]:
        """A client message → (raw observation keyed by view, reset?); errors: `RequestError`."""
        if isinstance(message, str):
            raise RequestError("bad message: expected a binary msgpack message, got a text frame")
        try:
            obs = unpackb(message)
        except ProtocolError as err:
            text = str(err).rstrip(": ")  # msgpack's FormatError has no text
            raise RequestError(f"bad message: {text}{' (not msgpack)' if text != str(err) else ''}") from err
        if not isinstance(obs, Mapping):
            raise RequestError(f"bad message: expected a map with 'state', 'images', 'prompt', got "
                               f"{type(obs).__name__}")
        raw = dict(obs)
        reset = raw.pop("reset", False)
        if not isinstance(reset, (bool, np.bool_)):
            raise RequestError(f"bad observation: reset: expected true or false, got {reset!r}")
        if "images" not in raw:
            raise RequestError(f"bad observation: missing key 'images' (have {sorted(map(str, raw))})")
        images = raw["images"]
        if not isinstance(images, Mapping):
            raise RequestError(f"bad observation: images: expected a map of camera → frame, got "
                               f"{type(images).__name__}")
        by_view = {}
        for camera, frame in images.items():
            if camera not in self.cameras:
                raise RequestError(f"bad observation: images: unknown camera {camera!r}; this robot's cameras "
                                   f"are {list(self.cameras)}")
            if self.cameras[camera] is not None:
                by_view[self.cameras[camera]] = frame
        missing = [camera for camera, view in self.cameras.items() if view is not None and camera not in images]
        if missing:
            raise RequestError(f"bad observation: images: missing camera(s) {missing} (got {list(images)})")
        raw["images"] = by_view
        if "prompt" not in raw and self.prompt is not None:
            raw["prompt"] = self.prompt
        return raw, bool(reset)

    @staticmethod
    def _plan(episode: Episode, raw: dict[str, Any], reset: bool) -> tuple[np.ndarray, float]:
        if reset:
            episode.reset()
        actions = episode.request(raw)
        return np.asarray(actions, dtype=np.float32), episode.last.infer_ms

    async def _serve_one(self, episode: Episode, message: bytes | str) -> dict[str, Any]:
        raw, reset = self.observation(message)
        t0 = time.perf_counter()
        async with self._lock:
            wait_ms = (time.perf_counter() - t0) * 1e3
            try:
                actions, infer_ms = await asyncio.to_thread(self._plan, episode, raw, reset)
            except ObservationError as err:
                raise RequestError(f"bad observation: {err}") from err
        return {"actions": actions, "server_timing": {"infer_ms": infer_ms, "wait_ms": wait_ms}}

    # --- connections ----------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """``GET /healthz`` → 200; without the right API key → 401 before the handshake."""
        if request.path.split("?", 1)[0] == HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            got = request.headers.get("Authorization", "").strip().encode("utf-8", "replace")
            want = f"Api-Key {self.api_key}".encode()
            if not hmac.compare_digest(got, want):
                log.warning("refused %s: %s API key", _peer(connection), "wrong" if got else "no")
                return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                          "missing or wrong API key: send the header 'Authorization: Api-Key KEY'\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = _peer(ws)
        self._clients += 1
        log.info("client %s connected (%d connected)", peer, self._clients)
        episode = self.runtime.episode(self.execute)
        served, prev_total_ms = 0, None
        try:
            await ws.send(packb(self.metadata))
            async for message in ws:
                t0 = time.perf_counter()
                try:
                    reply = await self._serve_one(episode, message)
                except RequestError as err:
                    log.info("client %s: %s", peer, err)
                    await ws.send(str(err))
                    continue
                except Exception as err:
                    log.exception("client %s: internal error", peer)
                    await ws.send(f"internal server error: {type(err).__name__}: {err} (traceback in the server log)")
                    await ws.close(CloseCode.INTERNAL_ERROR, "internal server error")
                    break
                if prev_total_ms is not None:
                    reply["server_timing"]["prev_total_ms"] = prev_total_ms
                await ws.send(packb(reply))
                served += 1
                prev_total_ms = (time.perf_counter() - t0) * 1e3
        except websockets.ConnectionClosed:
            pass  # reported below with the close code
        finally:
            episode.close()
            self._clients -= 1
            code = ws.close_code if ws.close_code is not None else "none"
            reason = f", {ws.close_reason}" if ws.close_reason else ""
            log.info("client %s disconnected after %d request(s) (close code %s%s; %d connected)",
                     peer, served, code, reason, self._clients)

    # --- running --------------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event | None = None,
                    ready: Callable[[str, int], None] | None = None) -> None:
        """Serve until ``stop`` is set (forever when None, i.e. until cancelled); ``ready(host,
        port)`` is called once listening."""
        self._lock = asyncio.Lock()
        async with serve(self._handle, self.host, self.port, compression=None, max_size=self.max_message_bytes,
                         process_request=self._process_request) as server:
            host, port = next(iter(server.sockets)).getsockname()[:2]
            self.address = (host, port)
            if ready is not None:
                ready(host, port)
            if stop is None:
                await server.serve_forever()
            else:
                await stop.wait()

    def serve_forever(self, ready: Callable[[str, int], None] | None = None) -> None:
        """Serve in this thread until Ctrl-C (KeyboardInterrupt) or SIGTERM (returns)."""

        async def main() -> None:
            stop = asyncio.Event()
            if threading.current_thread() is threading.main_thread():
                import signal

                with contextlib.suppress(NotImplementedError):  # not on Windows
                    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await self.serve(stop, ready)

        asyncio.run(main())

    @contextlib.contextmanager
    def running(self, timeout: float = 30.0) -> Iterator[tuple[str, int]]:
        """Serve in a background thread for the ``with`` block; yields the bound (host, port)."""
        box: dict[str, Any] = {}
        started = threading.Event()

        async def main() -> None:
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            await self.serve(box["stop"], lambda host, port: (box.update(address=(host, port)), started.set()))

        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = err
                started.set()

        thread = threading.Thread(target=target, name="a1-policy-server", daemon=True)
        thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"the policy server did not start within {timeout} s")
        if "error" in box:
            raise box["error"]
        try:
            yield box["address"]
        finally:
            box["loop"].call_soon_threadsafe(box["stop"].set)
            thread.join(timeout)


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except Exception:  # noqa: BLE001 - a closed socket has no address
        return "?"
