"""DeepSpeed at scale: the pre-training strategy config, and ZeRO checkpoint → one state dict.

(a) ``trainer.strategy`` of ``configs/pretrain_3b.yaml`` is instantiated exactly as LightningCLI
does (``class_path`` + ``init_args``) without building the 3B model, and its resolved DeepSpeed
config is checked (ZeRO-2, buckets, clipping/bf16 left to the trainer). ZeRO-3 with CPU offload
is checked to be expressible the same way.

(b) A real DeepSpeed ZeRO-2 checkpoint is written on CPU (gloo, one rank, in a subprocess) after
one optimizer step, and consolidated with DeepSpeed's own ``zero_to_fp32``; the result must equal
the engine's weights exactly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

from lightning.pytorch.cli import instantiate_class  # noqa: E402
from lightning.pytorch.strategies import DeepSpeedStrategy  # noqa: E402

from a1.config import load_yaml  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: each shipped run: its base config and overlays, layered as with python -m a1.fit --config A --config B
RUNS = {"pretrain_3b": ["pretrain_3b.yaml"], "pretrain_2b": ["pretrain_2b.yaml"],
        "posttrain_3b": ["pretrain_3b.yaml", "posttrain_3b.yaml"],
        "posttrain_robotwin_3b": ["pretrain_3b.yaml", "posttrain_3b.yaml", "posttrain_robotwin_3b.yaml"]}


def _load(run: str) -> dict:
    return load_yaml(*(CONFIGS / name for name in RUNS[run]))


@pytest.mark.parametrize("config", ["pretrain_3b", "pretrain_2b", "posttrain_3b"])
def test_strategy_of_the_config_builds_zero2(config):
    cfg = _load(config)
    trainer = cfg["trainer"]
    strategy = instantiate_class((), trainer["strategy"])
    assert isinstance(strategy, DeepSpeedStrategy)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == 2
    assert zero["allgather_bucket_size"] == zero["reduce_bucket_size"] == 500_000_000
    # bf16 and clipping come from the trainer (precision plugin / gradient_clip_val), not the strategy
    assert trainer["precision"] == "bf16-mixed" and trainer["gradient_clip_val"] == 1.0
    assert "bf16" not in strategy.config and "fp16" not in strategy.config


def test_global_batch_of_the_pretrain_and_posttrain_configs():
    for config, expected in [("pretrain_3b", 512), ("pretrain_2b", 512), ("posttrain_3b", 128),
                             ("posttrain_robotwin_3b", 128)]:
        cfg = _load(config)
        t = cfg["trainer"]
        got = cfg["data"]["batch_size"] * t["devices"] * t["num_nodes"] * t["accumulate_grad_batches"]
        assert got == expected, (config, got)


def test_zero3_with_cpu_offload_is_expressible():
    strategy = DeepSpeedStrategy(stage=3, offload_optimizer=True, offload_parameters=True)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"


_ZERO_SCRIPT = textwrap.dedent("""
    import importlib, sys
    import torch, deepspeed
    # DeepSpeed's CPU accelerator JIT-compiles an optional shared-memory all-reduce kernel
    # (minutes on 2 cores); one gloo rank does not need it, so skip building it.
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))
    config = {"train_batch_size": 1, "gradient_clipping": 1.0,
              "zero_optimization": {"stage": 2},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    before = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    loss = engine(torch.randn(1, 6)).square().sum()
    engine.backward(loss)
    engine.step()
    after = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    assert any(not torch.equal(before[k], after[k]) for k in after), "the step changed nothing"
    engine.save_checkpoint(sys.argv[1], tag="step1")
    torch.save(after, sys.argv[2])
    print("ZERO_OK")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zero2_checkpoint_converts_to_one_state_dict(tmp_path):
    from deepspeed.utils.zero_to_fp32 import (
        convert_zero_checkpoint_to_fp32_state_dict,
        get_fp32_state_dict_from_zero_checkpoint,
    )

    ckpt, reference = tmp_path / "ckpt", tmp_path / "reference.pt"
    script = tmp_path / "zero_step.py"
    script.write_text(_ZERO_SCRIPT)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "DS_ACCELERATOR": "cpu",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(script), str(ckpt), str(reference)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ZERO_OK" in proc.stdout, (proc.stdout[-2000:] + proc.stderr[-3000:])
    assert (ckpt / "latest").read_text().strip() == "step1"
    assert list((ckpt / "step1").glob("zero_pp_rank_0_*optim_states.pt")), "not a ZeRO checkpoint"

    weights = torch.load(reference)
    merged = get_fp32_state_dict_from_zero_checkpoint(str(ckpt))
    assert set(merged) == set(weights)
    for k, v in weights.items():
        assert merged[k].dtype == torch.float32
        torch.testing.assert_close(merged[k], v.float(), rtol=0, atol=0, msg=k)

    # the file-writing variant: one safetensors file (or a torch file) holding the same weights
    out = tmp_path / "fp32"
    convert_zero_checkpoint_to_fp32_state_dict(str(ckpt), str(out), safe_serialization=True)
    files = sorted(out.glob("*.safetensors"))
    assert len(files) == 1, files
    from safetensors.torch import load_file

    loaded = load_file(files[0])
    for k, v in weights.items():
        torch.testing.assert_close(loaded[k], v.float(), rtol=0, atol=0, msg=k)

