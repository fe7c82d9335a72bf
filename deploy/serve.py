"""Serve an exported a1 policy to a robot over websocket (openpi-client compatible).

    python deploy/serve.py --policy FOLDER --robot NAME [--host H] [--port P] [--api-key K]

Run from the repository root. ``--robot`` is a name in ``deploy/robots/`` (``sim_aloha``,
``aloha``, ...) or a YAML path: its cameras (robot camera → a1 view), normalisation, control rate
and ``execute`` configure the server. Binds 127.0.0.1 unless ``--host`` says otherwise; with an
API key (``--api-key`` or ``$A1_API_KEY``) clients must send ``Authorization: Api-Key KEY``.
``GET /healthz`` answers 200 ``OK``. Prints one line when ready; Ctrl-C stops it.

The wire protocol, the observation map and the error behaviour: ``a1/deploy/server.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="exported policy folder (python -m a1.export)")
    parser.add_argument("--robot", required=True, help="robot name in deploy/robots/, or a robot YAML path")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port)")
    parser.add_argument("--api-key", default=os.environ.get("A1_API_KEY") or None,
                        help="require 'Authorization: Api-Key KEY' from clients (default: $A1_API_KEY; unset: none)")
    parser.add_argument("--normalization", default=None,
                        help="the policy's normalisation to use (default: the robot config's, else the policy's)")
    parser.add_argument("--execute", type=int, default=None,
                        help="actions returned per request (default: the robot config's, else the chunk length)")
    parser.add_argument("--prompt", default=None, help="instruction for observations that carry no 'prompt'")
    parser.add_argument("--no-compile", action="store_true", help="run eager PyTorch (no torch.compile)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--tokenizer-dtype", choices=["bfloat16", "float32"], default=None,
                        help="dtype of the Cosmos tokenizer alone (default: the runtime's, bfloat16 on CUDA)")
    parser.add_argument("--max-message-mb", type=float, default=64.0,
                        help="largest observation message in MiB (default 64); larger ones close the "
                             "connection with code 1009")
    return parser.parse_args(argv)


def check_port(host: str, port: int) -> None:
    """Fail before the (slow) policy load when the address cannot be bound (OSError)."""
    if port != 0:
        socket.create_server((host, port)).close()


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C / SIGINT stops the server even when it was started with SIGINT ignored (a shell's
        # background job `serve.py … &`, nohup): Python then installs no KeyboardInterrupt handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # we log connections ourselves

    folder = Path(args.policy)
    try:
        check_port(args.host, args.port)
    except OSError as err:
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    from a1.deploy.robots.config import load_robot_config
    from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
    from a1.deploy.server import PolicyServer
    from a1.policy_folder import PolicyLoadError

    try:
        if args.max_message_mb <= 0:
            raise ValueError(f"--max-message-mb must be > 0, got {args.max_message_mb}")
        robot = load_robot_config(args.robot)
        if not folder.is_dir():
            raise PolicyLoadError(f"policy folder not found: {folder}")
        options = RuntimeOptions(compile=not args.no_compile, device=args.device, tokenizer_dtype=args.tokenizer_dtype)
        runtime = PolicyRuntime.load(folder, normalization=args.normalization or robot.normalization,
                                     cameras=robot.cameras, options=options)
        metadata = {"robot": robot.name, "control_rate_hz": robot.control_rate_hz, "policy": folder.resolve().name}
        server = PolicyServer(runtime, robot.cameras, metadata, execute=args.execute or robot.execute,
                              host=args.host, port=args.port, api_key=args.api_key or None,
                              max_message_bytes=int(args.max_message_mb * 2**20), prompt=args.prompt)
    except KeyError as err:  # an unknown normalisation name
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:  # ConfigError, PolicyLoadError: one line naming the file and key
        print(f"error: {err}", file=sys.stderr)
        return 2

    def ready(host: str, port: int) -> None:
        warm = ", ".join(f"{ms:.0f}" for ms in runtime.warmup_ms) or "none"
        print(f"a1 policy server ready on ws://{host}:{port} — robot {robot.name}, policy {metadata['policy']}, "
              f"normalization {runtime.processor.name}, {server.execute} of {runtime.chunk_size} actions per "
              f"request, warm-up {warm} ms{', API key required' if args.api_key else ''}", flush=True)

    try:
        server.serve_forever(ready)
    except KeyboardInterrupt:
        pass
    except OSError as err:  # the port is taken, the host cannot be bound
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    print("a1 policy server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
