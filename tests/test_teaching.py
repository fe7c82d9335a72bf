"""`a1.teaching.notebook_setup`: what every notebook runs first."""

from __future__ import annotations

from a1.teaching import notebook_setup
from tests.conftest import ROOT


def test_notebook_setup_finds_the_repository_and_its_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("A1_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)  # wherever Jupyter was started
    import os

    assert notebook_setup() == ROOT and os.environ["A1_CACHE"] == str(ROOT / ".cache" / "a1")
    monkeypatch.setenv("A1_CACHE", str(tmp_path / "mine"))
    notebook_setup()
    assert os.environ["A1_CACHE"] == str(tmp_path / "mine")  # a user's choice is kept
