"""a1.train.metrics_log: metrics.csv (training and validation rows, empty cells) → per-metric series."""

from __future__ import annotations

import numpy as np
import pytest

from a1.train.metrics_log import read_metrics

CSV = """\
data/skipped/robot,epoch,step,train/loss_act,train/loss_gen,val/action_mse,val/never
0.0,0,4,3.0,0.09,,
0.0,0,9,1.5,0.05,,
,0,9,,,2.5,
0.0,0,14,1.2,nan,,
,0,,,,7.0,
0.0,0,9,1.4,0.04,,
"""


def test_series_per_metric(tmp_path):
    (tmp_path / "metrics.csv").write_text(CSV)
    metrics = read_metrics(tmp_path)
    assert list(metrics) == ["data/skipped/robot", "train/loss_act", "train/loss_gen", "val/action_mse"]
    act = metrics["train/loss_act"]
    assert act.steps.tolist() == [4, 9, 14] and act.steps.dtype == np.int64
    assert act.values.tolist() == [3.0, 1.4, 1.2], "a repeated step: the later row wins"
    assert len(act) == 3 and act.last == 1.2
    assert np.isnan(metrics["train/loss_gen"].values[-1])  # kept as logged
    val = metrics["val/action_mse"]  # the row without a step is skipped
    assert val.steps.tolist() == [9] and val.values.tolist() == [2.5]
    assert read_metrics(tmp_path / "metrics.csv").keys() == metrics.keys()  # the file itself works too


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.csv").write_text("step,train/loss\n3,abc\n")
    with pytest.raises(ValueError, match=r"line 2, column 'train/loss'"):
        read_metrics(tmp_path)
