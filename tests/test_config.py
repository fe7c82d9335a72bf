"""Strict YAML → dataclass loading: unknown keys and wrong types name the file and key."""

import pytest

from a1.config import ConfigError, from_dict, load_yaml, policy_config
from a1.model.config import PolicyConfig
from tests.conftest import CONFIGS


def test_shipped_model_configs_load():
    for name in ("tiny.yaml", "pretrain_3b.yaml", "pretrain_2b.yaml"):
        cfg = policy_config(CONFIGS / name)
        assert isinstance(cfg, PolicyConfig)
        assert cfg.views == ["head", "left_wrist", "right_wrist"]


def test_environment_interpolation_sets_pretrained_paths(monkeypatch):
    monkeypatch.setenv("A1_QWEN3VL_2B", "/models/Qwen3-VL-2B-Instruct")
    cfg = policy_config(CONFIGS / "pretrain_3b.yaml")
    assert cfg.understanding.pretrained == "/models/Qwen3-VL-2B-Instruct"
    monkeypatch.delenv("A1_QWEN3VL_2B")
    assert policy_config(CONFIGS / "pretrain_3b.yaml").understanding.pretrained is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"action": {"chunk": 3}}, "model.policy.action.chunk"),
        ({"action": {"chunk_size": "fifty"}}, "model.policy.action.chunk_size: expected int"),
        ({"understanding": {"family": "llava"}}, "model.policy.understanding.family"),
        ({"views": "head"}, "model.policy.views: expected a list"),
        ({"generation": []}, "model.policy.generation: expected a mapping"),
    ],
)
def test_bad_keys_and_types_are_named(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        from_dict(PolicyConfig, data, "model.policy")


def test_missing_file_and_section(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")
    f = tmp_path / "x.yaml"
    f.write_text("trainer: {}\n")
    with pytest.raises(ConfigError, match="model.policy"):
        policy_config(f)
    f.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=str(f)):
        load_yaml(f)


def test_shipped_configs_state_the_frame_geometry():
    """No hidden default: every base config sets data.options.geometry (overlays inherit it), and the
    2B stores the 448² frames its InternVL3 reads."""
    for name in ("tiny.yaml", "pretrain_3b.yaml", "pretrain_2b.yaml"):
        options = load_yaml(CONFIGS / name)["data"]["options"]
        assert options["geometry"] == "letterbox", name
    assert load_yaml(CONFIGS / "pretrain_2b.yaml")["data"]["options"]["image_size"] == 448
    assert load_yaml(CONFIGS / "pretrain_3b.yaml")["data"]["options"]["image_size"] == 224  # → 256 in the VLM
