"""Resume means resume: a tiny run killed with SIGKILL and continued with ``--ckpt_path last`` finds
the run folder's ``last.ckpt``, rewrites it in place, keeps the earlier metrics rows, and ends with
bitwise the same weights as an uninterrupted run (data order and flow noise included)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.conftest import CONFIGS, ROOT

STEPS = 8


def _cmd(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "a1.fit", "--config", str(CONFIGS / "tiny.yaml"),
            f"--trainer.max_steps={STEPS}", f"--trainer.default_root_dir={root}", "--trainer.log_every_n_steps=1",
            "--trainer.val_check_interval=null", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
            "--data.num_workers=2", "--data.batch_size=4", "--checkpoint.every_n_train_steps=2", *extra]


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _train_steps(root: Path) -> list[int]:
    with open(root / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_sigkill_and_resume_last_gives_identical_weights(tmp_path):
    env = {**os.environ, "A1_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-m", "a1.sim.synthetic", str(tmp_path / "cache" / "synthetic")],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    full = subprocess.run(_cmd(tmp_path / "full"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(run), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "step=0000004.ckpt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-training, workers and all
    proc.wait()
    saved = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in saved and f"step={STEPS:07d}.ckpt" not in saved, saved
    killed_at = _ckpt(run / "checkpoints" / "last.ckpt")["global_step"]
    before = _train_steps(run)
    assert before  # flushed with each checkpoint (rows past last.ckpt, if any, are dropped on resume)

    resumed = subprocess.run(_cmd(run, "--ckpt_path", "last"), cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {killed_at}" in resumed.stderr
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]  # in place, no last-v1
    a, b = _ckpt(tmp_path / "full" / "checkpoints" / "last.ckpt"), _ckpt(run / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])] == []
    assert _train_steps(run) == _train_steps(tmp_path / "full") == list(range(STEPS))  # earlier rows kept, no repeats


def test_a_checkpoint_is_written_after_the_metrics_row_of_its_step(tmp_path):
    """Lightning logs a step's metrics only after ``on_train_batch_end``, where checkpoints are saved:
    `A1Checkpoint` writes that row first, so a kill during the save loses no row (and none is doubled)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from a1.testing import BatchList, random_batch
    from a1.train.module import A1Module
    from a1.train.run_folder import A1Checkpoint, run_loggers
    from tests.conftest import tiny_qwen

    seen = []

    class Spy(A1Checkpoint):
        def _save_checkpoint(self, trainer, filepath):
            super()._save_checkpoint(trainer, filepath)
            seen.append((trainer.global_step, _train_steps(tmp_path)))  # what a kill right now would leave

    cfg = tiny_qwen()
    trainer = L.Trainer(max_steps=4, accelerator="cpu", default_root_dir=tmp_path, logger=run_loggers(tmp_path),
                        callbacks=[Spy(every_n_train_steps=2)], log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(A1Module(cfg), DataLoader(BatchList([random_batch(cfg, 2, seed=s) for s in range(4)]),
                                          batch_size=None))
    assert dict(seen) == {2: [0, 1], 4: [0, 1, 2, 3]}  # the step's own row is on disk at each save
    assert _train_steps(tmp_path) == [0, 1, 2, 3]
