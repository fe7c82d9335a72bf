"""Preview the dataset → worker-slot plan of a training config, without touching any data.

    python -m a1.data.plan --config CONFIG [--config OVERLAY …] --world-size N --num-workers W \\
        [--seed S] [--draws 20000] [--json]

CONFIG is a training config, read exactly as ``python -m a1.fit`` reads it; every dataset of
``data.datasets`` needs ``frames`` (the size proxy of the balancer). Prints the per-slot assignment, the load balance
(max/mean slot load) and configured vs realized (simulated round-robin draws) weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a1.data.assign import DatasetSpec, num_slots_for, slot_position
from a1.data.mixture import SlotMixture, build_mixture, simulate_frequencies, total_variation


class PlanConfigError(ValueError):
    """The config file is unreadable or its dataset list is malformed."""


def load_dataset_specs(configs: str | Path | Sequence[str | Path]) -> list[DatasetSpec]:
    """The dataset specs (name, frames, weight) of a training config — read by the same parser as
    ``python -m a1.fit`` (layered ``--config`` files, interpolation, strict keys).

    Raises:
        PlanConfigError: the config does not parse, or a dataset has no ``frames`` (the size
            proxy the balancer needs; this command does not open data).
    """
    from a1.fit import parse_config

    paths = [configs] if isinstance(configs, (str, Path)) else list(configs)
    for path in paths:
        if not Path(path).is_file():
            raise PlanConfigError(f"config file not found: {path}")
    args = [a for p in paths for a in ("--config", str(p))]
    try:
        config = parse_config(args)
    except SystemExit as err:  # jsonargparse has printed the reason (the key) to stderr
        raise PlanConfigError(f"{' + '.join(map(str, paths))}: invalid config (see the message above)") from err
    specs = []
    for i, d in enumerate(config.data.datasets):
        if d.frames is None:
            raise PlanConfigError(f"{' + '.join(map(str, paths))}: data.datasets[{i}] ({d.name!r}): 'frames' is "
                                  f"needed to plan without opening the data")
        specs.append(DatasetSpec(d.name, d.frames, float(d.weight)))
    return specs


def _slot_rows(mixture: SlotMixture, num_workers: int) -> list[dict[str, Any]]:
    """Per-slot JSON-ready rows: slot, rank, worker, datasets, probabilities, load, ..."""
    rows = []
    for s, placements in enumerate(mixture.assignment.slots):
        rank, worker = slot_position(s, num_workers)
        rows.append({
            "slot": s,
            "rank": rank,
            "worker": worker,
            "datasets": [mixture.names[p.dataset] for p in placements],
            "probabilities": [float(mixture.probs[s, p.dataset]) for p in placements],
            "load": mixture.assignment.loads[s],
            "replicas": [f"{p.replica + 1}/{p.num_replicas}" for p in placements],
            "seeds": [p.seed for p in placements],
        })
    return rows


def make_report(
    specs: Sequence[DatasetSpec], world_size: int, num_workers: int, seed: int, draws: int
) -> dict[str, Any]:
    """Build the plan and simulate ``draws`` round-robin samples; returns a JSON-ready dict."""
    mixture = build_mixture(specs, num_slots_for(world_size, num_workers), seed=seed)
    configured = {n: float(w) for n, w in zip(mixture.names, mixture.weights)}
    realized = simulate_frequencies(mixture.probs, mixture.names, draws, num_workers, seed)
    return {
        "world_size": world_size,
        "num_workers": num_workers,
        "num_slots": mixture.assignment.num_slots,
        "seed": seed,
        "draws": draws,
        "configured": configured,
        "realized": realized,
        "tv": total_variation(configured, realized),
        "balance": mixture.assignment.balance,
        "slots": _slot_rows(mixture, num_workers),
    }


def _frames(x: float) -> str:
    """Human-readable frame count: 396.0M, 17.2K, 5."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def format_report(report: dict[str, Any]) -> str:
    """Text rendering: assignment table, load balance, configured vs realized weights."""
    lines = [
        f"{len(report['configured'])} datasets on {report['num_slots']} slots "
        f"({report['world_size']} ranks x {report['num_workers']} workers), seed {report['seed']}",
        "",
        f"{'slot':>5} {'rank':>5} {'worker':>6} {'load':>9}  datasets (p; replica k/r)",
    ]
    for row in report["slots"]:
        parts = [
            f"{name} ({p:.3f}" + ("" if rep.endswith("/1") else f"; {rep}") + ")"
            for name, p, rep in zip(row["datasets"], row["probabilities"], row["replicas"])
        ]
        lines.append(
            f"{row['slot']:>5} {row['rank']:>5} {row['worker']:>6} "
            f"{_frames(row['load']):>9}  " + ", ".join(parts)
        )
    width = max(len(n) for n in report["configured"]) + 2
    lines += ["", f"load balance (max/mean slot load): {report['balance']:.3f}", ""]
    lines.append(f"{'source':<{width}}{'configured':>11}{'realized':>11}")
    for name, w in report["configured"].items():
        lines.append(f"{name:<{width}}{w:>11.4f}{report['realized'][name]:>11.4f}")
    lines.append(f"total variation distance: {report['tv']:.4f} ({report['draws']} draws)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m a1.data.plan`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m a1.data.plan",
        description="Show how datasets are assigned to DataLoader worker slots and the "
        "realized sampling mixture.",
    )
    parser.add_argument("--config", required=True, action="append",
                        help="training config (repeat to layer overlays, as with python -m a1.fit)")
    parser.add_argument("--world-size", type=int, required=True, help="number of ranks")
    parser.add_argument(
        "--num-workers", type=int, required=True,
        help="DataLoader workers per rank (0 = main process, counted as 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--draws", type=int, default=20000, help="simulated samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code (2 on a bad config or argument)."""
    args = build_parser().parse_args(argv)
    try:
        specs = load_dataset_specs(args.config)
        report = make_report(
            specs, args.world_size, max(1, args.num_workers), args.seed, args.draws
        )
    except ValueError as err:
        print(f"plan: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
