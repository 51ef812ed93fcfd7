"""Synthetic phantoms: determinism, masks, realism constraints, no class shortcuts, writer, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kidney_tf.cli.main import main as cli_main
from kidney_tf.data.phantoms import (
    NORMAL_CLASSES,
    PHANTOM_CLASSES,
    generate_phantoms,
    render_phantom,
    render_phantom_sample,
)
from kidney_tf.data.phantoms._generate import encode_png

KINDS = tuple(PHANTOM_CLASSES)
LESION_CLASSES = [(k, c) for k in KINDS for c in PHANTOM_CLASSES[k] if c != NORMAL_CLASSES[k]]


def _digest(kind: str, class_name: str, index: int, size: int = 64, seed: int = 0) -> str:
    image, mask = render_phantom(kind, class_name, index, image_size=size, seed=seed)
    return hashlib.sha256(encode_png(image) + encode_png(mask)).hexdigest()


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask


def test_contract_classes_and_types():
    assert PHANTOM_CLASSES == {
        "kidney-ct": ("Cyst", "Normal", "Stone", "Tumor"),
        "brain-mri": ("glioma", "meningioma", "notumor", "pituitary"),
    }
    for kind in KINDS:
        for class_name in PHANTOM_CLASSES[kind]:
            image, mask = render_phantom(kind, class_name, 0, image_size=48)
            assert image.dtype == np.uint8 and image.shape == (48, 48)
            assert mask.dtype == bool and mask.shape == (48, 48)


def test_same_seed_gives_identical_png_bytes_in_process():
    for kind, class_name in [("kidney-ct", "Stone"), ("brain-mri", "glioma")]:
        assert _digest(kind, class_name, 3) == _digest(kind, class_name, 3)


def test_same_seed_gives_identical_png_bytes_across_processes():
    cases = [("kidney-ct", "Tumor", 5), ("brain-mri", "meningioma", 2), ("brain-mri", "notumor", 0)]
    code = (
        "import hashlib, sys\n"
        "from kidney_tf.data.phantoms import render_phantom\n"
        "from kidney_tf.data.phantoms._generate import encode_png\n"
        "for spec in sys.argv[1:]:\n"
        "    kind, name, index = spec.split(':')\n"
        "    im, m = render_phantom(kind, name, int(index), image_size=64)\n"
        "    print(hashlib.sha256(encode_png(im) + encode_png(m)).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # string hashing salted differently
    out = subprocess.run(
        [sys.executable, "-c", code, *(f"{k}:{c}:{i}" for k, c, i in cases)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout.split()
    assert out == [_digest(k, c, i) for k, c, i in cases]


def test_index_class_and_seed_change_the_image():
    base = _digest("kidney-ct", "Cyst", 0)
    assert base != _digest("kidney-ct", "Cyst", 1)
    assert base != _digest("kidney-ct", "Normal", 0)
    assert base != _digest("kidney-ct", "Cyst", 0, seed=1)


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="brain-mri"):
        render_phantom("chest-xray", "Normal", 0)
    with pytest.raises(ValueError, match="Stone"):
        render_phantom("kidney-ct", "stone", 0)
    with pytest.raises(ValueError, match="non-negative"):
        render_phantom("kidney-ct", "Stone", 0, seed=-1)
    with pytest.raises(ValueError, match="image_size"):
        render_phantom("kidney-ct", "Stone", 0, image_size=8)


@pytest.mark.parametrize("kind", KINDS)
def test_lesion_scale_grows_the_lesion_and_keeps_the_anatomy(kind):
    for class_name in PHANTOM_CLASSES[kind]:
        for index in range(3):
            small = render_phantom_sample(kind, class_name, index, image_size=96)
            large = render_phantom_sample(kind, class_name, index, image_size=96, lesion_scale=2.5)
            np.testing.assert_array_equal(small.organ, large.organ)  # same random anatomy
            if class_name == NORMAL_CLASSES[kind]:
                np.testing.assert_array_equal(small.image, large.image)
                continue
            assert large.mask.sum() > 2.0 * small.mask.sum(), (class_name, index)
            # the lesion stays inside the body/head, however large
            body = cv2.GaussianBlur(large.image, (3, 3), 0) > 0
            assert (large.mask & ~body).sum() == 0, (class_name, index)
    for bad in (0.1, 5, "big", True):
        with pytest.raises(ValueError, match="lesion_scale"):
            render_phantom(kind, PHANTOM_CLASSES[kind][0], 0, lesion_scale=bad)


@pytest.mark.parametrize("kind", KINDS)
def test_masks_empty_exactly_for_the_normal_class_and_lesions_sit_in_the_organ(kind):
    for class_name in PHANTOM_CLASSES[kind]:
        for index in range(6):
            sample = render_phantom_sample(kind, class_name, index, image_size=96)
            if class_name == NORMAL_CLASSES[kind]:
                assert not sample.mask.any()
                continue
            assert sample.mask.any(), (class_name, index)
            inside = (sample.mask & sample.organ).sum() / sample.mask.sum()
            # kidney lesions may bulge out of the contour (exophytic); brain lesions are intracranial
            assert inside >= (0.3 if kind == "kidney-ct" else 1.0), (class_name, index, inside)


@pytest.mark.parametrize(("kind", "class_name"), LESION_CLASSES)
def test_mask_is_aligned_with_a_visible_lesion(kind, class_name):
    expected_sign = {"Cyst": -1, "Stone": 1, "meningioma": 1, "pituitary": 1}
    for index in range(8):
        sample = render_phantom_sample(kind, class_name, index, image_size=128)
        image = sample.image.astype(np.float32)
        ring = _ring(sample.mask, 3) & sample.organ
        inside, around = np.median(image[sample.mask]), np.median(image[ring])
        if class_name in ("glioma", "Tumor"):  # heterogeneous: darker or brighter than around
            assert abs(inside - around) > 8, (index, inside, around)
        else:
            assert expected_sign[class_name] * (inside - around) > 8, (index, inside, around)


def test_stones_are_at_least_three_pixels_at_128():
    for index in range(12):
        _, mask = render_phantom("kidney-ct", "Stone", index, image_size=128)
        ys, xs = np.nonzero(mask)
        assert max(np.ptp(xs), np.ptp(ys)) + 1 >= 3, index
        assert mask.sum() <= 0.004 * mask.size  # small: well under half a percent of the image


def test_meningioma_touches_the_inner_skull():
    for index in range(6):
        sample = render_phantom_sample("brain-mri", "meningioma", index, image_size=128)
        assert (_ring(sample.mask, 2) & ~sample.organ).any(), index


def test_geometry_does_not_depend_on_resolution():
    for kind, class_name in LESION_CLASSES:
        _, small = render_phantom(kind, class_name, 1, image_size=128)
        _, large = render_phantom(kind, class_name, 1, image_size=256)
        down = cv2.resize(large.astype(np.float32), (128, 128), interpolation=cv2.INTER_AREA) > 0.5
        iou = (small & down).sum() / (small | down).sum()
        shift = np.hypot(*(np.argwhere(small).mean(0) - np.argwhere(down).mean(0)))
        assert shift < 0.75, (kind, class_name, shift)  # same place, to a fraction of a pixel
        assert iou > (0.7 if small.sum() > 60 else 0.4), (kind, class_name, iou)


def test_brain_head_placement_and_margins_vary():
    boxes = []
    for index in range(16):
        image, _ = render_phantom(
            "brain-mri", PHANTOM_CLASSES["brain-mri"][index % 4], index, image_size=96
        )
        ys, xs = np.nonzero(cv2.GaussianBlur(image, (5, 5), 0) > 45)
        boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
    boxes = np.array(boxes, dtype=np.float64)
    assert boxes[:, 0].std() > 2 and boxes[:, 1].std() > 2  # margins differ
    assert (boxes[:, 2] - boxes[:, 0]).std() > 3  # head scale differs
    assert (boxes[:, 0] > 3).mean() > 0.8  # almost always a black margin to crop away


def _global_features(
    kind: str, per_class: int, size: int = 64, lesion_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for label, class_name in enumerate(PHANTOM_CLASSES[kind]):
        for index in range(per_class):
            image, _ = render_phantom(
                kind, class_name, index, image_size=size, lesion_scale=lesion_scale
            )
            foreground = cv2.GaussianBlur(image, (5, 5), 0) > 45
            ys, xs = np.nonzero(foreground)
            features.append(
                [
                    image.mean(),
                    image.std(),
                    xs.mean(),
                    ys.mean(),
                    foreground.mean(),
                    np.ptp(xs),
                    np.ptp(ys),
                ]
            )
            labels.append(label)
    return np.array(features), np.array(labels)


@pytest.mark.parametrize("kind", KINDS)
def test_no_global_brightness_size_or_position_shortcut(kind):
    features, labels = _global_features(kind, per_class=40)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    accuracy = cross_val_score(model, features, labels, cv=folds).mean()
    assert accuracy < 0.42, accuracy  # chance is 0.25
    # no single global feature separates the classes (one-way ANOVA per feature)
    varying = features.std(axis=0) > 0  # e.g. the CT table always spans the full width
    _, p_values = f_classif(features[:, varying], labels)
    assert p_values.min() > 1e-3, p_values
    # normal images vary as much as lesion images (anatomy and scanner jitter, not the lesion)
    normal = PHANTOM_CLASSES[kind].index(NORMAL_CLASSES[kind])
    normal_std = features[labels == normal, 0].std()
    lesion_std = features[labels != normal, 0].std()
    assert 0.6 < normal_std / lesion_std < 1.6


def test_demo_lesion_scale_leaves_only_a_weak_global_shortcut():
    """4x lesions (the demo) shift the image mean a little; a global model stays far from 0.9."""
    from kidney_tf.pipelines.reproduce import KIDNEY, ReproduceConfig

    scale = ReproduceConfig.preset(KIDNEY, "out", quick=True).phantom_lesion_scale
    features, labels = _global_features("kidney-ct", per_class=40, lesion_scale=scale)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    assert cross_val_score(model, features, labels, cv=folds).mean() < 0.6


# --- writer and CLI -------------------------------------------------------------------------


def test_generate_writes_layout_manifest_and_info(tmp_path):
    out = tmp_path / "kidney"
    manifest = generate_phantoms("kidney-ct", out, per_class=2, image_size=48, seed=3)
    assert manifest == out / "manifest.csv"
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "split", "mask_path"]
    assert [r["label"] for r in rows] == [c for c in PHANTOM_CLASSES["kidney-ct"] for _ in range(2)]
    assert rows[0]["path"] == "Cyst/kidney-ct_Cyst_00000.png"
    for row in rows:
        assert row["split"] == ""
        assert row["mask_path"] == f"masks/{row['path']}"
        image = cv2.imread(str(out / row["path"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / row["mask_path"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == mask.shape == (48, 48)
        assert set(np.unique(mask)) <= {0, 255}
        assert mask.any() == (row["label"] != "Normal")
        name = row["path"].split("/")[1]
        expected, _ = render_phantom(
            "kidney-ct", row["label"], int(name[-9:-4]), image_size=48, seed=3
        )
        np.testing.assert_array_equal(image, expected)
    info = json.loads((out / "phantom.json").read_text())
    assert info["kind"] == "kidney-ct" and info["seed"] == 3 and info["per_class"] == 2
    assert info["image_size"] == 48 and "package_version" in info
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_generate_is_idempotent_and_completes_an_interrupted_output(tmp_path):
    out = tmp_path / "brain"
    generate_phantoms("brain-mri", out, per_class=1, image_size=32)
    first = out / "glioma" / "brain-mri_glioma_00000.png"
    data, mtime = first.read_bytes(), first.stat().st_mtime_ns
    generate_phantoms("brain-mri", out, per_class=1, image_size=32)
    assert first.stat().st_mtime_ns == mtime  # complete output: nothing rewritten
    first.unlink()
    (out / "manifest.csv").unlink()
    generate_phantoms("brain-mri", out, per_class=1, image_size=32)
    assert first.read_bytes() == data and (out / "manifest.csv").is_file()


def test_generate_into_an_existing_empty_folder(tmp_path):
    generate_phantoms("brain-mri", tmp_path, per_class=1, image_size=32)
    assert (tmp_path / "manifest.csv").is_file()


def test_generate_refuses_foreign_or_different_folders(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a phantom output"):
        generate_phantoms("kidney-ct", foreign, per_class=1, image_size=32)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out = tmp_path / "out"
    generate_phantoms("kidney-ct", out, per_class=1, image_size=32)
    with pytest.raises(FileExistsError, match="per_class"):
        generate_phantoms("kidney-ct", out, per_class=2, image_size=32)
    with pytest.raises(FileExistsError, match="kind"):
        generate_phantoms("brain-mri", out, per_class=1, image_size=32)
    with pytest.raises(FileExistsError, match="lesion_scale"):
        generate_phantoms("kidney-ct", out, per_class=1, image_size=32, lesion_scale=2.0)
    info = json.loads((out / "phantom.json").read_text())
    del info["lesion_scale"]  # written before lesion_scale existed: means 1.0
    (out / "phantom.json").write_text(json.dumps(info))
    generate_phantoms("kidney-ct", out, per_class=1, image_size=32)
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a folder"):
        generate_phantoms("kidney-ct", a_file, per_class=1, image_size=32)
    for bad in (0, 2.5, "many", None):
        with pytest.raises(ValueError, match="per_class"):
            generate_phantoms("kidney-ct", tmp_path / "new", per_class=bad)
    assert not (tmp_path / "new").exists()


def test_cli_writes_phantoms_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "ph"
    args = [
        "data",
        "phantom",
        "--kind",
        "brain-mri",
        "--out",
        str(out),
        "--per-class",
        "2",
        "--image-size",
        "40",
        "--seed",
        "1",
        "--quiet",
    ]
    assert cli_main(args[:-1]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "8 images" in summary[0] and "brain-mri" in summary[0]
    with open(out / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 8
    assert json.loads((out / "phantom.json").read_text())["seed"] == 1
    assert cli_main(args) == 0  # same parameters again: fine


def test_cli_refuses_a_non_empty_foreign_folder(tmp_path, capsys):
    (tmp_path / "data.csv").write_text("a,b\n")
    rc = cli_main(["data", "phantom", "--kind", "kidney-ct", "--out", str(tmp_path)])
    assert rc == 2
    assert "not a phantom output" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]
