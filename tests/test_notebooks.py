"""The example notebooks: stored executed and in sync with their jupytext sources; re-executed.

Each notebook's source is ``notebooks/NN_name.py`` (jupytext percent format, linted by ruff);
the ``.ipynb`` beside it is generated from it and stored with the outputs of a run on phantoms
(at the settings of :data:`CASES`, in an injected-parameters cell). The execution tests run each notebook with tiny settings injected after
its ``parameters`` cell (papermill's convention, without papermill), in a temporary working
folder, on a kernel spec that points at this interpreter (so the kernel sees the same venv):
on phantoms, and notebooks 01 and 02 on a small subset of the real pools in ../shared/data.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
KERNEL_NAME = "kidney-tf-test"
REQUIRED_PARAMETERS = {"DATA_DIR", "QUICK", "EPOCHS", "OUT_DIR", "IMAGE_SIZE"}
#: A stored notebook is read on GitHub: keep its figures small.
MAX_STORED_BYTES = 1_500_000
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ------------------------------------------------------------------------------------ helpers
def inject_parameters(nb: nbformat.NotebookNode, parameters: dict) -> nbformat.NotebookNode:
    """Insert a cell tagged ``injected-parameters`` right after the ``parameters`` cell.

    Papermill's convention: the notebook's defaults stay visible, the injected values win
    because they run later. Values are written with ``repr`` (str, numbers, None, bools).
    """
    index = parameters_cell_index(nb)
    source = "# Parameters injected by tests/test_notebooks.py\n" + "".join(
        f"{name} = {value!r}\n" for name, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    cell.id = "injected-parameters"
    nb.cells.insert(index + 1, cell)
    return nb


def parameters_cell_index(nb: nbformat.NotebookNode) -> int:
    """Index of the single code cell tagged ``parameters``."""
    found = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])
    ]
    if len(found) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(found)}")
    return found[0]


def install_kernel_spec(jupyter_dir: Path) -> None:
    """A kernel spec running ipykernel on *this* interpreter (the venv), under ``jupyter_dir``."""
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kidney_tf tests",
        "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def execute_notebook(
    path: Path, parameters: dict, *, workdir: Path, timeout: int
) -> tuple[nbformat.NotebookNode, float]:
    """Run ``path`` with ``parameters`` injected, in ``workdir``; return it and the seconds taken.

    ``timeout`` bounds every cell (nbclient); returns the notebook and its total runtime.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # only this run's outputs and parameters count, not the stored ones
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb = inject_parameters(nb, parameters)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def python_source(source: str) -> str:
    """A cell's source with IPython syntax (``%magics``) turned into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def parameter_names(nb: nbformat.NotebookNode) -> set[str]:
    tree = ast.parse(nb.cells[parameters_cell_index(nb)].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


def code_outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def inline_images(nb: nbformat.NotebookNode) -> list:
    data = [o.get("data", {}) for o in code_outputs(nb)]
    return [d for d in data if "image/png" in d or "image/jpeg" in d]


def errors(nb: nbformat.NotebookNode) -> list[str]:
    """Error outputs and tracebacks printed to stderr, as one line each."""
    found = []
    for o in code_outputs(nb):
        if o.output_type == "error":
            found.append(f"{o.ename}: {o.evalue}")
        elif o.output_type == "stream" and "Traceback (most recent call last)" in o.text:
            found.append(o.text.strip().splitlines()[-1])
    return found


# ---------------------------------------------------------------------------------- fast tests
def test_three_notebooks_exist_each_with_its_source():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_kidney_ct_cam_fostering.ipynb",
        "02_brain_mri_efficientnetb1.ipynb",
        "03_explainability.ipynb",
    ]
    assert [p.with_suffix(".ipynb") for p in SOURCES] == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_executed_without_errors_and_shows_its_figures(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for cell in code:
        ast.parse(python_source(cell.source))  # every code cell is valid (IPython) Python
    # one kernel, top to bottom: execution counts 1, 2, 3, ...
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name} is not stored executed top to bottom (see notebooks/README.md)"
    )
    assert not errors(nb), f"{path.name}: stored outputs show errors: {errors(nb)}"
    min_figures = CASES[path.stem][2]
    assert len(inline_images(nb)) >= min_figures, f"{path.name}: too few stored figures"
    assert path.stat().st_size <= MAX_STORED_BYTES, f"{path.name}: lower the figures' dpi"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert parameter_names(nb) >= REQUIRED_PARAMETERS
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    # settings other than the parameters cell's stand, visibly, in the cell papermill injects
    injected = [
        i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", [])
    ]
    assert injected in ([], [parameters_cell_index(nb) + 1])
    if injected:
        tree = ast.parse(nb.cells[injected[0]].source)
        names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
        assert names <= parameter_names(nb), names - parameter_names(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_sync_with_its_source(path):
    source = jupytext.read(path.with_suffix(".py"))
    stored = nbformat.read(path, as_version=4)

    def cells(nb):
        return [
            (c.cell_type, c.source, c.metadata.get("tags", []))
            for c in nb.cells
            if "injected-parameters" not in c.metadata.get("tags", [])
        ]

    assert cells(stored) == cells(source), (
        f"{path.name} is out of date with {path.stem}.py: regenerate it (notebooks/README.md)"
    )


def test_inject_parameters_follows_the_parameters_cell():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("A = 1")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells.append(nbformat.v4.new_code_cell("print(A)"))
    inject_parameters(nb, {"A": 2, "B": None, "C": "x"})
    assert [c.source.splitlines()[-1] for c in nb.cells[1:3]] == ["A = 1", "C = 'x'"]
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]
    scope: dict = {}
    for cell in nb.cells[1:3]:
        exec(cell.source, scope)
    assert (scope["A"], scope["B"], scope["C"]) == (2, None, "x")
    nb.cells[0] = nbformat.v4.new_code_cell("")
    nb.cells[0].metadata["tags"] = ["parameters"]
    with pytest.raises(ValueError, match="exactly one"):
        inject_parameters(nb, {"A": 3})


# ------------------------------------------------------------------------------ executed tests
# Per notebook: injected smoke-test settings, per-cell timeout (s; a hang guard, not a speed
# check: the runtime is only recorded; on 2 cores busy with a training one training cell took
# over 600 s), figures it must display inline, files it must have written. The stored notebooks
# are runs at these settings (their injected-parameters cell says so).
CASES = {
    "01_kidney_ct_cam_fostering": (
        {"IMAGE_SIZE": 64, "EPOCHS": 2, "FINETUNE_EPOCHS": 1, "PER_CLASS": 8, "BATCH_SIZE": 8},
        1200,
        8,
        [
            "figures/class_distribution.png",
            "figures/crop_pairs.png",
            "baseline_curves.png",
            "fostered_curves.png",
            "reports/baseline/metrics.json",
            "reports/fostered/metrics.json",
            "reports/comparison/comparison.json",
            "fostered.keras",
            "export/kidney_ct/1/saved_model.pb",
        ],
    ),
    "02_brain_mri_efficientnetb1": (
        {"IMAGE_SIZE": 64, "EPOCHS": 1, "FREEZE_EPOCHS": 0, "PER_CLASS": 8, "BATCH_SIZE": 8},
        1200,
        7,
        [
            "figures/samples.png",
            "figures/augmentation.png",
            "curves.png",
            "report/confusion_matrix.png",
            "report/classification_report.txt",
            "report/cam_overlays_gradcam.png",
        ],
    ),
    "03_explainability": (
        {"IMAGE_SIZE": 64, "EPOCHS": 1, "PER_CLASS": 8, "N_IMAGES": 8},
        1200,
        5,
        ["run/model.keras", "run/curves.png", "reliability.png"],
    ),
}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, record_property):
    parameters, cell_timeout, min_figures, expected_files = CASES[path.stem]
    jupyter_dir, workdir, out = tmp_path / "jupyter", tmp_path / "work", tmp_path / "out"
    install_kernel_spec(jupyter_dir)
    workdir.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    parameters = {"DATA_DIR": None, "QUICK": True, "OUT_DIR": str(out), **parameters}

    nb, seconds = execute_notebook(path, parameters, workdir=workdir, timeout=cell_timeout)

    record_property("runtime_s", round(seconds, 1))
    print(f"{path.name}: {seconds:.0f} s")
    assert not errors(nb), errors(nb)
    images = inline_images(nb)
    assert len(images) >= min_figures, f"{path.name} displayed {len(images)} figures inline"
    missing = [name for name in expected_files if not (out / name).exists()]
    assert not missing, f"{path.name} did not write {missing}"
    assert not any(workdir.iterdir()), "the notebook wrote into its working folder"


# ----------------------------------------------------------------------- real-subset tests
def real_subset(pool_name: str, destination: Path, per_class: int) -> Path:
    """``per_class`` images of each class of a real pool, evenly spaced in file-name order
    (slice-number order for the kidney pool), copied into ``destination`` (class folders)."""
    from kidney_tf.data.splits import slice_number

    pool = SHARED / pool_name
    if not pool.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{pool}: the real pool is missing (CI must have ../shared/data)")
        pytest.skip(f"{pool} not present (../shared/data is not next to this checkout)")

    def order(p: Path):
        parsed = slice_number(p)
        return (0, parsed[1], p.name) if parsed else (1, 0, p.name)

    for folder in sorted(p for p in pool.iterdir() if p.is_dir()):
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".jpg"), key=order)
        picked = [files[i * len(files) // per_class] for i in range(per_class)]
        (destination / folder.name).mkdir(parents=True)
        for file in picked:
            shutil.copy2(file, destination / folder.name / file.name)
    return destination


# Per notebook: the pool, the tiny settings, files it must write (on top of the phantom case's
# figures, which the same cells draw).
REAL_CASES = {
    "01_kidney_ct_cam_fostering": (
        "kidney_ct_pool",
        {"IMAGE_SIZE": 64, "EPOCHS": 1, "FINETUNE_EPOCHS": 1, "BATCH_SIZE": 8},
        ["figures/samples.png", "split.csv", "reports/comparison/comparison.json"],
    ),
    "02_brain_mri_efficientnetb1": (
        "brain_mri_pool",
        {"IMAGE_SIZE": 64, "EPOCHS": 1, "FREEZE_EPOCHS": 0, "BATCH_SIZE": 8},
        ["figures/samples.png", "report/classification_report.txt"],
    ),
}
REAL_PER_CLASS = 12


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.real_data
@pytest.mark.parametrize("stem", sorted(REAL_CASES))
def test_notebook_runs_on_a_real_subset(stem, tmp_path, monkeypatch, record_property):
    pool_name, parameters, real_files = REAL_CASES[stem]
    _, cell_timeout, min_figures, phantom_files = CASES[stem]
    data = real_subset(pool_name, tmp_path / "data", REAL_PER_CLASS)
    jupyter_dir, workdir, out = tmp_path / "jupyter", tmp_path / "work", tmp_path / "out"
    install_kernel_spec(jupyter_dir)
    workdir.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    parameters = {"DATA_DIR": str(data), "QUICK": True, "OUT_DIR": str(out), **parameters}

    nb, seconds = execute_notebook(
        NOTEBOOKS_DIR / f"{stem}.ipynb", parameters, workdir=workdir, timeout=cell_timeout
    )

    record_property("runtime_s", round(seconds, 1))
    print(f"{stem} on {REAL_PER_CLASS} real images per class: {seconds:.0f} s")
    assert not errors(nb), errors(nb)
    assert len(inline_images(nb)) >= min_figures
    missing = [name for name in (*phantom_files, *real_files) if not (out / name).exists()]
    assert not missing, f"{stem} did not write {missing}"
    assert not (out / "data").exists(), "the notebook generated phantoms although DATA_DIR was set"
    classes = sorted(p.name for p in data.iterdir())
    if stem.startswith("01"):
        # held-out slice ranges: per class, every test slice is numbered above every train slice
        from kidney_tf.data.splits import slice_number

        numbers: dict = {}
        with open(out / "split.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                number = slice_number(row["path"])[1]
                numbers.setdefault((row["label"], row["split"]), []).append(number)
        assert {label for label, _ in numbers} == set(classes)
        for label in classes:
            assert max(numbers[label, "train"]) < min(numbers[label, "val"])
            assert max(numbers[label, "val"]) < min(numbers[label, "test"])
    else:
        report = (out / "report" / "classification_report.txt").read_text()
        assert all(name in report for name in classes), report
