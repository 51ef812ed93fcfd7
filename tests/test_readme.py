"""The README's promises: CI runs its two top commands as printed, and the real-data tests its
claims rest on never silently check fixtures instead of the real samples in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
