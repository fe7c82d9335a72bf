"""The teaching notebooks: each ``notebooks/*.py`` (jupytext percent source) is paired with an
``.ipynb`` generated from it, and every notebook executes top to bottom on CPU.

Regenerate a notebook after editing its source with
``jupytext --to ipynb notebooks/NAME.py`` (outputs are not stored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="install the notebooks extra: pip install -e '.[notebooks]'")
nbclient = pytest.importorskip("nbclient", reason="install the notebooks extra: pip install -e '.[notebooks]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))
KERNEL = "python3"


def _cells(nb, kind: str) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == kind]


def test_there_are_notebooks():
    assert SOURCES, f"no notebooks/*.py found under {NOTEBOOKS}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_source(source: Path):
    """The .ipynb is the jupytext rendering of the .py: same code and markdown, no outputs."""
    ipynb = source.with_suffix(".ipynb")
    regen = f"regenerate it with: jupytext --to ipynb {source.relative_to(ROOT)}"
    assert ipynb.is_file(), f"{ipynb.relative_to(ROOT)} is missing; {regen}"
    py_nb, ip_nb = jupytext.read(source), jupytext.read(ipynb)
    assert _cells(ip_nb, "code") == _cells(py_nb, "code"), f"code cells of {ipynb.name} differ from {source.name}; {regen}"
    assert _cells(ip_nb, "markdown") == _cells(py_nb, "markdown"), (
        f"markdown cells of {ipynb.name} differ from {source.name}; {regen}"
    )
    stored = [c for c in ip_nb.cells if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not stored, f"{ipynb.name} stores outputs; {regen}"


def _stream_text(nb) -> str:
    """All stdout/stderr text and text/plain results the executed notebook produced."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _count_images(nb) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type == "display_data"
    )


def _check_model_tour(nb) -> None:
    text = _stream_text(nb)
    for word in ("understanding", "generation", "action", "3.223B"):
        assert word in text, f"summary output lacks {word!r}"
    first = re.search(r"first loss ([0-9.]+)", text)
    final = re.search(r"final loss ([0-9.]+)", text)
    assert first and final, "the training cell did not print 'first loss …' and 'final loss …'"
    assert float(final.group(1)) < float(first.group(1)), f"loss did not fall: {first.group(0)}, {final.group(0)}"
    assert "foresight frames: (2, 3, 3, 64, 64) torch.uint8" in text
    assert _count_images(nb) >= 6, "expected the mask, flow, loss and foresight figures"


#: Notebook-specific checks of the executed outputs (a notebook without one must still run).
CHECKS = {"01_model_tour": _check_model_tour}


def _require_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(
            f"no Jupyter kernel named {KERNEL!r} is installed, so the notebooks cannot be executed; "
            "install one with: python -m pip install ipykernel && python -m ipykernel install --user"
        )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes(source: Path):
    """Run the notebook in a fresh kernel with cwd = notebooks/, as a student would."""
    import nbformat

    _require_kernel()
    ipynb = source.with_suffix(".ipynb")
    if not ipynb.is_file():
        pytest.fail(f"{ipynb.relative_to(ROOT)} is missing; run: jupytext --to ipynb {source.relative_to(ROOT)}")
    nb = nbformat.read(ipynb, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    # One intra-op thread: the tiny model gains nothing from more, and on a shared CPU (CI, or
    # other test processes) torch's OpenMP threads stall behind each other — up to 3× slower.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{ipynb.name} failed:\n{err}")
    check = CHECKS.get(source.stem)
    if check is not None:
        check(nb)
