"""a1.train.progress: step-based progress lines/bar, driven by a real Lightning Trainer on CPU."""

from __future__ import annotations

import io
import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from a1.train.progress import LogLines, StepProgressBar, batch_size, duration, progress_bar

B = 4  # per-step batch size of the tiny module
pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")


class Endless(IterableDataset):
    """Endless random (x, y) samples, like a1's streamed training data."""

    def __iter__(self):
        while True:
            yield torch.randn(3), torch.randn(2)


class Finite(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2 * B

    def __getitem__(self, i):
        return torch.randn(3), torch.randn(2)


class Tiny(L.LightningModule):
    """A linear layer logging a1's metric names (train/loss, loss_act, loss_gen, lr; val/*)."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.net, self.stop_at = torch.nn.Linear(3, 2), stop_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        act = torch.nn.functional.mse_loss(self.net(x), y)
        gen = 10 + act.detach()
        self.log("train/loss", act + 0.01 * gen, prog_bar=True, batch_size=B)
        self.log("train/loss_act", act, batch_size=B)
        self.log("train/loss_gen", gen, batch_size=B)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=B)
        return act

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.stop_at is not None and self.global_step >= self.stop_at:
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/action_mse", torch.nn.functional.mse_loss(self.net(x), y), prog_bar=True, batch_size=B)
        self.log("val/latent_mse", torch.tensor(0.015), batch_size=B)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def fit(callback, module: Tiny | None = None, val: bool = False, ckpt_path=None, **trainer_kwargs) -> L.Trainer:
    kwargs = dict(max_steps=25, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                  enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback])
    if val:
        kwargs.update(val_check_interval=10, limit_val_batches=2)
    trainer = L.Trainer(**{**kwargs, **trainer_kwargs})
    trainer.fit(module or Tiny(), train_dataloaders=DataLoader(Endless(), batch_size=B),
                val_dataloaders=DataLoader(Finite(), batch_size=B) if val else None, ckpt_path=ckpt_path)
    return trainer


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_log_lines_every_n_steps_and_last():
    out = io.StringIO()
    fit(LogLines(every_n_steps=10, stream=out))
    got = lines(out)
    assert [line.split(" | ")[0] for line in got] == ["step 10/25 (40%)", "step 20/25 (80%)", "step 25/25 (100%)"]
    for line in got:
        assert re.search(r"\| loss [\d.]+ \| act [\d.]+ \| gen [\d.]+ \| lr 1\.00e-03 \|", line), line
        assert re.search(r"\| [\d.]+ samples/s \| elapsed \d+:\d\d \| ETA \d+:\d\d$", line), line
        assert "v_num" not in line and "nan" not in line and "gnorm" not in line  # not logged: left out
    assert got[-1].endswith("ETA 0:00")


def test_log_lines_validation_and_stderr_default(capsys):
    fit(LogLines(every_n_steps=10), val=True)
    err = capsys.readouterr().err.splitlines()
    val = [line for line in err if line.startswith("val ")]
    assert [line.split(" | ")[0] for line in val] == ["val step 10", "val step 20"]
    assert all(re.fullmatch(r"val step \d+ \| action_mse [\d.e+-]+ \| latent_mse 0\.015", v) for v in val), val
    assert sum(line.startswith("step ") for line in err) == 3
    assert not any("v_num" in line or "nan" in line for line in err)


def test_log_lines_gradient_accumulation_counts_optimizer_steps():
    out = io.StringIO()
    fit(LogLines(every_n_steps=2, stream=out), max_steps=6, accumulate_grad_batches=3)
    heads = [line.split(" | ")[0] for line in lines(out)]
    assert heads == ["step 2/6 (33%)", "step 4/6 (66%)", "step 6/6 (100%)"]
    # 3 micro-batches of B per optimizer step: samples/s is about 3·B × steps/s, not B × steps/s
    assert all("samples/s" in line for line in lines(out))


def test_log_lines_unbounded_run_has_no_total_or_eta():
    out = io.StringIO()
    fit(LogLines(every_n_steps=4, stream=out), Tiny(stop_at=6), max_steps=-1, max_epochs=-1)
    got = lines(out)
    assert [line.split(" | ")[0] for line in got] == ["step 4", "step 6"]  # 6: stopped early
    assert not any("ETA" in line or "%" in line or "/" in line.split(" | ")[0] for line in got)
    assert all("elapsed" in line and "loss" in line for line in got)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_log_lines_resumed_run_counts_from_its_first_step(tmp_path):
    first = fit(LogLines(stream=io.StringIO()), max_steps=12)
    first.save_checkpoint(tmp_path / "step12.ckpt")
    out = io.StringIO()
    fit(LogLines(every_n_steps=10, stream=out), ckpt_path=tmp_path / "step12.ckpt")
    got = lines(out)
    assert [line.split(" | ")[0] for line in got] == ["step 20/25 (80%)", "step 25/25 (100%)"]
    assert all(re.search(r"samples/s \| elapsed 0:\d\d \| ETA 0:\d\d$", line) for line in got), got


def test_progress_bar_factory(monkeypatch):
    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("A1_PROGRESS", raising=False)
    lines_bar = progress_bar(every_n_steps=5, stream=io.StringIO())
    assert isinstance(lines_bar, LogLines) and lines_bar.every_n_steps == 5
    assert isinstance(progress_bar(stream=FakeTTY()), StepProgressBar)
    monkeypatch.setenv("A1_PROGRESS", "lines")
    assert isinstance(progress_bar(stream=FakeTTY()), LogLines)
    monkeypatch.setenv("A1_PROGRESS", "rich")
    assert isinstance(progress_bar(stream=io.StringIO()), StepProgressBar)
    monkeypatch.setenv("A1_PROGRESS", "tqdm")
    with pytest.raises(ValueError, match="A1_PROGRESS"):
        progress_bar()


def test_step_progress_bar_renders_steps():
    rich = pytest.importorskip("rich")
    out = io.StringIO()
    bar = StepProgressBar(console_kwargs={"file": out, "force_terminal": True, "width": 200})
    try:
        fit(bar, val=True)
    finally:
        rich.reconfigure()  # RichProgressBar reconfigures rich's global console: restore it
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "step 25/25" in text
    assert re.search(r"loss: [\d.]+ act: [\d.]+ gen: [\d.]+ val_mse: [\d.]+", text), text[-500:]
    assert "v_num" not in text and "Epoch" not in text and "/-2" not in text


def test_helpers():
    assert duration(53) == "0:53" and duration(106.9) == "1:46" and duration(3723) == "1:02:03"
    assert batch_size((torch.zeros(5, 3), torch.zeros(5))) == 5
    assert batch_size({"x": torch.zeros(7, 2)}) == 7 and batch_size(object()) is None
    with pytest.raises(ValueError):
        LogLines(every_n_steps=0)
