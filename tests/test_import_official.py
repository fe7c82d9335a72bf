"""`python -m a1.import_official` against what the official InternVLA-A1 code computed on a tiny
random checkpoint (tests/fixtures/official_a1: made by running the official code, see its README):
same raw inputs and noise → the same normalised and raw actions, the same training losses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from a1.data.collate import Collator
from a1.data.sample import Sample, fit_frames
from a1.deploy.runtime import PolicyRuntime, RuntimeOptions
from a1.import_official import OfficialImportError, RobotChoice, import_official
from a1.model.policy import joint_loss
from a1.policy_folder import load_policy
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "official_a1"
CONFIG, TOKENIZER, CHECKPOINT = FIXTURE / "a1_policy.yaml", FIXTURE / "qwen3_vl", FIXTURE / "checkpoint"
VIEWS = ["head", "left_wrist", "right_wrist"]  # official image0, image1, image2
ATOL = 1e-5  # the bar is 1e-4; measured ~1e-6
GRIPPERS = RobotChoice(absolute_dims=[6, 13])  # "aloha_tiny" is not an official robot type


@pytest.fixture(scope="module")
def cases():
    return load_file(str(FIXTURE / "cases.safetensors")), json.loads((FIXTURE / "cases.json").read_text())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The fixture's official checkpoint imported by the command line, as a user runs it."""
    out = tmp_path_factory.mktemp("imported") / "policy"
    cmd = [sys.executable, "-m", "a1.import_official", str(CHECKPOINT), str(out), "--config", str(CONFIG),
           "--tokenizer", str(TOKENIZER), "--absolute-dims", "6,13"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def _raw(c, views=VIEWS):
    return {"images": {v: c[f"full/view{VIEWS.index(v)}_frames"].numpy() for v in views},
            "state": c["full/state"].numpy(), "prompt": "fold the blue towel and put it away"}


def test_the_folder_records_the_official_conventions(imported):
    doc = json.loads((imported / "config.json").read_text())
    und = doc["policy"]["understanding"]
    assert (und["deepstack"], und["positions"], und["rotary_precision"]) == (False, "compact", "bfloat16")
    assert doc["processor"] == {"image_size": 224, "history": 15, "geometry": "letterbox"}
    norm = json.loads((imported / "normalization.json").read_text())["aloha_tiny"]
    assert (norm["mode"], norm["action_mode"], norm["absolute_dims"]) == ("mean_std_eps", "delta", [6, 13])
    assert "q01" not in norm["state"]  # stats.json has no quantiles


def test_actions_equal_the_official_code(imported, cases):
    c, _ = cases
    loaded = load_policy(imported)
    proc = loaded.processor()
    raw = proc.parse(_raw(c))
    obs = proc.observation(raw)
    for i in range(3):  # the letterbox of frame t, as the official transform made it (0–1 there)
        torch.testing.assert_close(obs.images[0, i, 1] / 255.0, c[f"full/view{i}_letterbox_t"], rtol=0, atol=2e-6)
    torch.testing.assert_close(obs.state[0, :14], c["full/state_norm"], rtol=0, atol=1e-6)
    chunk = loaded.policy.sample_actions(obs, noise=c["full/noise"])
    torch.testing.assert_close(chunk, c["full/actions_norm32"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(proc.raw_actions(chunk, raw.state), c["full/actions_raw"].numpy(), rtol=0, atol=ATOL)
    # the one-call API gives the same raw (absolute) actions
    got = loaded.infer(_raw(c), noise=c["full/noise"])
    np.testing.assert_allclose(got, c["full/actions_raw"].numpy(), rtol=0, atol=ATOL)


def test_a_missing_view_equals_the_official_code(imported, cases):
    c, _ = cases
    loaded = load_policy(imported)
    proc = loaded.processor(absent_views=("right_wrist",))
    raw = proc.parse(_raw(c, VIEWS[:2]))
    obs = proc.observation(raw)
    prefix = loaded.policy.prefix(obs)
    valid, official = prefix.valid[0], c["missing_view/position_ids"][:, : prefix.valid.shape[1]]
    assert torch.equal(prefix.positions[:, 0][:, valid], official[:, valid])  # compacted
    chunk = loaded.policy.sample_actions(obs, noise=c["full/noise"])
    torch.testing.assert_close(chunk, c["missing_view/actions_norm32"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(proc.raw_actions(chunk, raw.state), c["missing_view/actions_raw"].numpy(),
                               rtol=0, atol=ATOL)


def test_training_losses_equal_the_official_code(imported, cases):
    """One fixed batch, fixed noise and time: the delta actions, the normalisation and both losses."""
    c, meta = cases
    loaded = load_policy(imported)
    norm = loaded.normalization["aloha_tiny"]
    samples = []
    for b, prompt in enumerate(meta["cases"]["train"]["prompts"]):
        frames = [fit_frames(c[f"train/sample{b}_view{i}_frames"].numpy().transpose(0, 3, 1, 2), 224, "letterbox")
                  for i in range(3)]  # t−15, t, t+15, float as in the official transforms
        samples.append(Sample(prompt, np.stack(frames), np.ones((3, 3), bool), c["train/state"][b].numpy(),
                              c["train/actions"][b].numpy(), np.ones(50, bool), 0, f"train/{b}"))
    batch = Collator(loaded.tokenizer, 48, 50, 32, {0: norm})(samples)
    torch.testing.assert_close(batch.actions, c["train/actions_norm"], rtol=0, atol=1e-6)
    torch.testing.assert_close(batch.observation.state, c["train/state_norm"], rtol=0, atol=1e-6)
    policy = loaded.policy.train()
    losses = policy(batch, noise=c["train/noise"], tau=1.0 - c["train/time"])  # official t = 1 − τ
    assert losses.act.mean().item() == pytest.approx(c["train/loss_action"].item(), rel=1e-5)
    assert losses.gen.mean().item() == pytest.approx(c["train/loss_gen"].item(), rel=1e-5)
    assert joint_loss(losses, 0.01).item() == pytest.approx(c["train/loss"].item(), rel=1e-5)


def test_the_deploy_runtime_serves_the_official_actions(imported, cases):
    c, _ = cases
    runtime = PolicyRuntime.load(imported, options=RuntimeOptions(compile=False, device="cpu", warmup=0))
    chunk = runtime.plan(runtime.processor.parse(_raw(c)), noise=c["full/noise"])
    np.testing.assert_allclose(chunk.actions, c["full/actions_raw"].numpy(), rtol=0, atol=ATOL)
    fast = PolicyRuntime.load(imported, options=RuntimeOptions(compile=False, device="cpu", warmup=0,
                                                               tokenizer_dtype="bfloat16"))
    assert fast.policy.foresight.tokenizer.quant_conv.weight.dtype == torch.bfloat16
    chunk = fast.plan(fast.processor.parse(_raw(c)), noise=c["full/noise"])
    # bf16 Cosmos is not reproducible across implementations (official bf16 vs fp32: 6.9e-3)
    official_bf16 = c["full_bf16/actions_raw"].numpy()
    assert np.abs(chunk.actions - official_bf16).max() < 3e-2


# --- errors name the file and the key --------------------------------------------------------------
def _copy(tmp_path):
    src = tmp_path / "official"
    shutil.copytree(CHECKPOINT, src)
    return src


def test_a_missing_or_misshapen_weight_is_named(tmp_path):
    src = _copy(tmp_path)
    weights = load_file(str(src / "model.safetensors"))
    gone = "model.action_out_proj.bias"
    weights.pop(gone)
    key = "model.state_proj.weight"
    weights[key] = weights[key][:, :16].contiguous()
    save_file(weights, str(src / "model.safetensors"))
    with pytest.raises(OfficialImportError) as err:
        import_official(src, tmp_path / "out", CONFIG, TOKENIZER, GRIPPERS)
    msg = str(err.value)
    assert "model.safetensors" in msg and f"missing key {gone}" in msg
    assert f"{key}: shape (32, 16), a1 action_head.state_proj.weight expects (32, 32)" in msg


def test_settings_that_disagree_are_named(tmp_path):
    src = _copy(tmp_path)
    doc = json.loads((src / "config.json").read_text())
    doc["chunk_size"] = 30
    (src / "config.json").write_text(json.dumps(doc))
    with pytest.raises(OfficialImportError, match=r"config.json: chunk_size = 30, but .* model.policy.action.chunk_size = 50"):
        import_official(src, tmp_path / "out", CONFIG, TOKENIZER, GRIPPERS)
    doc["type"] = "pi0"
    (src / "config.json").write_text(json.dumps(doc))
    with pytest.raises(OfficialImportError, match="type 'qwena1'"):
        import_official(src, tmp_path / "out", CONFIG, TOKENIZER)


def test_statistics_and_robot_type_problems_are_named(tmp_path):
    with pytest.raises(OfficialImportError, match="no robot type 'genie1'.*aloha_tiny"):
        import_official(CHECKPOINT, tmp_path / "out", CONFIG, TOKENIZER, RobotChoice(robot_type="genie1"))
    with pytest.raises(OfficialImportError, match="no known gripper dims.*--absolute-dims"):
        import_official(CHECKPOINT, tmp_path / "out", CONFIG, TOKENIZER)  # delta, robot type not in the table
    with pytest.raises(OfficialImportError, match="no feature 'observation.states.joint'"):
        import_official(CHECKPOINT, tmp_path / "out", CONFIG, TOKENIZER,
                        RobotChoice(absolute_dims=[6, 13], state_features=["observation.states.joint"]))
    src = _copy(tmp_path)
    (src / "stats.json").write_text("{not json")
    with pytest.raises(OfficialImportError, match="stats.json: not valid JSON"):
        import_official(src, tmp_path / "out2", CONFIG, TOKENIZER, GRIPPERS)


def test_the_command_line_reports_errors_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "a1.import_official", str(tmp_path / "nothing"), str(tmp_path / "o"),
                           "--config", str(CONFIG)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_every_key_of_the_3b_model_has_an_official_name():
    """The 3B architecture (configs/pretrain_3b.yaml, on the meta device): every a1 weight comes from
    one official prefix, and the official key names of the tiny checkpoint map onto a1's 3B modules."""
    from a1.config import policy_config
    from a1.import_official import PREFIXES, _build_meta, a1_key, official_policy_config
    from a1.model.prompt import byte_tokenizer

    cfg = official_policy_config(policy_config(ROOT / "configs" / "pretrain_3b.yaml"))
    cfg.understanding.pretrained = None
    model = _build_meta(cfg, byte_tokenizer())
    keys = set(model.state_dict())
    unmapped = [k for k in keys if not any(k.startswith(new) for _, new in PREFIXES)]
    assert unmapped == []
    official = [line.split()[0] for line in (FIXTURE / "keys.txt").read_text().splitlines() if line.startswith("model.")]
    names = {a1_key(k) for k in official} - {None}
    layer = lambda k: ".".join("N" if p.isdigit() else p for p in k.split("."))  # noqa: E731
    tiny = {layer(k) for k in names if not k.endswith(("wavelets", "_arange"))}
    big = {layer(k) for k in keys}
    assert tiny <= big | {layer("understanding.backbone.lm_head.weight")}


def test_cosmos_keys_are_named_exactly_and_unknown_keys_refused(tmp_path):
    src = _copy(tmp_path)
    weights = load_file(str(src / "model.safetensors"))
    weights.pop("model.cosmos._enc_model.quant_conv.weight")
    weights["model.cosmos._enc_model.decoder.conv_in.weight"] = torch.zeros(1)  # decoder keys live in _dec_model
    weights["model.extra_head.weight"] = torch.zeros(1)
    save_file(weights, str(src / "model.safetensors"))
    with pytest.raises(OfficialImportError) as err:
        import_official(src, tmp_path / "out", CONFIG, TOKENIZER, GRIPPERS)
    msg = str(err.value)
    assert "missing key model.cosmos._enc_model.quant_conv.weight" in msg
    assert "unknown key model.cosmos._enc_model.decoder.conv_in.weight" in msg
    assert "unknown key model.extra_head.weight" in msg


def test_action_mode_comes_from_train_config(tmp_path, imported):
    src = _copy(tmp_path)
    doc = json.loads((src / "train_config.json").read_text())
    doc["dataset"]["action_mode"] = "abs"
    (src / "train_config.json").write_text(json.dumps(doc))
    import_official(src, tmp_path / "abs", CONFIG, TOKENIZER)  # absolute: no gripper dims needed
    norm = json.loads((tmp_path / "abs" / "normalization.json").read_text())["aloha_tiny"]
    assert (norm["action_mode"], norm["absolute_dims"]) == ("absolute", [])
    doc["dataset"]["action_mode"] = "relative"
    (src / "train_config.json").write_text(json.dumps(doc))
    with pytest.raises(OfficialImportError, match="action_mode = 'relative', expected 'abs' or 'delta'"):
        import_official(src, tmp_path / "bad", CONFIG, TOKENIZER)
    (src / "train_config.json").unlink()
    with pytest.raises(OfficialImportError, match="no train_config.json.*--action-mode"):
        import_official(src, tmp_path / "none", CONFIG, TOKENIZER)
    import_official(src, tmp_path / "flag", CONFIG, TOKENIZER, RobotChoice(action_mode="delta", absolute_dims=[6, 13]))
    got, want = load_file(str(tmp_path / "flag" / "model.safetensors")), load_file(str(imported / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_the_official_folder_and_existing_outputs_are_never_overwritten(tmp_path):
    src = _copy(tmp_path)
    before = (src / "model.safetensors").read_bytes()
    with pytest.raises(OfficialImportError, match="must not be .inside. the official folder"):
        import_official(src, src, CONFIG, TOKENIZER, GRIPPERS)
    with pytest.raises(OfficialImportError, match="must not be .inside. the official folder"):
        import_official(src, src / "a1", CONFIG, TOKENIZER, GRIPPERS)
    assert (src / "model.safetensors").read_bytes() == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OfficialImportError, match="exists and is not empty.*--overwrite"):
        import_official(src, out, CONFIG, TOKENIZER, GRIPPERS)
    import_official(src, out, CONFIG, TOKENIZER, GRIPPERS, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()


def test_a_generation_kernel_that_disagrees_is_named(tmp_path):
    src = _copy(tmp_path)
    doc = json.loads((src / "config.json").read_text())
    doc["scale_factor"] = 4
    (src / "config.json").write_text(json.dumps(doc))
    with pytest.raises(OfficialImportError, match="scale_factor = 4 .* gives 8"):
        import_official(src, tmp_path / "out", CONFIG, TOKENIZER, GRIPPERS)


def test_a_float32_tokenizer_under_a_bf16_runtime_keeps_its_exact_weights(imported):
    """The tokenizer goes from its loaded float32 straight to tokenizer_dtype: never through bf16."""
    want = load_policy(imported).policy.foresight.tokenizer.state_dict(keep_vars=False)
    runtime = PolicyRuntime.load(imported, options=RuntimeOptions(compile=False, device="cpu", warmup=0,
                                                                  dtype="bfloat16", tokenizer_dtype="float32"))
    policy = runtime.policy
    assert policy.action_head.action_out.weight.dtype == torch.bfloat16
    got = policy.foresight.tokenizer.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    taps = [b for n, b in policy.foresight.tokenizer.named_buffers() if n.endswith("wavelets")]
    exact = torch.tensor(0.5**0.5)  # float32, not the bf16 0.70703125
    assert taps and all(t.dtype == torch.float32 and torch.equal(t, exact.expand(2)) for t in taps)
