"""Print the closed-loop table of issue #10: the scripted experts (upper bound), the static expert on
the conveyor (lower bound) and trained policies, on both ALOHA transfer tasks, N episodes each.

    MUJOCO_GL=egl python scripts/sim_report.py --episodes 50 --out runs/sim_report \\
        [--policy a1=checkpoints/sim_aloha --policy a1_nogen=checkpoints/sim_aloha_nogen] \\
        [--execute 16 | --ensemble 0.01] [--workers 2] [--no-compile] [--belt-speed 0.03] [--tasks transfer_cube ...]

Every row is one `a1.eval.sim.evaluate` call on seeds ``--seed`` … ``--seed + N − 1`` (the same for
every row); each report is written as ``OUT/<row>_<task>.json`` and the table (markdown) is printed
and written to ``OUT/table.md``. Not a test: the figures are what this run measured.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from a1.eval.sim import EvalOptions, evaluate
from a1.policy_folder import normalization_names


def rows(args: argparse.Namespace) -> list[tuple[str, EvalOptions]]:
    """(row name, options) of every evaluation, experts first."""
    base = EvalOptions(episodes=args.episodes, seed=args.seed, belt_speed=args.belt_speed, workers=args.workers,
                       execute=args.execute, ensemble=args.ensemble, videos=args.videos, compile=args.compile)
    out = []
    for task in args.tasks:
        if task.startswith("conveyor"):  # the anticipating expert (upper bound) and the static one (lower)
            out += [(f"expert_{e}", replace(base, task=task, expert=e, videos=0, execute=None, ensemble=None))
                for e in ("anticipating", "static")]
        else:  # nothing moves by itself: the two plan alike
            out.append(("expert", replace(base, task=task, expert="anticipating", videos=0, execute=None, ensemble=None)))
        for spec in args.policy:
            name, _, folder = spec.partition("=")
            if not folder:
                raise ValueError(f"--policy takes NAME=FOLDER, got {spec!r}")
            normalization_names(folder)  # a missing or broken folder fails now, not after the expert rows
            out.append((name, replace(base, task=task, policy=folder)))
    return out


def mode(o: EvalOptions) -> str:
    """The execution mode of a row, as the table shows it."""
    if o.expert is not None:
        return "open loop (joint replay)"
    if o.ensemble is not None:
        return f"temporal ensembling m={o.ensemble}"
    return f"execute {o.execute} per chunk" if o.execute else "whole chunk"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from a1.sim.aloha import TASKS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", action="append", default=[], help="NAME=FOLDER of an exported policy (repeatable)")
    p.add_argument("--tasks", nargs="+", default=["transfer_cube", "conveyor_transfer_cube"], choices=TASKS)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--belt-speed", type=float, default=0.03)
    run_mode = p.add_mutually_exclusive_group()
    run_mode.add_argument("--execute", type=int, default=None)
    run_mode.add_argument("--ensemble", type=float, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager PyTorch (no compile warm-up)")
    p.add_argument("--videos", type=int, default=0, help="head-view videos of the first K episodes per policy row")
    p.add_argument("--out", type=Path, default=Path("runs/sim_report"))
    args = p.parse_args(argv)
    try:
        planned = rows(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lines = ["| task | who | execution | success | 95% Wilson | mean best reward (0–4) |", "|---|---|---|---|---|---|"]
    for name, opts in planned:
        opts = replace(opts, out=str(args.out / f"{name}_{opts.task}.json"))
        r = evaluate(opts)
        k, n = sum(e["success"] for e in r["episodes"]), len(r["episodes"])
        lo, hi = r["wilson95"]
        task = f"{opts.task} ({opts.belt_speed:+.2f} m/s)" if opts.task.startswith("conveyor") else opts.task
        lines.append(f"| {task} | {name} | {mode(opts)} | {k}/{n} ({k / n:.0%}) | {lo:.0%}–{hi:.0%} | "
                     f"{r['mean_max_reward']:.2f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
