"""``A1Module``: the LightningModule around the InternVLA-A1 policy (paper §3.3, Table 2).

Loss = λ·L_gen + L_act with per-sample validity masks (action-free samples train L_gen only).
Logs train/loss, loss_act, loss_gen, lr, grad_norm and samples/s, and per dataset the running
total of bad samples the data workers skipped (``data/skipped/<dataset>``, summed over ranks;
``val/skipped/<dataset>`` per validation run; see `A1Module.skipped_totals`); validates with torchmetrics
(action MSE overall and per horizon bucket, foresight latent MSE, and PSNR/SSIM of decoded
foresight frames when real tokenizer weights are configured). Optional EMA of the weights (timm)
is used for validation and export.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from timm.utils import ModelEmaV3
from torch import Tensor
from torchmetrics import MeanMetric, MeanSquaredError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from a1.batch import Batch
from a1.model import flow
from a1.model.config import PolicyConfig, computation_diff
from a1.model.policy import InternVLAA1, joint_loss, masked_mean
from a1.train.continuity import check_continuation
from a1.train.optim import OptimConfig, build_optimizer, build_scheduler


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf (message names the step and the batch's datasets)."""


class A1Module(L.LightningModule):
    """Trains :class:`a1.model.policy.InternVLAA1`."""

    def __init__(
        self,
        policy: PolicyConfig,
        lambda_gen: float = 0.01,
        optim: OptimConfig | None = None,
        freeze_vision: bool = False,
        freeze_understanding: bool = False,
        ema_decay: float | None = None,
        on_nonfinite: Literal["skip", "stop"] = "stop",
        horizon_buckets: int = 5,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            policy: the model (experts, foresight, flow matching).
            lambda_gen: λ weighting the generation loss (paper: 0.01).
            optim: optimizer and learning-rate schedule (AdamW, Table 2).
            freeze_vision: keep the understanding expert's vision tower (and projector) fixed.
            freeze_understanding: keep the whole understanding expert fixed.
            ema_decay: keep an exponential moving average of the weights (e.g. 0.999), used for
                validation and export; ``None``: off.
            on_nonfinite: on a NaN/inf loss, ``skip`` the batch (logged) or ``stop`` the run.
            horizon_buckets: validation action MSE is also reported over this many equal parts
                of the action chunk (near → far future).
            init_from: an exported policy folder (``python -m a1.export``) whose
                ``model.safetensors`` initialises the policy — how post-training starts from a
                pre-trained run (``--ckpt_path`` instead resumes a run, optimizer and step included).
        """
        super().__init__()
        self.save_hyperparameters()
        self.init_report: dict | None = None  # what init_from loaded: {"path": file, "tensors": count}
        self._init_data: tuple | None = None  # the init_from folder's (processor, normalization) records
        self.optim_cfg = optim or OptimConfig()
        self.lambda_gen, self.on_nonfinite = lambda_gen, on_nonfinite
        self.policy = InternVLAA1(policy)
        if init_from is not None:
            self._init_from(init_from)
        self._freeze(freeze_vision, freeze_understanding)
        self.ema = ModelEmaV3(self.policy, decay=ema_decay) if ema_decay is not None else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
        self.val_action_mse = MeanSquaredError()
        self.val_bucket_mse = torch.nn.ModuleList(MeanSquaredError() for _ in range(horizon_buckets))
        self.val_latent_mse = MeanMetric()
        self.decoded = policy.generation.enabled and policy.generation.tokenizer.weights is not None
        if self.decoded:
            self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
            self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self._last_step_time: float | None = None
        self._skipped: dict[str, int] = {}  # training skips per dataset name, all ranks

    def _init_from(self, folder: str) -> None:
        """Load an exported policy's weights (safetensors: no pickle); shapes must match."""
        from safetensors.torch import load_file

        file = Path(folder) / "model.safetensors"
        if not file.is_file():
            raise FileNotFoundError(f"model.init_from: {file} not found (export a checkpoint with python -m a1.export)")
        config = Path(folder) / "config.json"
        if config.is_file():  # the weights must compute here what they computed there
            from a1.policy_folder import NORMALIZATION, read_config, read_normalization

            doc, cfg, _ = read_config(Path(folder))
            diffs = computation_diff(cfg, self.policy.cfg)
            if diffs:
                raise ValueError(f"model.init_from: {folder} was trained/imported with other settings than "
                                 f"model.policy (the folder's vs model.policy's: {'; '.join(diffs)}): set them as the folder's config.json has them "
                                 "(an imported official policy: add configs/official_3b.yaml)")
            norms = read_normalization(json.loads((Path(folder) / NORMALIZATION).read_text()),
                                       str(Path(folder) / NORMALIZATION), ValueError)
            self._init_data = (doc.get("processor"), {n: v.to_dict() for n, v in norms.items()})
        state = load_file(str(file))
        try:
            self.policy.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"model.init_from: {file} does not fit model.policy: {err}") from err
        self.init_report = {"path": str(file), "tensors": len(state)}

    def _freeze(self, vision: bool, understanding: bool) -> None:
        if understanding or vision:
            self.policy.understanding.freeze("all" if understanding else "vision")

    # --- training -------------------------------------------------------------------------
    def flow_draws(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Flow noise ε and times τ for this step, a function of (seed, step, rank) only, so a
        resumed run draws exactly what the uninterrupted run would have drawn."""
        actions = batch.actions
        devices = [actions.device] if actions.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.global_step + 7919 * self.global_rank)
            noise = torch.randn_like(actions)
            tau = flow.sample_time(actions.shape[0], *self.policy.cfg.action.time_beta, device=actions.device)
        return noise, tau

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        self._count_skipped(batch)
        noise, tau = self.flow_draws(batch)
        losses = self.policy(batch, noise=noise, tau=tau)
        loss = joint_loss(losses, self.lambda_gen)
        if not torch.isfinite(loss):
            datasets = sorted(set(batch.dataset_id.tolist()))
            msg = (f"non-finite loss {loss.item()} at step {self.global_step} (batch {batch_idx}, "
                   f"dataset ids {datasets}; L_act {losses.act.tolist()}, L_gen {losses.gen.tolist()})")
            if self.on_nonfinite == "stop":
                raise NonFiniteLossError(msg)
            rank_zero_warn(f"skipping batch: {msg}")
            return None
        B = batch.batch_size
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        self.log("train/loss_act", masked_mean(losses.act, losses.act_valid), prog_bar=True, batch_size=B)
        self.log("train/loss_gen", masked_mean(losses.gen, losses.gen_valid), prog_bar=True, batch_size=B)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=B)
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("train/samples_per_s", B / max(now - self._last_step_time, 1e-9), batch_size=B)
        self._last_step_time = now
        return loss

    # --- skipped samples ------------------------------------------------------------------
    def _dataset_names(self, n: int) -> list[str]:
        """Names of datasets 0..n−1 from the attached datamodule; the index where there is none."""
        dm = self._datamodule()
        names = [cfg.name for cfg in getattr(dm, "datasets", None) or []][:n]
        return names + [str(i) for i in range(len(names), n)]

    def _count_skipped(self, batch: Batch) -> None:
        """Add the batch's skip counts (summed over ranks: a collective, so every rank's batches
        must carry counts — they all come from the same datamodule) and log the running totals."""
        if batch.skipped is None:
            return
        counts = batch.skipped
        if self._trainer is not None and self.trainer.world_size > 1:
            counts = self.all_gather(counts.to(self.device)).reshape(-1, counts.numel()).sum(0)
        counts = counts.tolist()
        for name, n in zip(self._dataset_names(len(counts)), counts):
            self._skipped[name] = self._skipped.get(name, 0) + int(n)
            self.log(f"data/skipped/{name}", float(self._skipped[name]), batch_size=batch.batch_size)

    def skipped_totals(self) -> dict[str, int]:
        """Training samples skipped as bad so far, per dataset name, summed over all ranks (the
        same on every rank); carried across resumes in the checkpoint."""
        return dict(self._skipped)

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            self.log("train/grad_norm", norm)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update(self.policy, step=self.global_step)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.policy, self.optim_cfg)
        return {"optimizer": optimizer, "lr_scheduler": build_scheduler(optimizer, self.optim_cfg)}

    # --- validation -----------------------------------------------------------------------
    @property
    def eval_policy(self) -> InternVLAA1:
        """The weights used for validation and export (the EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.policy

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if batch.skipped is not None:  # this validation run's bad samples (replaced by others)
            for name, n in zip(self._dataset_names(batch.skipped.numel()), batch.skipped.tolist()):
                self.log(f"val/skipped/{name}", float(n), reduce_fx="sum", sync_dist=True, batch_size=batch.batch_size)
        policy = self.eval_policy
        g = torch.Generator(device=batch.actions.device).manual_seed(batch_idx)
        noise = torch.randn(batch.actions.shape, generator=g, device=batch.actions.device)
        ctx = policy.prepare(batch.observation, foresight=self.decoded)  # one prefix pass for both
        actions = policy.sample_actions(batch.observation, noise=noise, context=ctx)
        frames = policy.foresight.decode(ctx.latent) if self.decoded else None
        self._action_metrics(batch, actions)
        losses = policy(batch, noise=noise, tau=torch.ones(batch.batch_size, device=noise.device))
        if losses.gen_valid.any():
            self.val_latent_mse.update(losses.gen[losses.gen_valid])
            self.log("val/latent_mse", self.val_latent_mse, batch_size=batch.batch_size)
        if frames is not None:
            self._image_metrics(batch, frames)

    def _action_metrics(self, batch: Batch, actions: Tensor) -> None:
        mask = batch.action_mask[:, :, None] & batch.action_dim_mask[:, None, :] & batch.has_action[:, None, None]
        if not mask.any():
            return
        self.val_action_mse.update(actions[mask], batch.actions[mask])
        self.log("val/action_mse", self.val_action_mse, prog_bar=True, batch_size=batch.batch_size)
        for i, (metric, part) in enumerate(zip(self.val_bucket_mse,
                                               torch.arange(actions.shape[1]).tensor_split(len(self.val_bucket_mse)))):
            m = torch.zeros_like(mask)
            m[:, part] = mask[:, part]
            if m.any():
                metric.update(actions[m], batch.actions[m])
                self.log(f"val/action_mse_h{i}", metric, batch_size=batch.batch_size)

    def _image_metrics(self, batch: Batch, frames: Tensor) -> None:
        """PSNR/SSIM of decoded foresight frames vs the real t+m frames, existing views only."""
        ok = batch.future_mask
        if not ok.any():
            return
        pred = frames[ok].float() / 255.0
        real = batch.future_images[ok].float() / 255.0
        real = F.interpolate(real, size=pred.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        self.val_psnr.update(pred, real)
        self.val_ssim.update(pred, real)
        self.log("val/foresight_psnr", self.val_psnr, batch_size=batch.batch_size)
        self.log("val/foresight_ssim", self.val_ssim, batch_size=batch.batch_size)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the normalisation statistics (plain lists, no objects) next to the weights, so a
        checkpoint alone is enough to export a deployable policy."""
        dm = self._datamodule()
        if dm is not None and getattr(dm, "norms", None):
            checkpoint["a1_normalization"] = {dm.datasets[d].name: norm.to_dict() for d, norm in dm.norms.items()}
        if dm is not None and getattr(dm, "opts", None) is not None:  # what a raw observation goes through
            checkpoint["a1_processor"] = {k: getattr(dm.opts, k) for k in ("image_size", "history", "geometry")}
        checkpoint["a1_policy_config"] = asdict(self.policy.cfg)
        checkpoint["a1_skipped"] = dict(self._skipped)
        # the understanding backbone's transformers config: exports of runs that started from a
        # pretrained folder can then be rebuilt without that folder
        checkpoint["a1_backbone_config"] = self.policy.understanding.backbone.config.to_dict()

    def setup(self, stage: str) -> None:
        """``model.init_from`` weights continue only on data prepared as they were trained on."""
        if self._init_data is not None:
            check_continuation(f"model.init_from {self.hparams.init_from}", *self._init_data, self._datamodule())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A resumed run continues only on data prepared as before (`a1.train.continuity`), and keeps
        counting skipped samples from the checkpoint's totals."""
        check_continuation("the --ckpt_path checkpoint", checkpoint.get("a1_processor"),
                           checkpoint.get("a1_normalization"), self._datamodule())
        self._skipped = {str(k): int(v) for k, v in (checkpoint.get("a1_skipped") or {}).items()}

    def _datamodule(self):
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def policy_config(self) -> dict:
        """The policy's config as plain data (for export)."""
        return asdict(self.policy.cfg)
