"""The hostile-input harness (``benchmarks/hostile_inputs.py``) on a few of its own cases, so the
rerun of issue 15 cannot rot: same world, same cases, same checks, and its detector of changed
files catches a command that does write where it should not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One case per command family that writes; none imports TensorFlow (the harness checks that).
SUBSET = (
    "verify-json-onto-input-image",
    "crop-onto-user-folder-overwrite",
    "crop-new",
    "crop-own-again",
    "train-onto-user-folder",
    "export-onto-user-file-overwrite",
    "export-version-zero",
    "benchmark-onto-user-file",
)


@pytest.fixture(scope="module")
def harness(load_benchmark):
    return load_benchmark("hostile_inputs")


@pytest.fixture
def world(harness, tmp_path):
    harness.build_world(tmp_path / "world", tf=False)
    harness.poison_tensorflow(tmp_path / "no-tf")
    yield tmp_path / "world"
    harness._poison.clear()


def test_case_names_are_unique_and_subset_exists(harness):
    names = [case.name for case in harness.CASES]
    assert len(names) == len(set(names)) and len(names) >= 90
    assert set(SUBSET) <= set(names)
    assert all(case.expect in ("error", "ok", "checked", "usage") for case in harness.CASES)
    assert [c.name for c in harness.select(harness.CASES, "crop-own-*,export-version-zero")] == [
        "crop-own-again", "crop-own-overwrite", "export-version-zero"
    ]  # fmt: skip


@pytest.mark.slow  # 8 command lines (about 20 s on an idle machine, minutes on a busy one)
def test_subset_of_cases_passes_and_leaves_user_files_alone(harness, world):
    original = harness.snapshot(world)
    cases = [case for case in harness.CASES if case.name in SUBSET]
    results = harness.run_cases(cases, world, tf=False, progress=False)
    assert [(r.name, r.problems) for r in results if r.problems] == []
    assert harness.totals(results)["user_files_modified"] == 0
    by_name = {r.name: r for r in results}
    assert by_name["crop-new"].rc == 0 and (world / "crops" / "a" / "crop_boxes.csv").is_file()
    assert "--overwrite" in by_name["crop-own-again"].error_line
    assert by_name["export-version-zero"].error_line.startswith("kidney-tf export: error: ")
    # only the crop's own output appeared; every file of the user is byte-identical
    final = harness.diff(original, harness.snapshot(world), ["crops/a"])
    assert final == {"modified": [], "deleted": [], "created": []}
    harness.write_report(world.parent, results, final)
    report = json.loads((world.parent / "report.json").read_text())
    assert report["totals"]["cases"] == len(SUBSET)
    assert "| crop-own-again |" in (world.parent / "report.md").read_text()


def test_detector_reports_writes_outside_a_cases_outputs(harness, world):
    # A command that writes a new file, run as a case that declares no output: caught.
    writes = harness.Case("writes", ("data", "verify", "--root", "data", "--json", "v.json",
                                     "--no-duplicates"), expect="checked")  # fmt: skip
    result = harness.run_case(writes, world)
    assert result.changed["created"] == ["v.json"] and result.user_files_modified == 1
    # ... and a user file changed behind the harness' back between two snapshots.
    before = harness.snapshot(world)
    (world / "notes.txt").write_text("changed")
    (world / "thesis" / "thesis.docx").unlink()
    changed = harness.diff(before, harness.snapshot(world), [])
    assert changed["modified"] == ["notes.txt"] and changed["deleted"] == ["thesis/thesis.docx"]
