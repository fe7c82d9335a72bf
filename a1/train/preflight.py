"""Checks a training config before anything is built: one clear line and the fix, within seconds.

Run by ``python -m a1.fit`` on the parsed config, before the model (13.5 GB for the 3B) exists:

- the hardware: a GPU config on a machine without one, more devices than the machine has;
- the cluster: ``trainer.num_nodes > 1`` outside a cluster environment (SLURM, torchrun, LSF,
  MPI, or MASTER_ADDR/WORLD_SIZE/RANK as Kubeflow sets them) would wait forever for the other nodes;
- numbers no run can use (batch size, workers, steps, accumulation, weights, fractions);
- data frames too small for an expert (`check_frame_size`), e.g. the 2B's InternVL3 (448²) fed
  224² frames: it would train on upsampled pixels;
- shards converted with another frame geometry than ``data.options.geometry``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from a1.data.shards import MANIFEST, check_geometry, read_manifest

CPU_FIX = ("for a CPU run use configs/tiny.yaml, or override --trainer.accelerator=cpu --trainer.devices=1 "
           "--trainer.num_nodes=1 --trainer.strategy=auto --trainer.precision=32-true")


class PreflightError(ValueError):
    """A config that cannot run here; the message names the key and the fix."""


def _get(ns: Any, key: str, default: Any = None) -> Any:
    """``ns["a.b.c"]`` for a jsonargparse Namespace or nested dicts; ``default`` when absent."""
    cur = ns
    for part in key.split("."):
        try:
            cur = cur[part]
        except (KeyError, TypeError, AttributeError):
            return default
        if cur is None:
            return default
    return cur


def _strategy_name(strategy: Any) -> str:
    if isinstance(strategy, str):
        return strategy
    path = _get(strategy, "class_path") or type(strategy).__name__
    return str(path).rsplit(".", 1)[-1].lower()


def check_hardware(trainer: Any) -> None:
    """Accelerator, devices and strategy against the GPUs this process can see."""
    accelerator = str(_get(trainer, "accelerator", "auto")).lower()
    strategy = _strategy_name(_get(trainer, "strategy", "auto"))
    wants_gpu = accelerator in ("gpu", "cuda") or "deepspeed" in strategy
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if wants_gpu and gpus == 0:
        raise PreflightError(f"trainer.accelerator={accelerator}, strategy {strategy}: this config needs a CUDA GPU "
                             f"and this machine has none (torch.cuda.is_available() is False); {CPU_FIX}")
    devices = _get(trainer, "devices", "auto")
    if wants_gpu and isinstance(devices, int) and devices > gpus:
        raise PreflightError(f"trainer.devices={devices}, but this machine has {gpus} GPU(s); set "
                             f"--trainer.devices={gpus} (and keep the global batch, see the README)")


def cluster_environment() -> str | None:
    """The name of the cluster launcher this process runs under, if any."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for env in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment):
        if env.detect():
            return env.__name__
    if "OMPI_COMM_WORLD_SIZE" in os.environ and MPIEnvironment.detect():
        return MPIEnvironment.__name__
    if all(v in os.environ for v in ("MASTER_ADDR", "WORLD_SIZE", "RANK")):  # Kubeflow / a launcher of one's own
        return "environment variables MASTER_ADDR, WORLD_SIZE, RANK"
    return None


def check_cluster(trainer: Any) -> None:
    """A multi-node config must run under a launcher that starts and finds the other nodes."""
    nodes = _get(trainer, "num_nodes", 1)
    if nodes > 1 and cluster_environment() is None:
        raise PreflightError(f"trainer.num_nodes={nodes}, but no cluster environment was found (SLURM, torchrun, "
                             f"LSF, MPI, or MASTER_ADDR/WORLD_SIZE/RANK): launch it with srun or torchrun on every node (README: "
                             f"Training at scale), or set --trainer.num_nodes=1")


def _positive(where: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise PreflightError(f"{where} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_numbers(config: Any) -> None:
    """Values no run can use, named by their key."""
    _positive("data.batch_size", _get(config, "data.batch_size"))
    _positive("data.num_workers", _get(config, "data.num_workers"), allow_zero=True)
    _positive("data.val_samples", _get(config, "data.val_samples"), allow_zero=True)
    fraction = _get(config, "data.val_fraction")
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
        raise PreflightError(f"data.val_fraction must be in [0, 1), got {fraction!r}")
    for i, d in enumerate(_get(config, "data.datasets", []) or []):
        _positive(f"data.datasets[{i}].weight ({_get(d, 'name')})", _get(d, "weight"))
        if _get(d, "frames") is not None:
            _positive(f"data.datasets[{i}].frames ({_get(d, 'name')})", _get(d, "frames"))
    steps = _get(config, "trainer.max_steps", -1)
    if steps != -1:
        _positive("trainer.max_steps (or -1: no limit)", steps)
    _positive("trainer.accumulate_grad_batches", _get(config, "trainer.accumulate_grad_batches", 1))
    _positive("trainer.num_nodes", _get(config, "trainer.num_nodes", 1))
    devices = _get(config, "trainer.devices", "auto")
    if isinstance(devices, int) and devices != -1:
        _positive("trainer.devices", devices)
    _positive("model.lambda_gen", _get(config, "model.lambda_gen"), allow_zero=True)
    clip = _get(config, "trainer.gradient_clip_val")
    if clip is not None:
        _positive("trainer.gradient_clip_val", clip, allow_zero=True)


MAX_UPSAMPLE = (256, 224)
"""The most an expert may enlarge the data frames, as (expert side, frame side): the official 3B
recipe's own resize — 224² letterboxed frames that Qwen3-VL's processor turns into its 256² input,
×8/7 (Cosmos too gets 224 → 256). Beyond it the expert mostly reads interpolated pixels."""


def check_frame_size(config: Any) -> None:
    """``data.options.image_size`` against each expert's input side (``model.policy.understanding.
    image_size``, and ``generation.image_size`` when enabled): an expert may enlarge the frames by at
    most `MAX_UPSAMPLE` (3B: 224 → 256 is the official recipe); more is an error naming both keys."""
    size = _get(config, "data.options.image_size")
    experts = ["understanding"] + (["generation"] if _get(config, "model.policy.generation.enabled", False) else [])
    big, small = MAX_UPSAMPLE
    for expert in experts:
        need = _get(config, f"model.policy.{expert}.image_size")
        if isinstance(size, int) and isinstance(need, int) and size * big < need * small:
            least = -(-need * small // big)
            raise PreflightError(f"data.options.image_size={size} is too small for model.policy.{expert}.image_size="
                                 f"{need}: the expert would upsample the frames ×{need / size:.2f}, more than the "
                                 f"official ×{big}/{small} (224² frames for a 256² input); set "
                                 f"--data.options.image_size={need} (at least {least})")


def check_shard_geometry(config: Any) -> None:
    """Shard folders (``data.datasets[i].shards``) whose frames were made square with another geometry
    than ``data.options.geometry`` (`a1.data.shards.check_geometry`); a folder without a manifest is
    left to the dataset checks."""
    geometry = _get(config, "data.options.geometry")
    for d in _get(config, "data.datasets", []) or []:
        shards = _get(d, "shards")
        if shards and (Path(shards) / MANIFEST).is_file():
            check_geometry(read_manifest(shards), geometry, shards)


def preflight(config: Any) -> None:
    """All config-level checks of a ``python -m a1.fit`` run (numbers and frame sizes, then hardware,
    then cluster, then the shards' frame geometry)."""
    check_numbers(config)
    check_frame_size(config)
    check_hardware(config["trainer"])
    check_cluster(config["trainer"])
    check_shard_geometry(config)
