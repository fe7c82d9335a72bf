"""Delta actions (issue #9): action − state on the joint dims, grippers absolute; statistics of the
deltas (what the model predicts); the official (x − mean)/(std + 1e-6) normalisation; statistics
without quantiles; the settings travel with checkpoints and policy folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from a1.sim import synthetic as syn
from a1.data.collate import DatasetNorm
from a1.data.convert import convert
from a1.data.datamodule import A1DataModule
from a1.data.normalize import FeatureStats, StatsError, apply, normalize
from a1.data.sample import make_sample
from a1.data.sources import DatasetConfig, open_source
from a1.data.stats import compute_stats, dataset_stats, stats_record, write_stats_file
from a1.data.streams import DataOptions
from a1.policy_folder import check_normalization
from tests.conftest import ROOT

GRIPPERS = [6, 13]
K = 8
OPTS = DataOptions(chunk_size=K, image_size=32, max_text_tokens=24)
FIXTURE = ROOT / "tests" / "fixtures" / "lerobot_v30_aloha"  # written by lerobot: state = frame, action = state + 1


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    syn.generate(out, episodes=3, human_clips=0, image_size=32, frames_per_episode=36)
    return out / "robot"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("A1_CACHE", str(tmp_path / "a1_cache"))
    return tmp_path / "a1_cache"


def _delta(name: str, root: Path | None, **kw) -> DatasetConfig:
    return DatasetConfig(name=name, weight=1.0, path=None if root is None else str(root), action_mode="delta",
                         absolute_dims=GRIPPERS, **kw)


def _random_norm(mode: str, action_mode: str = "delta") -> tuple[DatasetNorm, np.random.Generator]:
    rng = np.random.default_rng(0)
    state = FeatureStats.compute(rng.normal(0.5, 2.0, (300, 14)), "state")
    action = FeatureStats.compute(rng.normal(-0.3, 0.4, (300, 14)), "action")
    return DatasetNorm(state, action, mode, action_mode, GRIPPERS), rng


def _chunk_pairs(states: np.ndarray, actions: np.ndarray, k: int) -> np.ndarray:
    """Every a_{t+i} − q_t (grippers: a_{t+i}) with i < k and t + i inside the episode, by loops."""
    rows = []
    for t in range(len(actions)):
        for i in range(k):
            if t + i < len(actions):
                row = actions[t + i].astype(np.float64).copy()
                joints = [d for d in range(actions.shape[1]) if d not in GRIPPERS]
                row[joints] -= states[t][joints]
                rows.append(row)
    return np.stack(rows)


# --- the transform ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mean_std", "mean_std_eps", "quantile"])
def test_raw_model_raw_round_trip_and_the_formula(mode):
    norm, rng = _random_norm(mode)
    actions, state = rng.normal(0.0, 1.5, (K, 14)), rng.normal(0.0, 1.5, 14)
    y = norm.actions_to_model(actions, state)
    assert y.dtype == np.float32 and y.shape == (K, 14)
    target = actions - state  # joints: deltas to the state at the chunk's first frame
    target[:, GRIPPERS] = actions[:, GRIPPERS]  # grippers: absolute
    np.testing.assert_allclose(y, normalize(target, norm.action, mode), rtol=1e-6, atol=1e-6)
    if mode == "mean_std":
        a = norm.action
        np.testing.assert_allclose(y[:, 0], (actions[:, 0] - state[0] - a.mean[0]) / a.std[0], rtol=1e-5)
        np.testing.assert_allclose(y[:, 6], (actions[:, 6] - a.mean[6]) / a.std[6], rtol=1e-5)
    back = norm.actions_to_raw(y, state)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, actions, rtol=0, atol=1e-6)


def test_absolute_mode_is_plain_normalisation_and_needs_no_state():
    norm, rng = _random_norm("mean_std", "absolute")
    actions = rng.normal(size=(K, 14))
    y = norm.actions_to_model(actions, None)
    np.testing.assert_array_equal(y, normalize(actions, norm.action, "mean_std"))
    np.testing.assert_allclose(norm.actions_to_raw(y, None), actions, atol=1e-6)


def test_delta_settings_are_checked():
    norm, rng = _random_norm("mean_std")
    with pytest.raises(ValueError, match="action: delta actions need the raw state"):
        norm.actions_to_model(rng.normal(size=(K, 14)), None)
    state7 = FeatureStats.compute(rng.normal(size=(50, 7)), "x.json: dataset 'arm': state")
    action = FeatureStats.compute(rng.normal(size=(50, 14)), "x.json: dataset 'arm': action")
    with pytest.raises(ValueError, match=r"x.json: dataset 'arm': action: action_mode 'delta' subtracts the state "
                                         r"from action dims .*but the state has 7 dims"):
        DatasetNorm(state7, action, "mean_std", "delta", GRIPPERS)
    DatasetNorm(state7, action, "mean_std", "delta", list(range(7, 14)))  # only dims 0..6 are deltas: fine
    with pytest.raises(ValueError, match=r"absolute_dims \[14\] are not action dims"):
        DatasetNorm(action, action, "mean_std", "delta", [6, 14])
    with pytest.raises(ValueError, match=r"dataset 'bot': absolute_dims \[6, 6\] name a dim twice"):
        DatasetConfig(name="bot", weight=1.0, action_mode="delta", absolute_dims=[6, 6])
    with pytest.raises(ValueError, match=r"dataset 'bot': action_mode must be one of"):
        DatasetConfig(name="bot", weight=1.0, action_mode="relative")
    cfg = _delta("bot", Path("x"))
    with pytest.raises(ValueError, match=r"dataset 'bot' \(somewhere\): action_mode 'delta' .* has no state"):
        cfg.check_action_dims(None, 14, "somewhere")
    cfg.check_action_dims(None, None, "human video: nothing to check")


# --- the official normalisation and statistics without quantiles --------------------------------
def test_official_eps_mode_is_the_formula_and_guards_nothing():
    stats = FeatureStats.from_dict({"mean": [1.0, -2.0, 0.5], "std": [2.0, 0.0, 0.25], "min": [0, 0, 0],
                                    "max": [1, 1, 1], "count": [10]}, "stats.json: action")
    x = np.array([[3.0, -1.5, 0.5], [-1.0, -2.0, 1.0]])
    want = (x - stats.mean) / (stats.std + 1e-6)
    y = normalize(x, stats, "mean_std_eps")
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert y[0, 1] == pytest.approx(0.5e6, rel=1e-6)  # a constant dim is divided by 1e-6, as the official code does
    np.testing.assert_allclose(apply(y, stats, "mean_std_eps", inverse=True),
                               y.astype(np.float64) * (stats.std + 1e-6) + stats.mean, rtol=1e-6)
    np.testing.assert_allclose(apply(normalize(x, stats, "mean_std_eps"), stats, "mean_std_eps", inverse=True), x,
                               atol=1e-6)
    assert normalize(x, stats, "mean_std")[0, 1] == pytest.approx(0.5)  # a1's default only centres it


def test_statistics_without_quantiles_refuse_only_quantile_mode_naming_where(tmp_path):
    official = {"mean": [0.0, 1.0], "std": [1.0, 2.0], "min": [-1.0, -3.0], "max": [1.0, 5.0], "count": [7]}
    stats = FeatureStats.from_dict(official, "robot/stats.json: action")
    assert not stats.has_quantiles and stats.to_dict() == {"mean": [0.0, 1.0], "std": [1.0, 2.0]}
    for mode in ("mean_std", "mean_std_eps", "none"):
        normalize(np.ones((2, 2)), stats, mode)
    with pytest.raises(StatsError, match=r"^robot/stats.json: action: normalization 'quantile' needs q01/q99"):
        normalize(np.ones((2, 2)), stats, "quantile")
    with pytest.raises(StatsError, match=r"^robot/stats.json: action: normalization 'quantile' needs q01/q99"):
        DatasetNorm(stats, stats, "quantile")
    with pytest.raises(KeyError, match=r"x.json: statistics lack 'q99'"):
        FeatureStats.from_dict({**official, "q01": [0.0, 0.0]}, "x.json")
    folder_entry = {"mode": "quantile", "state": None, "action": official}
    with pytest.raises(ValueError, match=r"policy/normalization.json: dataset 'aloha': action: normalization "
                                         r"'quantile' needs q01/q99"):
        check_normalization({"aloha": folder_entry}, "policy/normalization.json", ValueError)


def test_a_quantile_dataset_with_a_stats_file_without_quantiles_is_refused_naming_the_file(synth, tmp_path):
    data = compute_stats(synth)
    for feature in ("state", "action"):
        data[feature] = {k: v for k, v in data[feature].items() if k in ("mean", "std")}
    file = write_stats_file(tmp_path / "no_quantiles.json", data)
    cfg = DatasetConfig(name="bot", weight=1.0, path=str(synth), stats=str(file), normalization="quantile")
    dm = A1DataModule([cfg], OPTS, num_workers=0)
    with pytest.raises(StatsError, match=rf"{file}: state: normalization 'quantile' needs q01/q99"):
        dm.inspect()
    ok = A1DataModule([DatasetConfig(name="bot", weight=1.0, path=str(synth), stats=str(file),
                                     normalization="mean_std_eps")], OPTS, num_workers=0)
    assert ok.inspect()[0].stats == f"file {file}" and ok.norms[0].mode == "mean_std_eps"


# --- statistics of what the model predicts -------------------------------------------------------
def test_delta_statistics_of_a_lerobot_written_dataset(cache):
    """On the lerobot-written fixture (action = state + 1) every joint target a_{t+i} − q_t is i + 1."""
    state, action, origin = dataset_stats(_delta("aloha", FIXTURE), K)
    assert origin.startswith("computed (cached to ")  # never LeRobot's meta/stats.json (absolute actions)
    lengths = [12, 9]
    want = np.concatenate([[i + 1.0 for t in range(n) for i in range(K) if t + i < n] for n in lengths])
    assert action.mean[0] == pytest.approx(want.mean(), rel=1e-12) and action.std[0] == pytest.approx(want.std())
    np.testing.assert_allclose(action.q99[:6], np.quantile(want, 0.99))
    absolute_state, absolute_action, origin = dataset_stats(DatasetConfig(name="aloha", weight=1.0,
                                                                          path=str(FIXTURE)))
    assert origin == "lerobot meta/stats.json"
    np.testing.assert_allclose(state.mean, absolute_state.mean)  # the state is never a delta
    assert abs(action.mean[0] - absolute_action.mean[0]) > 1.0


def test_delta_statistics_match_numpy_on_the_synthetic_world(synth, cache):
    cfg = _delta("syn", synth)
    state, action, origin = dataset_stats(cfg, K)
    episodes = open_source(cfg, OPTS.views).episodes
    pairs = np.concatenate([_chunk_pairs(*e.vectors(), K) for e in episodes])
    ref = FeatureStats.compute(pairs)
    np.testing.assert_allclose(action.mean, ref.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(action.std, ref.std, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(action.q01, ref.q01, rtol=1e-9)
    np.testing.assert_allclose(action.q99, ref.q99, rtol=1e-9)
    states = np.concatenate([e.vectors()[0] for e in episodes])
    np.testing.assert_allclose(state.mean, states.astype(np.float64).mean(0), rtol=1e-9, atol=1e-12)
    # cached under its own key, with the settings it was computed for
    again = dataset_stats(cfg, K)
    assert again[2].startswith("cache ") and again[2] != origin
    record = json.loads(Path(again[2].removeprefix("cache ")).read_text())
    assert {k: record[k] for k in ("action_mode", "absolute_dims", "chunk_size")} == {
        "action_mode": "delta", "absolute_dims": GRIPPERS, "chunk_size": K}
    other = dataset_stats(cfg, 4)  # another chunk size: other statistics, not the cached ones
    assert other[2].startswith("computed") and not np.allclose(other[1].std, action.std)
    with pytest.raises(ValueError, match=r"dataset 'syn': statistics of delta actions depend on the chunk size"):
        dataset_stats(cfg)


def test_stats_files_record_their_action_settings_and_mismatches_are_refused(synth, tmp_path):
    absolute = write_stats_file(tmp_path / "absolute.json", compute_stats(synth))
    with pytest.raises(StatsError, match=rf"{absolute}: action statistics computed for absolute actions, but the "
                                         r"dataset trains with action_mode 'delta' \(absolute_dims \[6, 13\], "
                                         r"chunk_size 8\).*--action-mode delta --absolute-dims 6,13 --chunk-size 8"):
        dataset_stats(_delta("bot", synth, stats=str(absolute)), K)
    old = json.loads(absolute.read_text())  # written before delta actions existed: no record, i.e. absolute
    for key in ("action_mode", "absolute_dims", "chunk_size"):
        old.pop(key)
    old_file = write_stats_file(tmp_path / "old.json", old)
    assert dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(synth), stats=str(old_file)))[2]
    with pytest.raises(StatsError, match="old.json: action statistics computed for absolute actions"):
        dataset_stats(_delta("bot", synth, stats=str(old_file)), K)
    delta = write_stats_file(tmp_path / "delta.json", compute_stats(synth, record=stats_record("delta", GRIPPERS, K, "x")))
    assert dataset_stats(_delta("bot", synth, stats=str(delta)), K)[2] == f"file {delta}"
    with pytest.raises(StatsError, match=r"delta.json: action statistics computed for action_mode 'delta' .*chunk_size "
                                         r"8\), but the dataset trains with action_mode 'delta' .*chunk_size 16\)"):
        dataset_stats(_delta("bot", synth, stats=str(delta)), 16)
    with pytest.raises(StatsError, match=r"delta.json: action statistics computed for action_mode 'delta'.* but the "
                                         r"dataset trains with absolute actions"):
        dataset_stats(DatasetConfig(name="bot", weight=1.0, path=str(synth), stats=str(delta)))


# --- training: collator, datamodule, shards ------------------------------------------------------
def _module(datasets) -> A1DataModule:
    dm = A1DataModule(datasets, OPTS, batch_size=2, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_collated_actions_of_a_delta_dataset_are_normalised_deltas(synth):
    dm = _module([_delta("syn", synth)])
    norm = dm.norms[0]
    assert (norm.action_mode, norm.absolute_dims) == ("delta", GRIPPERS)
    episode = open_source(dm.datasets[0], OPTS.views).episodes[1]
    t = 20
    sample = make_sample(episode, t, OPTS.views, OPTS.history, K, 0, "syn/1/20", OPTS.image_size)
    batch = dm.collator()([sample])
    states, actions = episode.vectors()
    target = actions[t:t + K].astype(np.float64) - states[t]
    target[:, GRIPPERS] = actions[t:t + K, GRIPPERS]
    want = (target - norm.action.mean) / np.where(norm.action.std <= 1e-6, 1.0, norm.action.std)
    np.testing.assert_allclose(batch.actions[0, :, :14].numpy(), want, rtol=1e-5, atol=1e-5)
    assert batch.actions[0, :, 14:].abs().max() == 0 and batch.action_dim_mask[0].sum() == 14
    want_state = (states[t] - norm.state.mean) / np.where(norm.state.std <= 1e-6, 1.0, norm.state.std)
    np.testing.assert_allclose(batch.observation.state[0, :14].numpy(), want_state, rtol=1e-5, atol=1e-5)
    # the deployed processor's inverse gives the raw chunk back from the model's targets
    np.testing.assert_allclose(norm.actions_to_raw(batch.actions[0, :, :14].numpy(), states[t]),
                               actions[t:t + K], atol=1e-5)
    # the checkpoint entry round-trips with the settings
    entry = json.loads(json.dumps(norm.to_dict()))
    assert entry["action_mode"] == "delta" and entry["absolute_dims"] == GRIPPERS
    assert DatasetNorm.from_dict(entry, "ckpt").to_dict() == norm.to_dict()
    assert next(iter(dm.train_dataloader())).has_action.all()


def test_unknown_normalisation_keys_are_refused_naming_them():
    norm, _ = _random_norm("mean_std")
    entry = norm.to_dict()
    entry["absolute_dim"] = entry.pop("absolute_dims")  # would silently make the grippers deltas
    with pytest.raises(ValueError, match=r"^ckpt: a1_normalization: dataset 'arm': unknown key\(s\) "
                                         r"\['absolute_dim'\] \(known keys: \['mode', 'state', 'action', "
                                         r"'action_mode', 'absolute_dims'\]\)$"):
        check_normalization({"arm": entry}, "ckpt: a1_normalization", ValueError)


def test_delta_shards_record_their_statistics_settings(synth, tmp_path):
    out = tmp_path / "shards"
    with pytest.raises(ValueError, match=r"dataset 'syn': statistics of delta actions depend on the chunk size"):
        convert(_delta("syn", synth), out, OPTS.views, progress=False)
    m = convert(_delta("syn", synth), out, OPTS.views, episodes_per_shard=2, progress=False, chunk_size=K)
    assert (m["stats"]["action_mode"], m["stats"]["absolute_dims"], m["stats"]["chunk_size"]) == ("delta", GRIPPERS, K)
    folder, shards = _module([_delta("syn", synth)]), _module([_delta("syn", None, shards=str(out))])
    for f in ("state", "action"):
        np.testing.assert_array_equal(getattr(shards.norms[0], f).mean, getattr(folder.norms[0], f).mean)
    assert shards.norms[0].to_dict() == folder.norms[0].to_dict()
    with pytest.raises(StatsError, match=rf"{out / 'manifest.json'}: stats: action statistics computed for "
                                         r"action_mode 'delta'.* but the dataset trains with absolute actions"):
        _module([DatasetConfig(name="syn", weight=1.0, shards=str(out))])
    absolute = convert(DatasetConfig(name="syn", weight=1.0, path=str(synth)), out, OPTS.views, episodes_per_shard=2,
                       progress=False)  # other action settings: only the manifest is rewritten
    assert absolute["stats"]["action_mode"] == "absolute"
    with pytest.raises(StatsError, match="computed for absolute actions, but the dataset trains with action_mode"):
        _module([_delta("syn", None, shards=str(out))])


def test_a_delta_dataset_whose_state_is_too_narrow_fails_at_inspect(synth):
    cfg = DatasetConfig(name="syn", weight=1.0, path=str(synth), action_mode="delta", absolute_dims=[20])
    with pytest.raises(ValueError, match=rf"dataset 'syn' \(path {synth}\): absolute_dims \[20\] are not action dims"):
        A1DataModule([cfg], OPTS, num_workers=0).inspect()


def test_the_tiny_config_trains_delta_actions(tmp_path, monkeypatch):
    """configs/tiny.yaml (ALOHA-style synthetic robot): delta with the grippers absolute, one real
    training step on its batches."""
    from a1.config import policy_config
    from a1.fit import data_module, parse_config
    from a1.model.policy import InternVLAA1, joint_loss
    from tests.conftest import CONFIGS

    monkeypatch.setenv("A1_CACHE", str(tmp_path))
    dm = data_module(parse_config(["--config", str(CONFIGS / "tiny.yaml")]).data)
    dm.num_workers = 0
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.norms[0].action_mode, dm.norms[0].absolute_dims) == ("delta", GRIPPERS)
    assert dm.describe()[0]["action_mode"] == "delta" and dm.describe()[1]["action_mode"] is None
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    loss = joint_loss(InternVLAA1(policy_config(CONFIGS / "tiny.yaml"))(batch), 0.01)
    assert torch.isfinite(loss)
    loss.backward()


def test_the_stats_and_convert_commands_take_the_action_settings(synth, tmp_path, cache):
    env = {**os.environ, "A1_CACHE": str(cache)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                              check=False, env=env)

    proc = run("a1.data.stats", str(synth), "--action-mode", "delta", "--absolute-dims", "6,13", "--chunk-size", str(K))
    assert proc.returncode == 0, proc.stderr
    _, action, origin = dataset_stats(_delta("syn", synth), K)
    assert origin.startswith("cache ") and origin.removeprefix("cache ") in proc.stdout  # what training reads
    proc = run("a1.data.stats", str(synth), "--action-mode", "delta")
    assert proc.returncode == 2 and "depend on the chunk size" in proc.stderr.strip().splitlines()[-1]
    proc = run("a1.data.convert", str(synth), str(tmp_path / "shards"), "--action-mode", "delta", "--absolute-dims",
               "6,13", "--chunk-size", str(K), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "shards" / "manifest.json").read_text())["stats"]
    assert (stats["action_mode"], stats["absolute_dims"], stats["chunk_size"]) == ("delta", GRIPPERS, K)
    np.testing.assert_allclose(stats["action"]["mean"], action.mean)
