"""Dataset manifests, verify_dataset and ``kidney-tf data verify`` (exit codes, JSON, leakage)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kidney_tf.cli.main import main
from kidney_tf.data.duplicates import find_duplicates
from kidney_tf.data.manifests import (
    list_manifests,
    load_manifest,
    manifest_from_dict,
)
from kidney_tf.data.reading import ImageReadError, ImageRecord, scan_folder, write_manifest
from kidney_tf.data.verify import locate_data_root, verify_dataset

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(7)


def image(path: Path) -> Path:
    """A random 32x32 image: unrelated to every other one (phash distance ~32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def manifest_file(tmp_path: Path, counts: dict | None, **extra) -> Path:
    data = {
        "schema_version": 1,
        "name": "toy",
        "title": "Toy dataset",
        "classes": ["A", "B", "C"],
        "counts": counts,
        **extra,
    }
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- manifests


def test_shipped_manifests_load_with_the_published_counts():
    assert {"ct_kidney", "brain_tumor_mri", "phantom_kidney_ct", "phantom_brain_mri"} <= set(
        list_manifests()
    )
    kidney = load_manifest("ct_kidney")
    assert kidney.counts == {"all": {"Cyst": 3709, "Normal": 5077, "Stone": 1377, "Tumor": 2283}}
    assert kidney.total == 12446 and kidney.folder == "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
    assert kidney.pattern("Cyst").fullmatch("Cyst- (1219).jpg")
    brain = load_manifest(REPO / "data_manifests" / "brain_tumor_mri.json")
    assert brain.counts["train"] == {
        "glioma": 1321,
        "meningioma": 1339,
        "notumor": 1595,
        "pituitary": 1457,
    }
    assert brain.counts["test"] == {
        "glioma": 300,
        "meningioma": 306,
        "notumor": 405,
        "pituitary": 300,
    }
    assert brain.split_folders == {"Training": "train", "Testing": "test"}
    assert brain.pattern("glioma").fullmatch("Tr-gl_0045.jpg")
    assert not brain.pattern("glioma").fullmatch("aug_0_1779.png")
    assert load_manifest(str(REPO / "data_manifests" / "ct_kidney")).name == "ct_kidney"
    assert load_manifest("phantom_kidney_ct").total is None
    assert (REPO / "data_manifests" / "README.md").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"counts": {"all": {"A": 1}}}, "must list exactly the classes"),
        ({"counts": {"holdout": {"A": 1, "B": 1, "C": 1}}}, "must be train, val, test or all"),
        ({"counts": {"all": {"A": 1, "B": 1, "C": -1}}}, "non-negative"),
        ({"total": 99}, "'total' 99"),
        ({"classes": []}, "non-empty list"),
        ({"file_patterns": {"A": "("}}, "not a valid regex"),
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_invalid_manifests_are_rejected(change, message):
    data = {
        "name": "toy",
        "title": "Toy",
        "classes": ["A", "B", "C"],
        "counts": {"all": {"A": 1, "B": 1, "C": 1}},
    }
    data.update(change)
    with pytest.raises(ValueError, match=message):
        manifest_from_dict(data, source="toy.json")


def test_unknown_manifest_lists_known_names():
    with pytest.raises(FileNotFoundError, match="ct_kidney"):
        load_manifest("no_such_dataset")


# --------------------------------------------------------------------------- verify_dataset


def test_verify_reports_known_problems(tmp_path):
    root = tmp_path / "data"
    for name in ("a1", "a2", "a3"):
        image(root / "A" / f"{name}.png")
    b1 = image(root / "B" / "b1.png")
    shutil.copyfile(b1, root / "A" / "a4_copy_of_b1.png")  # same bytes, other label
    (root / "B" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "B" / "zero.jpg").write_bytes(b"")
    image(root / "D" / "d1.png")
    (root / "C").mkdir()  # empty class folder
    spec = manifest_file(
        tmp_path, {"all": {"A": 3, "B": 2, "C": 1}}, file_patterns={"A": "^a\\d\\.png$"}
    )
    report = verify_dataset(root, spec)
    codes = report.codes()
    assert {"missing_classes", "extra_classes", "bad_files", "label_conflict"} <= codes
    assert {"count_mismatch", "unexpected_file_names", "layout"} <= codes
    assert "cross_split_duplicates" not in codes
    assert report.exit_code == 1 and not report.ok
    by_code = {i.code: i for i in report.issues}
    assert by_code["missing_classes"].details["classes"] == ["C"]
    assert by_code["extra_classes"].details["classes"] == ["D"]
    assert sorted(Path(b.path).name for b in report.bad_files) == ["broken.png", "zero.jpg"]
    assert by_code["unexpected_file_names"].details["files"] == ["A/a4_copy_of_b1.png"]
    table = {(r["split"], r["class"]): (r["expected"], r["found"]) for r in report.count_table}
    assert table[("all", "A")] == (3, 4) and table[("all", "B")] == (2, 1)
    assert table[("all", "C")] == (1, 0) and table[("all", "D")] == (None, 1)
    assert report.counts == {"all": {"A": 4, "B": 1, "D": 1}}
    assert [i.severity for i in report.issues] == sorted(
        (i.severity for i in report.issues), key=["error", "warning", "info"].index
    )
    text = report.summary()
    assert "missing class(es): C" in text and "PROBLEMS FOUND" in text and "broken.png" in text


def test_verify_clean_split_tree_and_cross_split_leakage(tmp_path):
    root = tmp_path / "data"
    for split in ("Training", "Testing"):
        for cls in ("A", "B", "C"):
            image(root / split / cls / f"{split}_{cls}.png")
    spec = manifest_file(
        tmp_path,
        {"train": {"A": 1, "B": 1, "C": 1}, "test": {"A": 1, "B": 1, "C": 1}},
        split_folders={"Training": "train", "Testing": "test"},
    )
    clean = verify_dataset(root, spec)
    assert clean.ok and clean.exit_code == 0, clean.summary()
    assert clean.leakage["advice"] == "no duplicates across splits"
    assert "CLEAN" in clean.summary()
    shutil.copyfile(root / "Training" / "A" / "Training_A.png", root / "Testing" / "A" / "leak.png")
    leaky = verify_dataset(root, spec)
    assert {"cross_split_duplicates", "count_mismatch"} <= leaky.codes()
    (issue,) = [i for i in leaky.errors if i.code == "cross_split_duplicates"]
    (pair,) = issue.details["pairs"]
    assert {pair["split_a"], pair["split_b"]} == {"train", "test"} and pair["exact"]
    assert leaky.leakage["images_with_twin_in_other_split"] == {"train": 1, "test": 1}
    assert leaky.leakage["fraction_with_twin_in_other_split"]["test"] == 0.25


def test_verify_without_manifest_and_val_counted_with_train(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val", "test"):
        for cls in ("A", "B", "C"):
            image(root / split / cls / f"{split}_{cls}.png")
    assert verify_dataset(root).ok
    spec = manifest_file(
        tmp_path, {"train": {"A": 2, "B": 2, "C": 2}, "test": {"A": 1, "B": 1, "C": 1}}
    )
    report = verify_dataset(root, spec)
    assert report.ok and "val_from_train" in report.codes(), report.summary()


def test_locate_data_root_descends_into_nested_download(tmp_path):
    inner = tmp_path / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
    nested = inner / inner.name
    for cls in ("Cyst", "Normal", "Stone", "Tumor"):
        image(nested / cls / f"{cls}- (1).jpg")
    (inner / "kidneyData.csv").write_text("image,target\n")
    kidney = load_manifest("ct_kidney")
    assert locate_data_root(tmp_path, kidney) == nested
    report = verify_dataset(tmp_path, kidney, check_duplicates=False)
    assert report.n_images == 4 and report.codes() == {"count_mismatch"}
    assert report.duplicates == {}


def test_verify_strict_raises_on_first_bad_file(tmp_path):
    image(tmp_path / "A" / "a.png")
    (tmp_path / "A" / "b.jpg").write_text("not a jpeg")
    with pytest.raises(ImageReadError, match="b.jpg"):
        verify_dataset(tmp_path, strict=True)


# --------------------------------------------------------------------------- real samples


@pytest.mark.real_data
def test_verify_real_kidney_sample_counts_mismatch(kidney_ct_sample):
    report = verify_dataset(kidney_ct_sample, "ct_kidney")
    assert report.errors == [] and report.bad_files == []
    assert report.codes() <= {"count_mismatch", "within_split_duplicates"}
    assert "count_mismatch" in report.codes() and report.exit_code == 1
    on_disk = {p.name: len(list(p.glob("*.jpg"))) for p in Path(kidney_ct_sample).iterdir()}
    assert report.counts == {"all": dict(sorted(on_disk.items()))}
    assert report.leakage["has_splits"] is False


@pytest.mark.real_data
def test_verify_real_brain_sample_flags_foreign_files(brain_mri_sample):
    report = verify_dataset(brain_mri_sample, "brain_tumor_mri")
    assert report.errors == [] and report.exit_code == 1
    assert {"missing_splits", "count_mismatch"} <= report.codes()
    foreign = sorted(
        f"{p.parent.name}/{p.name}"
        for p in Path(brain_mri_sample).glob("*/*")
        if not p.name.startswith(("Tr-", "Te-"))
    )
    flagged = [i for i in report.issues if i.code == "unexpected_file_names"]
    assert (flagged[0].details["files"] if flagged else []) == foreign


@pytest.mark.real_data
def test_split_csv_with_neighbouring_slices_on_both_sides_is_leakage(kidney_ct_sample, tmp_path):
    """A proposed split that puts the two closest real slices in train and test."""
    records = scan_folder(kidney_ct_sample).records
    closest = find_duplicates([r.path for r in records], max_distance=64).pairs[0]
    split = {closest.a: "train", closest.b: "test"}
    proposed = [ImageRecord(r.path, r.label, split.get(r.path, "train")) for r in records]
    csv_path = write_manifest(proposed, tmp_path / "split.csv", root=kidney_ct_sample)
    report = verify_dataset(
        kidney_ct_sample, "ct_kidney", split_csv=csv_path, max_distance=closest.distance
    )
    (issue,) = [i for i in report.errors if i.code == "cross_split_duplicates"]
    assert any({p["a"], p["b"]} == {closest.a, closest.b} for p in issue.details["pairs"])
    assert report.leakage["images_with_twin_in_other_split"]["test"] == 1
    assert report.source == str(csv_path)
    # at distance 0 the two slices are no longer twins
    fine = verify_dataset(kidney_ct_sample, split_csv=csv_path, max_distance=0)
    assert "cross_split_duplicates" not in fine.codes()


# --------------------------------------------------------------------------- CLI


def test_cli_exit_codes_and_json(tmp_path, capsys):
    root = tmp_path / "data"
    for cls in ("A", "B", "C"):
        image(root / cls / f"{cls}1.png")
    spec = manifest_file(tmp_path, {"all": {"A": 1, "B": 1, "C": 1}})
    out = tmp_path / "reports" / "verify.json"
    argv = ["data", "verify", "--root", str(root), "--manifest", str(spec), "--json", str(out)]
    assert main(argv) == 0
    assert "CLEAN" in capsys.readouterr().out
    assert json.loads(out.read_text())["ok"] is True
    (root / "A" / "bad.jpg").write_text("text")
    assert main(argv) == 1
    saved = json.loads(out.read_text())
    assert saved["ok"] is False and saved["bad_files"][0]["path"].endswith("bad.jpg")
    assert not list(out.parent.glob(".verify.json*"))  # atomic write left no temporary file
    assert main([*argv[:-2], "--strict"]) == 2
    assert "bad.jpg" in capsys.readouterr().err
    assert main(["data", "verify", "--root", str(tmp_path / "missing")]) == 2
    assert main(["data", "verify", "--root", str(root), "--manifest", "no_such"]) == 2
    assert main(["data", "verify"]) == 2
    assert main(["data", "verify", "--root", str(root), "--max-distance", "-1"]) == 2


def test_cli_manifest_csv_as_root_and_list(tmp_path, capsys):
    root = tmp_path / "data"
    records = []
    for cls in ("A", "B"):
        path = image(root / cls / f"{cls}1.png")
        records.append(ImageRecord(str(path), cls, "train"))
    csv_path = write_manifest(records, root / "manifest.csv")
    assert main(["data", "verify", "--root", str(csv_path), "--no-duplicates"]) == 0
    assert "splits: train" in capsys.readouterr().out
    assert main(["data", "verify", "--list-manifests"]) == 0
    listing = capsys.readouterr().out
    assert "ct_kidney" in listing and "12446" in listing


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "verify", "--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kind", "name"), [("kidney-ct", "phantom_kidney_ct"), ("brain-mri", "phantom_brain_mri")]
)
def test_phantom_output_matches_its_manifest(tmp_path, kind, name):
    from kidney_tf.data.phantoms import generate_phantoms

    csv_path = generate_phantoms(kind, tmp_path / "ph", per_class=2, image_size=48)
    for source in (csv_path, csv_path.parent):  # the manifest CSV and the folder tree
        report = verify_dataset(source, name)
        assert report.errors == [] and report.bad_files == []
        assert report.codes() <= {"within_split_duplicates", "near_duplicate_label_conflict"}
        assert report.n_images == 8
    folder = scan_folder(csv_path.parent)
    assert all(r.mask_path for r in folder.records)
