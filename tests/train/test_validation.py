"""Validation metrics: action MSE (overall and per horizon bucket), foresight latent MSE, and
PSNR/SSIM of decoded foresight frames when real tokenizer weights are configured."""

import dataclasses

import lightning as L
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from a1.model.cosmos import CosmosTokenizer
from a1.testing import BatchList, random_batch
from a1.train.module import A1Module
from tests.conftest import tiny_qwen


def test_validation_reports_every_metric(tmp_path):
    cfg = tiny_qwen()
    weights = tmp_path / "cosmos_tiny.safetensors"  # stands in for the converted CI8x8 weights
    save_file({k: v.contiguous() for k, v in CosmosTokenizer(cfg.generation.tokenizer).state_dict().items()},
              str(weights))
    cfg.generation = dataclasses.replace(
        cfg.generation, tokenizer=dataclasses.replace(cfg.generation.tokenizer, weights=str(weights)))
    module = A1Module(cfg, horizon_buckets=4)
    assert module.decoded
    batches = [random_batch(cfg, 2, seed=s) for s in (1, 2)]
    batches[1].future_mask[0] = False
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, DataLoader(BatchList(batches), batch_size=None))
    for key in ("val/action_mse", "val/latent_mse", "val/foresight_psnr", "val/foresight_ssim",
                *(f"val/action_mse_h{i}" for i in range(4))):
        assert key in metrics and torch.isfinite(torch.tensor(metrics[key])), key
    assert metrics["val/action_mse"] > 0 and -1 <= metrics["val/foresight_ssim"] <= 1
