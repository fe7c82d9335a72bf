"""What every teaching notebook (``notebooks/``) sets up first, in one place.

``ROOT = notebook_setup()`` at the top of a notebook returns the repository root (where
``configs/`` lives, so configs resolve whatever folder Jupyter started in) and points ``$A1_CACHE``
at the repository's ``.cache/a1`` unless it is set: a1 keeps the synthetic world and dataset
statistics there, relative to the working directory by default, and a notebook runs from
``notebooks/`` — without this it would regenerate them under ``notebooks/.cache``.
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The a1 repository this package was installed from (``pip install -e .``): the folder holding
    ``configs/tiny.yaml`` above ``a1/``."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "configs" / "tiny.yaml").is_file():
        raise FileNotFoundError(f"{root} has no configs/tiny.yaml: the notebooks need a1 installed from its "
                                "repository (git clone …; pip install -e '.[dev]')")
    return root


def notebook_setup() -> Path:
    """`repo_root`, with ``$A1_CACHE`` defaulting to ``<root>/.cache/a1`` (where ``python -m a1.fit``
    run from the root looks too)."""
    root = repo_root()
    os.environ.setdefault("A1_CACHE", str(root / ".cache" / "a1"))
    return root
