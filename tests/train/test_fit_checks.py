"""``python -m a1.fit`` fails fast (before any model is built) with one line naming the key and the fix,
and a run's outputs all go to its run folder."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a1.fit import main, parse_config
from tests.conftest import CONFIGS, ROOT

TINY, P3B, P2B = (str(CONFIGS / name) for name in ("tiny.yaml", "pretrain_3b.yaml", "pretrain_2b.yaml"))
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto", "--trainer.precision=32-true"]
FIXTURE = ROOT / "tests" / "fixtures" / "lerobot_v30_aloha"
CLUSTER_VARS = ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "LSB_JOBID", "MASTER_ADDR",
                "OMPI_COMM_WORLD_SIZE", "WORLD_SIZE", "LOCAL_RANK", "RANK")


def _fails(capsys, *args: str) -> str:
    """Run the CLI in-process; it must exit 2 with an ``error:`` line; returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err[-2000:]
    return err


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch):
    for var in CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)


def test_3b_config_on_a_cpu_machine_exits_within_seconds_naming_the_gpu(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "a1.fit", "--config", P3B,
                           f"--trainer.default_root_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k not in CLUSTER_VARS})
    seconds = time.perf_counter() - start
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "GPU" in last and "configs/tiny.yaml" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert seconds < 60  # mostly imports; the 3B model is never built (that alone takes ~65 s)


def test_multi_node_outside_a_cluster_does_not_hang(capsys, tmp_path):
    err = _fails(capsys, "--config", P3B, *CPU, f"--trainer.default_root_dir={tmp_path}")
    assert "trainer.num_nodes=8" in err and "srun or torchrun" in err


def test_missing_data_folders_name_the_variable(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("A1_DATA_ROOT", str(tmp_path / "nowhere"))
    err = _fails(capsys, "--config", P3B, *CPU, "--trainer.num_nodes=1", f"--trainer.default_root_dir={tmp_path}")
    assert "A1_DATA_ROOT" in err and "InternData-A1" in err and str(tmp_path / "nowhere") in err


@pytest.mark.parametrize("override, key", [
    ("--data.batch_size=-4", "data.batch_size"),
    ("--trainer.max_steps=0", "trainer.max_steps"),
    ("--trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
    ("--model.optim.lr=-1", "optim.lr"),
])
def test_invalid_numbers_are_named(capsys, tmp_path, override, key):
    err = _fails(capsys, "--config", TINY, override, f"--trainer.default_root_dir={tmp_path}")
    assert key in err


def test_abbreviated_and_unknown_keys_are_errors(capsys):
    with pytest.raises(SystemExit):
        main(["--config", TINY, "--trainer.max_step=5"])
    assert "max_step=5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", TINY, "--model.optim.grad_clip=1.0"])  # one clipping setting: trainer.gradient_clip_val
    with pytest.raises(SystemExit):
        main(["--config", TINY, "--optimizer=torch.optim.SGD"])  # the optimizer lives in model.optim


def test_aloha_camera_names_with_default_views_are_refused(capsys, tmp_path):
    overlay = tmp_path / "aloha.yaml"
    overlay.write_text(f"data:\n  datasets:\n    - {{name: aloha, weight: 1.0, path: {FIXTURE}}}\n")
    err = _fails(capsys, "--config", TINY, "--config", str(overlay), f"--trainer.default_root_dir={tmp_path / 'run'}")
    assert "aloha" in err and "observation.images.cam_high" in err and "head: observation.images.cam_high" in err


def test_data_options_are_linked_from_the_model():
    cfg = parse_config(["--config", TINY, "--model.policy.action.chunk_size=8",
                        "--model.policy.views=[head, left_wrist]"])
    assert cfg.data.options.chunk_size == 8 and cfg.data.options.views == ["head", "left_wrist"]
    assert cfg.data.options.max_dim == cfg.model.policy.action.max_dim


@pytest.mark.parametrize("layers, check", [
    (["tiny.yaml", "tiny_nogen.yaml"], lambda c: not c.model.policy.generation.enabled),
    (["pretrain_3b.yaml", "posttrain_3b.yaml"],
     lambda c: c.data.batch_size == 16 and c.model.optim.schedule == "warmup_cosine" and c.trainer.num_nodes == 1),
    (["pretrain_3b.yaml", "posttrain_3b.yaml", "posttrain_robotwin_3b.yaml"],
     lambda c: c.data.datasets[0].cameras["head"] == "observation.images.cam_high" and c.data.batch_size == 16),
    (["pretrain_2b.yaml"], lambda c: c.model.policy.understanding.family == "internvl"),
    (["tiny.yaml", "sim_aloha.yaml"], lambda c: c.data.synthetic is None and c.data.options.chunk_size == 32
     and [d.name for d in c.data.datasets] == ["transfer_cube", "conveyor_transfer_cube"]
     and c.data.options.image_size == c.model.policy.understanding.image_size == 96),
    (["tiny.yaml", "sim_aloha.yaml", "sim_aloha_nogen.yaml"],
     lambda c: not c.model.policy.generation.enabled and c.data.options.chunk_size == 32),
    (["tiny.yaml", "sim_aloha.yaml", "sim_aloha_gpu.yaml"],
     lambda c: c.model.policy.action.expert.num_layers == c.model.policy.understanding.text["num_hidden_layers"] == 8
     and c.trainer.precision == "bf16-mixed" and c.data.options.image_size == 128),
])
def test_overlays_layer_on_their_base(layers, check):
    cfg = parse_config([a for name in layers for a in ("--config", str(CONFIGS / name))])
    assert check(cfg)


def test_outputs_in_one_run_folder_and_no_silent_overwrite(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("A1_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["--config", TINY, f"--trainer.default_root_dir={run}", "--trainer.max_steps=3", "--data.num_workers=0",
            "--data.batch_size=2", "--trainer.val_check_interval=3", "--trainer.log_every_n_steps=1",
            "--trainer.enable_model_summary=false"]
    main(args)
    names = {p.name for p in run.iterdir()}
    assert {"metrics.csv", "tensorboard", "checkpoints", "config.yaml", "startup_report.json",
            "closing_report.json"} <= names
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (Path.cwd() / "lightning_logs").exists()
    report = json.loads((run / "startup_report.json").read_text())
    robot, human = report["datasets"]
    assert robot["views"]["found"] == {v: f"observation.images.{v}" for v in ("head", "left_wrist", "right_wrist")}
    assert robot["state_dim"] == robot["action_dim"] == 14 and robot["stats"]
    assert robot["episodes"]["train"] > 0 and robot["episodes"]["val"] > 0
    assert human["views"]["missing"] == ["left_wrist", "right_wrist"] and human["action_dim"] is None
    assert robot["weight"]["realised"] == pytest.approx(0.8)
    assert report["global_batch"]["samples_per_step"] == 2
    assert report["model"]["total"]["parameters"] > report["model"]["total"]["trainable"] > 0
    closing = json.loads((run / "closing_report.json").read_text())
    assert closing["status"] == "finished" and closing["final_step"] == 3
    err = capsys.readouterr().err
    assert "dataset synthetic_robot" in err and "global batch 2" in err
    err = _fails(capsys, *args)  # a fresh run into a used folder would overwrite it
    assert "--ckpt_path last" in err
    shutil.rmtree(run)


def test_undecodable_video_stops_the_run_naming_the_file(tmp_path):
    """A camera mp4 replaced by random bytes: the run ends with an error naming the dataset and the
    file — not minutes of skip lines and zero steps."""
    from a1.sim.synthetic import generate

    robot = generate(tmp_path / "data", episodes=4, human_clips=0, image_size=32, frames_per_episode=36)["robot"]
    video = sorted((robot / "videos").rglob("*.mp4"))[0]
    video.write_bytes(os.urandom(video.stat().st_size))
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(f"data:\n  datasets:\n    - {{name: broken, weight: 1.0, path: {robot}}}\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "a1.fit", "--config", TINY, "--config", str(overlay),
                           f"--trainer.default_root_dir={tmp_path / 'run'}", "--data.num_workers=2",
                           "--trainer.enable_model_summary=false"], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env={k: v for k, v in os.environ.items() if k not in CLUSTER_VARS})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert time.perf_counter() - start < 60
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "BadDatasetError" in last and "'broken'" in last and video.name in last, last
    assert len(proc.stderr) < 100_000  # bounded logging
    assert json.loads((tmp_path / "run" / "closing_report.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("args, message", [
    ([P2B, "--data.options.image_size=224"], ("data.options.image_size=224 is too small for "
                                              "model.policy.understanding.image_size=448.*--data.options.image_size=448")),
    ([TINY, "--data.options.image_size=48"], ("data.options.image_size=48 is too small for "
                                              "model.policy.understanding.image_size=64")),
    ([TINY, "--model.policy.understanding.image_size=48", "--data.options.image_size=48"],
     "model.policy.generation.image_size=64"),
])
def test_frames_smaller_than_an_expert_reads_are_refused(capsys, tmp_path, args, message):
    err = _fails(capsys, "--config", *args, f"--trainer.default_root_dir={tmp_path}")
    assert re.search(message, err), err


def test_the_official_224_to_256_upsampling_is_allowed(capsys, tmp_path):
    """3B: 224² frames for Qwen3-VL's and Cosmos's 256² inputs (the official recipe) pass the frame check
    (the run then stops at the hardware check: more GPUs than any machine has); so do 2B at 448² and
    tiny at 56² (= 64 · 224/256, the limit)."""
    for args in ([P3B], [P2B], [TINY, "--data.options.image_size=56", "--trainer.accelerator=gpu"]):
        err = _fails(capsys, "--config", *args, "--trainer.devices=4096", f"--trainer.default_root_dir={tmp_path}")
        assert "too small" not in err and "GPU" in err, err


def test_shards_made_with_another_geometry_are_refused_before_the_model(capsys, tmp_path):
    from a1.data.convert import convert
    from a1.data.sources import DatasetConfig
    from a1.sim.synthetic import generate

    robot = generate(tmp_path / "data", episodes=2, human_clips=0, image_size=32, frames_per_episode=20)["robot"]
    shards = tmp_path / "shards"
    convert(DatasetConfig(name="robot", weight=1.0, path=str(robot)), shards, ["head", "left_wrist", "right_wrist"],
            image_size=64, geometry="stretch", progress=False)
    overlay = tmp_path / "shards.yaml"
    overlay.write_text(f"data:\n  datasets:\n    - {{name: robot, weight: 1.0, shards: {shards}}}\n")
    err = _fails(capsys, "--config", TINY, "--config", str(overlay), f"--trainer.default_root_dir={tmp_path / 'run'}")
    assert "geometry 'stretch'" in err and "data.options.geometry is 'letterbox'" in err and str(shards) in err
    assert not (tmp_path / "run").exists()  # nothing was built or written


def test_an_overlay_changes_one_key_of_a_dict_field_and_keeps_the_rest(tmp_path):
    """``understanding.vision``/``text``/``model`` are dicts (transformers keywords): a later --config
    layers them key by key, like every other section and like `a1.config.load_yaml` (the reader of
    a1.model.summary); a dotted override after it still wins."""
    from a1.config import load_yaml

    overlay = tmp_path / "vision.yaml"
    overlay.write_text("model:\n  policy:\n    understanding:\n      vision: {num_position_embeddings: 36}\n"
                       "      text: {num_hidden_layers: 3}\n")
    cfg = parse_config(["--config", TINY, "--config", str(overlay), "--model.policy.understanding.text.head_dim=8"])
    und = cfg.model.policy.understanding
    base = load_yaml(TINY)["model"]["policy"]["understanding"]
    assert und.vision == {**base["vision"], "num_position_embeddings": 36}
    assert und.text == {**base["text"], "num_hidden_layers": 3, "head_dim": 8}
    assert und.model == base["model"]
    assert load_yaml(TINY, overlay)["model"]["policy"]["understanding"]["vision"] == und.vision
    short = parse_config(["-c", TINY, f"-c={overlay}"]).model.policy.understanding  # LightningCLI's -c alias
    assert short.vision == und.vision and short.text == {**base["text"], "num_hidden_layers": 3}
