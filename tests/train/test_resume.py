"""Resume is exact: a tiny run killed with SIGKILL and resumed from its last checkpoint ends with
bitwise the same weights as an uninterrupted run (data order and flow noise included)."""

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
            f"--trainer.max_steps={STEPS}", f"--trainer.default_root_dir={root}", "--trainer.logger=false",
            "--trainer.val_check_interval=null", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
            "--data.num_workers=2", "--data.batch_size=4",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            f"--trainer.callbacks.dirpath={root}/ckpt", "--trainer.callbacks.every_n_train_steps=2",
            "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=-1", *extra]


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_sigkill_and_resume_gives_identical_weights(tmp_path):
    env = {**os.environ, "A1_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-m", "a1.data.synthetic", str(tmp_path / "cache" / "synthetic")],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    full = subprocess.run(_cmd(tmp_path / "full"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(run), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (run / "ckpt" / "epoch=0-step=4.ckpt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-training, workers and all
    proc.wait()
    saved = sorted(p.name for p in (run / "ckpt").glob("*.ckpt"))
    assert "last.ckpt" in saved and f"epoch=0-step={STEPS}.ckpt" not in saved, saved

    resumed = subprocess.run(_cmd(run, "--ckpt_path", str(run / "ckpt" / "last.ckpt")), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(tmp_path / "full" / "ckpt" / "last.ckpt"), _weights(run / "ckpt" / "last.ckpt")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
