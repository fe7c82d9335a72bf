"""Run a policy on a robot: the control loop at the robot's fixed rate, with a live status line.

    python deploy/run_robot.py --robot sim_aloha --policy checkpoints/my_policy --prompt "fold the towel"
    python deploy/run_robot.py --robot aloha --server ws://gpu-box:8000 --api-key KEY --prompt "..."

Every tick (1 / control_rate_hz s): read the robot (`SafeRobot.observe`), get this step's action,
send it through the safety layer (joint limits, largest change per step, watchdog hold, Ctrl-C →
emergency stop: `a1.deploy.robots.safety`).

- ``--policy FOLDER``: the policy runs here (`a1.deploy.runtime`), one `Episode.step` per tick:
  history at the control rate, a new chunk every ``--execute`` steps, optional ``--ensemble`` and
  ``--async`` (plan the next chunk while the current one executes).
- ``--server URI``: the policy runs on a ``deploy/serve.py`` server; each request returns the
  ``execute`` actions to run, one per tick; the robot holds its last safe command while a request
  is in flight (a background keep-alive thread), and a late action counts as a watchdog miss.

Run from the repository root. Stops after ``--steps`` ticks (0: until Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from a1.deploy.client import ServerError
from a1.deploy.control import Pacer, ServerChunks  # noqa: E402
from a1.deploy.robots import EmergencyStop, SafeRobot, load_robot_config, make_robot, policy_images  # noqa: E402


class LocalPolicy:
    """The policy on this machine: one `Episode.step` per tick."""

    def __init__(self, args, robot_cfg) -> None:
        if not Path(args.policy).is_dir():  # before the (slow) imports
            raise FileNotFoundError(f"policy folder not found: {args.policy}")
        from a1.deploy.runtime import PolicyRuntime, RuntimeOptions

        options = RuntimeOptions(compile=args.compile, device=args.device)
        self.runtime = PolicyRuntime.load(args.policy, args.normalization or robot_cfg.normalization,
                                          robot_cfg.cameras, options)
        self.episode = self.runtime.episode(args.execute or robot_cfg.execute, args.ensemble, args.asynchronous)
        self.prompt, self.cfg = args.prompt, robot_cfg

    def action(self, obs: dict) -> np.ndarray:
        raw = {"images": policy_images(obs, self.cfg), "state": obs["state"], "prompt": self.prompt}
        return self.episode.step(raw)

    def status(self) -> str:
        ep = self.episode
        start = ep.queue.chunks[-1][0] if ep.queue.chunks else 0
        ms = ep.last.infer_ms if ep.last else float("nan")
        return f"infer {ms:6.1f} ms | chunk@{start} step {ep.t - 1 - start:2d}/{ep.execute}"

    def close(self) -> None:
        self.episode.close()


class RemotePolicy:
    """The policy on a server: a request per ``execute`` actions (`a1.deploy.control.ServerChunks`)."""

    def __init__(self, args, robot_cfg) -> None:
        from a1.deploy.client import PolicyClient

        self.client = PolicyClient(args.server, args.api_key)
        meta = self.client.metadata
        if meta.get("action_dim") != robot_cfg.dims:
            self.client.close()
            raise ValueError(f"the server's policy gives {meta.get('action_dim')} dims, robot "
                             f"{robot_cfg.name!r} has {robot_cfg.dims}")
        self.chunks = ServerChunks(self.client.infer, robot_cfg.dims, args.prompt)

    def action(self, obs: dict) -> np.ndarray:
        return self.chunks.action(obs)

    def status(self) -> str:
        c = self.chunks
        return f"server infer {c.infer_ms:6.1f} ms | request {c.requests} step {c.index}/{len(c.queue)}"

    def close(self) -> None:
        self.client.close()


def control_loop(safe: SafeRobot, policy, rate_hz: float, steps: int, quiet: bool) -> int:
    """Run ticks at ``rate_hz`` until ``steps`` (0: forever) or a stop (Ctrl-C); returns the ticks run."""
    pacer, tick, started, last_print = Pacer(rate_hz), 0, time.monotonic(), 0.0
    try:
        while safe.running and (steps == 0 or tick < steps):
            obs = safe.observe()
            t0 = time.monotonic()
            safe.act(policy.action(obs))
            latency = (time.monotonic() - t0) * 1e3
            tick += 1
            now = time.monotonic()
            if not quiet and (now - last_print > 0.2 or tick == steps):
                hz = tick / max(now - started, 1e-9)
                s = safe.stats
                print(f"\r{hz:5.1f} Hz | step {tick} | action {latency:6.1f} ms | {policy.status()} | "
                      f"clamped {s['clamped']} holds {s['holds']} misses {s['misses']}   ", end="", flush=True)
                last_print = now
            pacer.wait()
    except EmergencyStop:  # Ctrl-C: SafeRobot stops the robot; the ticks run are still reported
        pass
    return tick


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python deploy/run_robot.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--robot", required=True, help="name in deploy/robots/ or a YAML path")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--policy", help="exported policy folder (run the policy here)")
    src.add_argument("--server", help="ws://host:port of a deploy/serve.py policy server")
    p.add_argument("--prompt", required=True, help="the instruction")
    p.add_argument("--api-key", default=None, help="the server's API key")
    p.add_argument("--normalization", default=None, help="the policy's statistics to use (default: the robot's)")
    p.add_argument("--execute", type=int, default=None, help="actions executed per chunk (default: the robot's)")
    p.add_argument("--ensemble", type=float, default=None, help="temporal-ensembling coefficient (local policy)")
    p.add_argument("--async", dest="asynchronous", action="store_true", help="plan the next chunk while executing")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager PyTorch (local policy)")
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=0, help="stop after this many ticks (0: until Ctrl-C)")
    p.add_argument("--no-reset", dest="reset", action="store_false", help="do not move home first")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_robot_config(args.robot)
        robot = make_robot(cfg)  # first: a missing SDK fails before a server connection is opened
    except (ValueError, KeyError, OSError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        policy = LocalPolicy(args, cfg) if args.policy else RemotePolicy(args, cfg)
    except (ValueError, KeyError, OSError, ImportError, ServerError) as err:
        robot.close()  # opened, never commanded
        print(f"error: {err}", file=sys.stderr)
        return 2
    ticks, failure = 0, None
    safe = SafeRobot(robot, keepalive=args.server is not None)
    try:
        with safe:
            try:
                if args.reset:
                    safe.reset()
                ticks = control_loop(safe, policy, cfg.control_rate_hz, args.steps, args.quiet)
            except EmergencyStop:
                pass
            finally:
                policy.close()
            if safe.running:
                safe.stop("finished")
    except ServerError as err:  # the robot is stopped (SafeRobot.__exit__): one line, not a traceback
        failure = err
    if failure is not None:
        print(f"\n{cfg.name}: stopped on a policy server error; {safe.stats}")
        print(f"error: {failure}", file=sys.stderr)
        return 1
    print(f"\n{cfg.name}: {ticks} steps; {safe.stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
