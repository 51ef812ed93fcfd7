"""The README's promises: CI runs its two top commands as printed, its Python code blocks run as
printed, and the real-data tests its claims rest on never silently check fixtures in CI."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _top_commands() -> dict[str, str]:
    """The commands after '# 1.' and '# 2.' in the README's first code block."""
    block = README.read_text().split("```")[1].splitlines()
    commands, tag = {}, None
    for line in block[1:]:
        if line.startswith("# "):
            tag = line[2:4]
        elif line.strip() and tag:
            commands[tag], tag = line, None
    return commands


def test_ci_runs_the_readme_commands_as_printed():
    commands = _top_commands()
    assert "kidney-tf demo" in commands["1."] and "pytest" in commands["2."]
    out = subprocess.run(
        [str(REPO / ".ci" / "run"), "--print"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [commands["2."], commands["1."]]  # tests first, then demo


SAMPLE_TEST = "def test_sample(brain_mri_sample):\n    print('ROOT', brain_mri_sample)\n"


def _pytest_with_shared_data(tmp_path: Path, shared: Path, ci: bool):
    (tmp_path / "test_sample.py").write_text(SAMPLE_TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(KIDNEY_TF_SHARED_DATA=str(shared), PYTHONPATH=str(REPO / "tests"))
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-s", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def test_real_data_tests_fail_in_ci_without_the_real_samples(tmp_path):
    empty = tmp_path / "shared"
    (empty / "brain_mri_sample" / "glioma").mkdir(parents=True)
    for ci, shared in ((True, empty), (True, tmp_path / "missing")):
        out = _pytest_with_shared_data(tmp_path, shared, ci)
        assert out.returncode == 1, out.stdout
        problem = "is empty" if shared == empty else "is missing"
        assert f"CI needs the real samples: {shared / 'brain_mri_sample'} {problem}" in out.stdout
        assert "MISSING: real_data tests fail in CI" in out.stdout  # the report header


def test_real_data_tests_fall_back_outside_ci_and_say_so(tmp_path):
    out = _pytest_with_shared_data(tmp_path, tmp_path / "missing", ci=False)
    assert out.returncode == 0, out.stdout
    fixtures = REPO / "tests" / "fixtures" / "brain_mri_sample"
    assert f"ROOT {fixtures}" in out.stdout
    assert "real_data tests FALL BACK to 8 fixture images (of 118)" in out.stdout  # header
    assert f"real_data tests use the 8 images in {fixtures} instead of 118" in out.stdout


def test_a_changed_real_sample_fails(tmp_path):
    shared = tmp_path / "shared"
    (shared / "brain_mri_sample" / "glioma").mkdir(parents=True)
    (shared / "brain_mri_sample" / "glioma" / "a.jpg").write_bytes(b"x")
    out = _pytest_with_shared_data(tmp_path, shared, ci=False)
    assert out.returncode == 1
    assert "holds 1 images, the README's claims are about 118" in out.stdout


# Checks run after each README block, in its namespace (the blocks themselves stay as printed).
AFTER_USER_STORY = """
import json as _json, numpy as _np
_labels = _np.concatenate([y.numpy() for _, y in bundle.test]).argmax(axis=1)
print("USER_STORY " + _json.dumps({
    "probs_shape": list(probs.shape), "row_sums": probs.sum(axis=1).tolist(),
    "loaded_accuracy": float((probs.argmax(axis=1) == _labels).mean()),
    "cams_shape": list(_np.shape(cams)), "class_names": model.class_names,
    "input_shape": list(model.input_shape[1:]), "n_test": int(len(_labels)),
}))
"""
AFTER_SPLITS = """
print("SPLITS " + _json.dumps({"counts": bundle.counts, "method": bundle.split_method}))
"""


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)


def _result(stdout: str, tag: str) -> dict:
    return json.loads(
        next(x for x in stdout.splitlines() if x.startswith(tag + " "))[len(tag) + 1 :]
    )


@pytest.mark.slow
@pytest.mark.real_data
def test_readme_python_blocks_run_as_printed(tmp_path, kidney_ct_sample):
    """The user story (160 phantoms, 96 px, 3 epochs) and the splits block, in one fresh process;
    the splits block's "CT-KIDNEY/" is the real kidney CT sample."""
    blocks = _python_blocks()
    assert len(blocks) == 2 and "build_classifier" in blocks[0] and "CT-KIDNEY/" in blocks[1]
    shutil.copytree(kidney_ct_sample, tmp_path / "CT-KIDNEY")
    script = tmp_path / "readme_blocks.py"
    script.write_text(blocks[0] + AFTER_USER_STORY + blocks[1] + AFTER_SPLITS)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
        timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    story = _result(out.stdout, "USER_STORY")
    metrics = ast.literal_eval(next(x for x in out.stdout.splitlines() if x.startswith("{'")))
    assert set(metrics) == {"loss", "ce_loss", "cam_entropy", "cam_empty", "accuracy"}
    # the model loaded from kidney.keras predicts what the trained model was evaluated at
    assert story["loaded_accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert story["input_shape"] == [96, 96, 3]  # the bundle's size, not ResNet-50's 224
    assert story["probs_shape"] == [story["n_test"], 4] and story["n_test"] == 24
    assert story["row_sums"] == pytest.approx([1.0] * story["n_test"], abs=1e-5)
    assert story["cams_shape"] == [16, 3, 3]  # first test batch, 96 px / 32 on ResNet-50
    assert story["class_names"] == ["Cyst", "Normal", "Stone", "Tumor"]
    assert (tmp_path / "kidney.keras").is_file() and len(
        list((tmp_path / "phantoms").rglob("*.png"))
    ) >= 200

    splits = _result(out.stdout, "SPLITS")
    assert splits["method"] == "grouped"
    n_images = sum(sum(c.values()) for c in splits["counts"].values())
    assert n_images == len(list((tmp_path / "CT-KIDNEY").rglob("*.jpg")))
    rows = (tmp_path / "split.csv").read_text().splitlines()
    assert len(rows) == n_images + 1  # header + one row per image
