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
    for pattern in (
        r"one attention over 155 tokens per sample",  # tiny: 42 + 96 + 17 through one MoT layer
        r"total\s+3\.223B",  # the 3B model's summary
        r"total\s+1\.836B",  # the 2B model's summary
        r"understanding\s+246\s+\(198 image \+ 48 text\)",  # 3B tokens per block
        r"understanding\s+822\s+\(774 image \+ 48 text\)",  # 2B tokens per block
        r"generation\s+96\n\s+state\s+1\n\s+action\s+50\n\s+sequence\s+393",
        r"sequence\s+969",
        r"state row\s+attends to .*generation 96/96, state 1/1, actions 0/16",  # never sees the actions
        r"action row 0\s+attends to .*state 1/1, actions 16/16",
    ):
        assert re.search(pattern, text), f"the architecture tour did not print {pattern!r}"
    assert _count_images(nb) >= 4, "expected the token budget, mask, suffix-row and parameter figures"


def _check_data_and_mixture(nb) -> None:
    text = _stream_text(nb)
    assert "images (3, 3, 3, 64, 64) uint8" in text, "the sample window is not (views, t−m/t/t+m, 3, 64, 64)"
    assert "has actions: False" in text, "the human clip should have no actions"
    tv = re.search(r"total variation from configured: naive ([0-9.]+), a1 ([0-9.]+)", text)
    assert tv, "the mixture cell did not print 'total variation from configured: naive …, a1 …'"
    naive, a1 = map(float, tv.groups())
    assert a1 < 0.01 < naive, f"realized weights: a1 TV {a1} (want < 0.01), naive TV {naive} (want > 0.01)"
    assert _count_images(nb) >= 7, "expected the two frame windows, the action plots and the mixture figures"


def _check_flow_matching(nb) -> None:
    text = _stream_text(nb)
    assert "τ handed to v = [0.0, 0.25, 0.5, 0.75]" in text, "Euler with K = 4 must hand over τ = 0, ¼, ½, ¾"
    landed = {int(k): int(p) for k, p in re.findall(r"K =\s*(\d+): τ handed to v = .*?; (\d+)% of samples land", text)}
    assert {1, 4, 10} <= landed.keys(), f"toy sampling lines missing: {landed}"
    assert landed[1] < 20 and landed[10] >= 60, f"K = 1 should land between the blobs, K = 10 on them: {landed}"
    loss = re.search(r"policy L_act: first 20 steps ([0-9.]+), last 20 steps ([0-9.]+)", text)
    assert loss and float(loss.group(2)) < 0.5 * float(loss.group(1)), "the tiny policy did not learn"
    diff = re.search(r"cached vs full-sequence sampler differ by at most ([0-9.e+-]+)", text)
    assert diff and float(diff.group(1)) < 1e-4, "the cached sampler must match the full-sequence one"
    coef = {int(k): float(c) for k, c in re.findall(r"K =\s*(\d+): mean \|c\| = ([0-9.]+)", text)}
    assert coef[10] > coef[1] + 0.2, f"K = 10 chunks should commit to a demonstration more than K = 1: {coef}"
    assert _count_images(nb) >= 6, "expected the paths, τ histogram, loss, trajectories, field and chunk figures"


def _check_foresight(nb) -> None:
    text = _stream_text(nb)
    values = {}
    for key in ("first latent MSE", "final latent MSE", "hold-still baseline"):
        found = re.search(rf"{key} ([0-9.]+)", text)
        assert found, f"the training cell did not print '{key} …'"
        values[key] = float(found.group(1))
    assert values["final latent MSE"] < values["first latent MSE"], f"L_gen did not fall: {values}"
    assert values["final latent MSE"] < values["hold-still baseline"], f"foresight does not beat 'nothing moves': {values}"
    assert "foresight frames: (8, 3, 3, 64, 64) torch.uint8" in text
    assert _count_images(nb) >= 5, "expected the round trips, the loss curves and the foresight grid"


def _check_train_tiny(nb) -> None:
    from a1.train.metrics_log import read_metrics

    text = _stream_text(nb)
    assert text.count("a1 run finished at step") == 2, "expected the tiny and tiny_nogen runs to finish"
    assert "model: understanding" in text and "global batch" in text, "the start-up report was not printed"
    assert re.search(r"^generation\s+74,112\s+0$", text, re.M), "the parameter table lacks the generation row"
    folders = re.search(r"run folders:\n\s+(\S+)\n\s+(\S+)", text)
    assert folders, "the last cell did not print the two run folders"
    tiny, nogen = (read_metrics(Path(f)) for f in folders.groups())
    gen = tiny["train/loss_gen"].values
    assert gen[-1] < gen[0], f"L_gen did not fall: {gen[0]:.4f} → {gen[-1]:.4f}"
    assert len(tiny["val/action_mse"]) >= 2 and len(nogen["val/action_mse"]) >= 2, "too few validations"
    assert "val/latent_mse" in tiny and "val/latent_mse" not in nogen
    vals = [float(v) for v in re.findall(r"last val/action_mse ([0-9.]+)", text)]
    assert len(vals) == 2 and all(0 < v < 100 for v in vals), vals
    assert _count_images(nb) >= 3, "expected the run, comparison and horizon figures"


def _check_deploy(nb) -> None:
    text = _stream_text(nb)
    assert re.search(r"a1 policy server ready on ws://127\.0\.0\.1:\d+", text), "the server's ready line is missing"
    assert "server exit code: 0" in text and "a1 policy server stopped" in text, "the server did not stop cleanly"
    summary = re.search(r"\{'steps': (\d+), 'requests': (\d+), 'latency_p50_ms': ([0-9.]+)", text)
    assert summary, "the trace summary was not printed"
    steps, requests, p50 = int(summary.group(1)), int(summary.group(2)), float(summary.group(3))
    assert steps == 100 and requests == 13 and p50 > 0, summary.group(0)
    assert "disconnected after 13 request(s)" in text, "the server log does not show the connection"
    assert "'stop_reason': 'finished'" in text
    assert "foresight frames per request: (3, 3, 64, 64) uint8" in text
    assert _count_images(nb) >= 3, "expected the latency, action-chunk and foresight figures"


def _check_closed_loop(nb) -> None:
    text = _stream_text(nb)
    assert "anticipating expert, seed 0: success True" in text, "the anticipating expert should succeed on seed 0"
    assert "static expert, seed 0: success False; stages first reached at {}" in text, "the static expert should miss"
    gaps = dict(re.findall(r"(anticipating|static)\s*: at the close .*? gripper y − cube y =\s*([+-][0-9.]+) cm", text))
    assert abs(float(gaps["anticipating"])) < 2 and float(gaps["static"]) < -5, f"grasp gaps along the belt: {gaps}"
    rows = re.findall(r"^(transfer_cube|conveyor_transfer_cube)\s+(.+?)\s+success (\d+)/(\d+) = .*?"
                      r"\(95% CI\s*(\d+)%–\s*(\d+)%\)", text, re.M)
    scored = {(task, who): (int(k), int(n), int(lo), int(hi)) for task, who, k, n, lo, hi in rows}
    assert len(scored) == 7, f"expected 3 + 4 evaluations, got {sorted(scored)}"
    for task in ("transfer_cube", "conveyor_transfer_cube"):
        assert scored[task, "anticipating expert (upper bound)"] == (2, 2, 34, 100), scored
        for who in ("A1 (generation expert on)", "A1 without generation expert"):
            assert scored[task, who][1] == 2, scored  # random policies: any outcome, 2 episodes
    assert scored["conveyor_transfer_cube", "static expert (conveyor lower bound)"] == (0, 2, 0, 66), scored
    assert text.count("the evaluation's first episode: True") == 3, "a recorded episode differs from the evaluation's"
    assert re.search(r"episode_0\.mp4 \d+ KiB", text), "the evaluation's video was not written"
    videos = [o for c in nb.cells for o in c.get("outputs", []) if "<video" in o.get("data", {}).get("text/html", "")]
    assert len(videos) == 1, "expected one embedded video"
    assert "N =   2: 0/2 → 0%–66%, 1/2 → 9%–91%, 2/2 → 34%–100%" in text
    assert "the two intervals stop overlapping from N = 84 episodes each" in text
    assert _count_images(nb) >= 9, "expected the scenes, filmstrips, key moments, tracks, bars and Wilson figures"


#: Notebook-specific checks of the executed outputs (a notebook without one must still run).
CHECKS = {
    "01_model_tour": _check_model_tour,
    "02_data_and_mixture": _check_data_and_mixture,
    "03_flow_matching": _check_flow_matching,
    "04_foresight": _check_foresight,
    "05_train_tiny": _check_train_tiny,
    "06_deploy": _check_deploy,
    "07_closed_loop": _check_closed_loop,
}


def _require_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(
            f"no Jupyter kernel named {KERNEL!r} is installed, so the notebooks cannot be executed; "
            "install one with: python -m pip install ipykernel && python -m ipykernel install --user"
        )


@pytest.mark.notebooks
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes(source: Path, tmp_path: Path):
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
    # TMPDIR: the notebooks' scratch folders (runs, exports, videos) go to pytest's, not to /tmp.
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{ipynb.name} failed:\n{err}")
    check = CHECKS.get(source.stem)
    if check is not None:
        check(nb)
