"""Weights continue (resume, ``model.init_from``) only where they compute what they computed, on data
prepared as they were trained on."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from a1.data.collate import DatasetNorm
from a1.testing import random_policy, random_policy_folder
from a1.train.continuity import data_diff
from a1.train.module import A1Module
from tests.conftest import tiny_qwen


def _datamodule(geometry="letterbox", history=15, action_mode="absolute", dims=()):
    """What `check_continuation` reads of an A1DataModule: options, dataset names and their norms."""
    norm = random_policy().normalization["sim_aloha"]
    norm = DatasetNorm(norm.state, norm.action, norm.mode, action_mode, list(dims))
    return SimpleNamespace(opts=SimpleNamespace(image_size=64, history=history, geometry=geometry),
                           datasets=[SimpleNamespace(name="sim_aloha")], norms={0: norm})


def test_data_diff_names_every_setting_that_changed():
    dm = _datamodule(action_mode="delta", dims=[6, 13])
    names = {"sim_aloha": dm.norms[0]}
    same = {"image_size": 224, "history": 15, "geometry": "letterbox"}  # the frame size may change
    assert data_diff(same, {"sim_aloha": dm.norms[0].to_dict()}, dm.opts, names) == []
    old = {"image_size": 64, "history": 10}  # written before geometry was recorded: stretched frames
    entry = {"mode": "mean_std", "state": None, "action": None}  # written before delta actions: absolute
    got = data_diff(old, {"sim_aloha": entry, "other": entry}, dm.opts, names)
    assert got == ["data.options.geometry: 'stretch' then, 'letterbox' now",
                   "data.options.history: 10 then, 15 now",
                   "dataset 'sim_aloha' action_mode/absolute_dims: absolute [] then, delta [6, 13] now"]


def test_init_from_refuses_weights_that_would_compute_otherwise(tmp_path):
    folder = random_policy_folder(tmp_path / "policy")
    cfg = tiny_qwen()
    off = dataclasses.replace(cfg, understanding=dataclasses.replace(cfg.understanding, deepstack=False))
    with pytest.raises(ValueError, match=r"model.init_from: .*understanding.deepstack: True vs False"):
        A1Module(off, init_from=str(folder))


def test_init_from_and_resume_refuse_data_prepared_otherwise(tmp_path):
    folder = random_policy_folder(tmp_path / "policy")  # letterbox, m = 15, absolute actions
    module = A1Module(tiny_qwen(), init_from=str(folder))
    module._trainer = SimpleNamespace(datamodule=_datamodule())
    module.setup("fit")  # the same data: fine
    module._trainer = SimpleNamespace(datamodule=_datamodule(action_mode="delta", dims=[6, 13]))
    with pytest.raises(ValueError, match=r"model.init_from .* 'sim_aloha' action_mode.*absolute \[\] then, delta"):
        module.setup("fit")
    checkpoint = {"a1_processor": {"image_size": 64, "history": 15}, "a1_skipped": {}}  # an older run: stretch
    module._trainer = SimpleNamespace(datamodule=_datamodule())
    with pytest.raises(ValueError, match=r"--ckpt_path checkpoint .*geometry: 'stretch' then, 'letterbox' now"):
        module.on_load_checkpoint(checkpoint)
    module._trainer = SimpleNamespace(datamodule=_datamodule(geometry="stretch"))
    module.on_load_checkpoint(checkpoint)  # resumed as it was trained
