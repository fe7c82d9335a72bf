"""`load_policy` refuses folders that would load silently wrong (issue #7, item 5): an edited
config.json, a truncated model.safetensors, NaN/null statistics; `export` refuses bad statistics."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from a1.export import ExportError, export
from a1.policy_folder import POLICY_CONFIG_KEY, PolicyLoadError, load_policy
from tests.conftest import tiny_qwen
from tests.test_export import NORMALIZATION, trained  # noqa: F401 - the module fixture (a real 2-step fit)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):  # noqa: F811
    _, path = trained
    return export(path, tmp_path_factory.mktemp("export") / "policy")


@pytest.fixture
def folder(exported, tmp_path):
    """A private copy of the exported folder, to damage."""
    return shutil.copytree(exported, tmp_path / "policy")


def _edit_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2))


def test_weights_carry_the_exact_policy_config(exported):
    with safe_open(str(exported / "model.safetensors"), framework="pt") as f:
        stored = json.loads(f.metadata()[POLICY_CONFIG_KEY])
    assert stored == json.loads((exported / "config.json").read_text())["policy"]


def test_edited_config_is_refused_naming_the_keys(folder):
    chunk = tiny_qwen().action.chunk_size
    assert chunk != 8

    def edit(doc):
        doc["policy"]["action"]["chunk_size"] = 8
        doc["policy"]["action"]["num_steps"] += 1

    _edit_json(folder / "config.json", edit)
    with pytest.raises(PolicyLoadError) as err:
        load_policy(folder)
    msg = str(err.value)
    assert str(folder / "config.json") in msg and "model.safetensors" in msg
    assert f"policy.action.chunk_size: config.json says 8, the weights were exported with {chunk}" in msg
    assert "policy.action.num_steps: config.json says" in msg


def test_folder_exported_before_the_metadata_still_loads(folder):
    weights = folder / "model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})  # as older a1 wrote it
    loaded = load_policy(folder)
    assert loaded.config == tiny_qwen() and not loaded.policy.training


def test_truncated_weights_name_the_file(folder):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyLoadError, match=rf"{weights}: cannot read the weights .*truncated"):
        load_policy(folder)
    weights.write_bytes(b"")
    with pytest.raises(PolicyLoadError, match=rf"{weights}: cannot read the weights"):
        load_policy(folder)


@pytest.mark.parametrize("dataset, feature, key, value, message", [
    ("robot_a", "action", "mean", float("nan"), r"NaN in mean\[3\]"),
    ("robot_b", "action", "std", None, r"null in std\[3\]"),
    ("robot_a", "state", "q99", float("inf"), r"inf in q99\[3\]"),
])
def test_bad_normalization_statistics_are_refused(folder, dataset, feature, key, value, message):
    path = folder / "normalization.json"
    _edit_json(path, lambda doc: doc[dataset][feature][key].__setitem__(3, value))
    with pytest.raises(PolicyLoadError, match=rf"{path}: dataset '{dataset}': {feature}: {message}"):
        load_policy(folder)


def test_bad_normalization_entries_are_refused(folder):
    path = folder / "normalization.json"
    _edit_json(path, lambda doc: doc["robot_a"].pop("mode"))
    with pytest.raises(PolicyLoadError, match=rf"{path}: dataset 'robot_a': expected .*'mode'"):
        load_policy(folder)

    def constant(doc):
        doc["robot_a"]["mode"] = "mean_std"
        doc["robot_b"]["action"]["std"] = [0.0] * 14

    _edit_json(path, constant)
    with pytest.raises(PolicyLoadError, match=rf"{path}: dataset 'robot_b': action: std is 0 in every dimension"):
        load_policy(folder)


@pytest.mark.parametrize("key, value, message", [
    ("absolute_dims", [6, 14], r"action: absolute_dims \[14\] are not action dims"),
    ("absolute_dims", [6, 6], r"action: absolute_dims \[6, 6\] name a dim twice"),
    ("absolute_dims", 6, r"expected action_mode one of \['absolute', 'delta'\] and absolute_dims a list"),
    ("action_mode", "relative", r"expected action_mode one of \['absolute', 'delta'\]"),
])
def test_bad_delta_settings_are_refused(folder, key, value, message):
    path = folder / "normalization.json"
    _edit_json(path, lambda doc: doc["robot_a"].__setitem__(key, value))
    with pytest.raises(PolicyLoadError, match=rf"{path}: dataset 'robot_a': {message}"):
        load_policy(folder)


def test_misspelt_normalization_key_is_refused_naming_it(folder):
    """A typo must not silently mean absolute actions (every raw action off by the state)."""
    path = folder / "normalization.json"

    def typo(doc):
        doc["robot_a"]["actionmode"] = doc["robot_a"].pop("action_mode")

    _edit_json(path, typo)
    with pytest.raises(PolicyLoadError) as err:
        load_policy(folder)
    assert str(err.value) == (f"{path}: dataset 'robot_a': unknown key(s) ['actionmode'] (known keys: "
                              f"['mode', 'state', 'action', 'action_mode', 'absolute_dims'])")


def test_export_refuses_delta_dims_outside_the_statistics(trained, tmp_path):  # noqa: F811
    _, path = trained
    ckpt = torch.load(path, weights_only=False)
    norm = json.loads(json.dumps(NORMALIZATION))
    norm["robot_a"]["state"] = {k: v[:5] for k, v in norm["robot_a"]["state"].items()}  # a 5-dim state
    ckpt["a1_normalization"] = norm
    bad = tmp_path / "narrow.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(ExportError, match=rf"{bad}: a1_normalization: dataset 'robot_a': action: action_mode 'delta' "
                                          r"subtracts the state from action dims .* but the state has 5 dims"):
        export(bad, tmp_path / "out")


def test_export_refuses_bad_statistics(trained, tmp_path):  # noqa: F811
    _, path = trained
    ckpt = torch.load(path, weights_only=False)
    norm = json.loads(json.dumps(NORMALIZATION))
    norm["robot_b"]["action"]["q01"][5] = float("nan")
    ckpt["a1_normalization"] = norm
    bad = tmp_path / "nan.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(ExportError, match=rf"{bad}: a1_normalization: dataset 'robot_b': action: NaN in q01\[5\]"):
        export(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
