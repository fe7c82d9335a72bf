"""environment.yml mirrors pyproject.toml; the CI script runs the README's commands."""

import re

import tomllib
from omegaconf import OmegaConf

from tests.conftest import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_agrees_with_pyproject():
    project = _pyproject()["project"]
    env = OmegaConf.to_container(OmegaConf.load(ROOT / "environment.yml"))
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    minimum = re.match(r">=(\d+)\.(\d+)", project["requires-python"]).groups()
    assert tuple(int(x) for x in python.split("=")[1].split(".")[:2]) >= tuple(int(x) for x in minimum)
    assert "pip" in deps and "ffmpeg" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    (local,) = [p for p in pip if p.startswith("-e")]
    extras = re.search(r"\[(.*)\]", local).group(1).split(",")
    assert set(extras) <= set(project["optional-dependencies"])
    # Nothing else is pinned in the conda file: every Python dependency comes from pyproject.
    assert pip == [local]


def test_dev_extra_covers_every_extra_but_optional_accelerators():
    extras = _pyproject()["project"]["optional-dependencies"]
    dev = " ".join(extras["dev"])
    for name in extras:
        if name not in ("dev", "video"):
            assert name in dev, f"the dev extra must pull in [{name}]"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"```bash\n(.*?)\n```", readme, re.S).group(1).strip().splitlines()
    install, test, *steps = (line.split("#")[0].strip() for line in block)
    assert install.split("pip install", 1)[1].strip() in ci, "README's install command is not CI's"
    assert test == "python -m pytest -q" and test in ci, "README's test command is not CI's"
    for step in steps:  # further CI steps: the same pytest with a marker, e.g. the notebooks
        args = step.removeprefix(test).strip()
        assert step.startswith(test) and args and args in ci, f"README's {step!r} is not a CI step"


def test_only_a1_is_installed_and_deploy_is_a_folder_of_scripts():
    """No generic top-level ``deploy`` package lands in site-packages (name clash): importable deploy
    code lives in ``a1.deploy``; ``deploy/`` holds scripts and robot YAMLs only."""
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["a1*"]
    assert not (ROOT / "deploy" / "__init__.py").exists()
    scripts = {p.name for p in (ROOT / "deploy").glob("*.py")}
    assert scripts == {"serve.py", "run_robot.py", "benchmark.py"}
    assert {p.stem for p in (ROOT / "deploy" / "robots").glob("*.yaml")} >= {"genie1", "arx_lift2", "arx_ac_one",
                                                                               "aloha", "sim_aloha"}
