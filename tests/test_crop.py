"""Brain-contour crop and CT body crop (OpenCV), crop_folder and ``kidney-tf data crop``."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kidney_tf.data.crop import (
    body_mask,
    brain_box,
    brain_mask,
    crop_body,
    crop_brain,
    crop_folder,
    find_body,
    mask_box,
    to_gray_uint8,
)
from kidney_tf.data.reading import read_image


def synthetic_head(
    size: int = 96, seed: int = 0, lesion: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A bright skull ring around textured brain, off-centre on black; a square lesion mask."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.uint8)
    cx = int(size * rng.uniform(0.4, 0.6))
    cy = int(size * rng.uniform(0.4, 0.6))
    ax, ay = int(size * rng.uniform(0.25, 0.35)), int(size * rng.uniform(0.3, 0.38))
    cv2.ellipse(image, (cx, cy), (ax, ay), 0, 0, 360, 200, thickness=-1)
    cv2.ellipse(image, (cx, cy), (ax - 3, ay - 3), 0, 0, 360, 110, thickness=-1)
    texture = rng.normal(0, 12, image.shape)
    image = np.where(image == 110, np.clip(image + texture, 70, 160), image).astype(np.uint8)
    mask = np.zeros(image.shape, bool)
    if lesion:
        s = max(3, size // 12)
        mask[cy - s : cy + s, cx - s // 2 : cx + s] = True
        image[mask] = 250
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), mask


def real_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png"))


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------- real brain MRI
@pytest.mark.real_data
def test_brain_crop_on_real_mri_is_smaller_and_keeps_the_brain(brain_mri_sample):
    paths = real_images(brain_mri_sample)
    assert paths
    lost_structure = []
    for path in paths:
        image = read_image(path)
        result = crop_brain(image)
        assert not result.fallback, (path, result.reason)
        x0, y0, x1, y1 = result.box
        assert result.image.shape == (y1 - y0, x1 - x0, 3)
        assert result.image.size < image.size, path  # smaller than the original
        inside = np.zeros(image.shape[:2], bool)
        inside[y0:y1, x0:x1] = True
        brain = brain_mask(image)
        # The box is the contour's extreme points (end exclusive, as the paper slices).
        assert (brain & ~inside).sum() <= 0.005 * brain.sum(), path
        gray = to_gray_uint8(image)
        structure = cv2.GaussianBlur(gray, (5, 5), 0) > 45
        structure = cv2.morphologyEx(structure.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5)))
        structure = structure > 0
        lost_structure.append((structure & ~inside).sum() / structure.sum())
    lost = np.array(lost_structure)
    # Non-black structure outside the crop: the paper's recipe keeps one contour, so scanner text
    # and a skull ring broken by the erosion fall outside on a few slices.
    assert np.median(lost) < 0.005
    assert (lost < 0.02).mean() >= 0.9, np.sort(lost)[-10:]


@pytest.mark.real_data
def test_brain_crop_resizes_and_keeps_dtype(brain_mri_sample):
    image = read_image(real_images(brain_mri_sample)[0])
    result = crop_brain(image, size=64)
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8
    as_float = crop_brain(image.astype(np.float32), size=64)
    assert as_float.box == result.box and as_float.image.dtype == np.float32
    gray = crop_brain(image[..., 0], size=(48, 64))
    assert gray.box == result.box and gray.image.shape == (48, 64)


def test_margin_is_clipped_to_the_image():
    image, _ = synthetic_head(96, seed=3)
    tight = crop_brain(image).box
    wide = crop_brain(image, margin=5).box
    assert wide == (tight[0] - 5, tight[1] - 5, tight[2] + 5, tight[3] + 5)
    huge = crop_brain(image, margin=500)
    assert huge.box == (0, 0, 96, 96) and not huge.fallback
    with pytest.raises(ValueError, match="margin"):
        crop_brain(image, margin=-1)


# -------------------------------------------------------------------------------------- fallbacks
def test_fallback_all_black():
    result = crop_brain(np.zeros((64, 80, 3), np.uint8), size=32)
    assert result.fallback and "empty" in result.reason
    assert result.box == (0, 0, 80, 64) and result.image.shape == (32, 32, 3)
    assert brain_box(np.zeros((64, 64), np.uint8)) is None
    assert not brain_mask(np.zeros((64, 64), np.uint8)).any()


def test_fallback_tiny_contour():
    image = np.zeros((128, 128), np.uint8)
    image[60:67, 60:67] = 255  # 0.3 % of the image, survives erode/dilate
    result = crop_brain(image)
    assert result.fallback and "too small" in result.reason
    assert result.image.shape == image.shape
    assert np.array_equal(result.image, image)


def test_fallback_no_contour_dim_image():
    image = np.full((64, 64), 30, np.uint8)  # below the threshold of 45 everywhere
    result = crop_brain(image, size=16)
    assert result.fallback and "no contour" in result.reason
    assert result.image.shape == (16, 16)


def test_sparse_noise_falls_back_dense_noise_keeps_everything():
    rng = np.random.default_rng(0)
    speckle = np.where(rng.random((96, 96)) < 0.01, 255, 0).astype(np.uint8)
    result = crop_brain(speckle)
    assert result.fallback and result.reason
    dense = rng.integers(0, 256, (96, 96), dtype=np.uint8)
    result = crop_brain(dense)
    # The contour covers (almost) the whole image: the box is the image, no-op crop.
    x0, y0, x1, y1 = result.box
    assert not result.fallback and x0 <= 1 and y0 <= 1 and x1 >= 94 and y1 >= 94


def test_whole_image_contour_is_a_noop_box():
    image = np.full((50, 60, 3), 200, np.uint8)
    result = crop_brain(image)
    assert not result.fallback
    assert result.box == (0, 0, 59, 49)  # extreme points, end exclusive as in the paper


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        crop_brain(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        crop_brain(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="does not match"):
        crop_brain(np.zeros((8, 8), np.uint8), mask=np.zeros((4, 4), bool))


# --------------------------------------------------------------------------------- mask alignment
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_moves_with_the_crop(seed):
    image, lesion = synthetic_head(128, seed=seed)
    result = crop_brain(image, mask=lesion)
    x0, y0, x1, y1 = result.box
    assert (x0, y0) != (0, 0)
    assert result.mask.dtype == bool
    assert np.array_equal(result.mask, lesion[y0:y1, x0:x1])
    assert (result.image[result.mask] == 250).all()  # the lesion's pixels, moved with the box

    resized = crop_brain(image, size=64, mask=lesion)
    assert resized.mask.shape == (64, 64) and resized.mask.dtype == bool
    ys, xs = np.nonzero(lesion)
    sy, sx = 64 / (y1 - y0), 64 / (x1 - x0)
    expected = ((ys.mean() - y0 + 0.5) * sy - 0.5, (xs.mean() - x0 + 0.5) * sx - 0.5)
    got_y, got_x = np.nonzero(resized.mask)
    assert abs(got_y.mean() - expected[0]) < 1.5 and abs(got_x.mean() - expected[1]) < 1.5


def test_body_crop_moves_the_mask_too():
    image, lesion = synthetic_head(128, seed=4)
    result = crop_body(image, mask=lesion)
    x0, y0, x1, y1 = result.box
    assert np.array_equal(result.mask, lesion[y0:y1, x0:x1])


# ---------------------------------------------------------------------------------- real CT body
@pytest.mark.real_data
def test_body_crop_removes_the_scanner_table(kidney_ct_sample):
    paths = real_images(kidney_ct_sample)
    assert paths
    for path in paths:
        image = read_image(path)
        gray = image[..., 0]
        height, width = gray.shape
        body = body_mask(image)
        result = crop_body(image)
        assert not result.fallback, (path, result.reason)
        assert result.box == mask_box(body)
        # The table is the lowest bright structure in the central columns (it lies under the body).
        lo, hi = width // 2 - width // 8, width // 2 + width // 8
        bright = gray[:, lo:hi] > 100
        table_row = int(np.nonzero(bright.any(axis=1))[0].max())
        table_cols = np.nonzero(bright[table_row])[0] + lo
        assert not body[table_row, table_cols].any(), path
        assert result.box[3] <= table_row - 5, path  # the crop ends above the table
        # Everything blanked is outside the body, and the blanked area holds the table's pixels.
        blanked = gray > 100
        blanked &= ~body
        assert blanked[height // 2 :].sum() > 200, path
        x0, y0, x1, y1 = result.box
        kept = result.image[..., 0]
        outside_in_box = ~body[y0:y1, x0:x1]
        assert (kept[outside_in_box] == 0).all()
        assert np.array_equal(kept[~outside_in_box], gray[y0:y1, x0:x1][~outside_in_box])
        assert result.image.size < image.size


def test_body_fallbacks():
    black = crop_body(np.zeros((64, 64, 3), np.uint8), size=32)
    assert black.fallback and black.image.shape == (32, 32, 3)
    assert not body_mask(np.zeros((64, 64), np.uint8)).any()
    tiny = np.zeros((128, 128), np.uint8)
    tiny[10:14, 10:14] = 200  # removed by the opening
    result = crop_body(tiny)
    assert result.fallback and np.array_equal(result.image, tiny)
    mask, reason = find_body(np.zeros((64, 64), np.uint8))
    assert not mask.any() and reason == "empty image (all black)"
    assert find_body(tiny)[1].startswith("body too small")


def test_find_body_is_the_mask_of_body_mask_with_the_reason():
    image = np.zeros((256, 256), np.uint8)
    cv2.ellipse(image, (128, 110), (90, 60), 0, 0, 360, 120, thickness=-1)
    mask, reason = find_body(image)
    assert reason is None and np.array_equal(mask, body_mask(image))
    small, reason = find_body(image, min_area_fraction=0.9)
    assert np.array_equal(small, mask) and reason.startswith("body too small")


def test_body_mask_drops_a_thin_table_under_a_synthetic_body():
    image = np.zeros((256, 256), np.uint8)
    cv2.ellipse(image, (128, 110), (90, 60), 0, 0, 360, 120, thickness=-1)
    cv2.ellipse(image, (128, 330), (200, 120), 0, 180, 360, 220, thickness=3)  # table curve
    body = body_mask(image)
    assert body[110, 128] and not body[image == 220].any()
    assert mask_box(body)[3] < 200  # the table's top is at row 210


@pytest.mark.parametrize("image_size", [160, 256, 640])
def test_body_crop_on_kidney_phantoms_keeps_the_organs_and_drops_the_table(image_size):
    from kidney_tf.data.phantoms import PHANTOM_CLASSES, render_phantom_sample

    for index in range(3):
        for name in PHANTOM_CLASSES["kidney-ct"]:
            sample = render_phantom_sample("kidney-ct", name, index, image_size=image_size)
            _check_phantom_body(sample, image_size, name)


def _check_phantom_body(sample, image_size: int, name: str) -> None:
    body = body_mask(sample.image)
    assert not (sample.organ & ~body).any() and not (sample.mask & ~body).any()
    lo, hi = image_size // 2 - image_size // 8, image_size // 2 + image_size // 8
    bright = sample.image[:, lo:hi] > 200
    table_row = int(np.nonzero(bright.any(axis=1))[0].max())  # the table's lower line
    assert mask_box(body)[3] <= table_row, (name, mask_box(body), table_row)
    assert not body[table_row, lo:hi][bright[table_row]].any()


# ------------------------------------------------------------------------------------ crop_folder
def _make_tree(src: Path, mri: Path) -> dict[str, Path]:
    """Two classes of real MRI + a corrupt file + a masks/ folder + a manifest."""
    paths = real_images(mri)
    classes = sorted({p.parent.name for p in paths})[:2]
    made: dict[str, Path] = {}
    rows = [("path", "label", "split", "mask_path")]
    for cls in classes:
        for p in [q for q in paths if q.parent.name == cls][:2]:
            target = src / cls / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())
            made[f"{cls}/{p.name}"] = target
            rows.append((f"{cls}/{p.name}", cls, "train", ""))
    first = next(iter(made))
    image = read_image(made[first])
    _, lesion = synthetic_head(image.shape[0], seed=5)
    lesion = cv2.resize(lesion.astype(np.uint8), image.shape[1::-1]) > 0
    mask_path = src / "masks" / Path(first).with_suffix(".png")
    mask_path.parent.mkdir(parents=True)
    cv2.imwrite(str(mask_path), lesion.astype(np.uint8) * 255)
    rows[1] = (first, rows[1][1], "train", f"masks/{Path(first).with_suffix('.png').as_posix()}")
    corrupt = src / classes[0] / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows.append((f"{classes[0]}/corrupt.jpg", classes[0], "train", ""))
    with open(src / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return {"first": made[first], "mask": mask_path, "corrupt": corrupt, **made}


@pytest.mark.real_data
def test_cli_crops_a_tree_without_touching_src(tmp_path, brain_mri_sample, capsys):
    from kidney_tf.cli.main import main

    src, dst = tmp_path / "src", tmp_path / "out" / "cropped"
    files = _make_tree(src, brain_mri_sample)
    before = tree_hash(src)
    code = main(["data", "crop", "--src", str(src), "--dst", str(dst), "--size", "64", "-q"])
    assert code == 0
    assert tree_hash(src) == before
    printed = capsys.readouterr().out
    assert "cropped 4 images" in printed and "corrupt.jpg" in printed

    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.jpg"))
    assert len(outputs) == 4 and all(cv2.imread(str(dst / o)).shape == (64, 64, 3) for o in outputs)
    # The mask was cut with its image's box.
    first_rel = files["first"].relative_to(src)
    mask_out = dst / "masks" / first_rel.with_suffix(".png")
    expected = crop_brain(
        read_image(files["first"]), size=64, mask=cv2.imread(str(files["mask"]), 0) > 0
    ).mask
    assert np.array_equal(cv2.imread(str(mask_out), 0) > 127, expected)
    # manifest.csv: the corrupt row is gone, the mask path follows the output.
    with open(dst / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and not any("corrupt" in r["path"] for r in rows)
    assert rows[0]["mask_path"] == f"masks/{first_rel.with_suffix('.png').as_posix()}"
    with open(dst / "crop_boxes.csv", newline="") as fh:
        boxes = list(csv.DictReader(fh))
    assert len(boxes) == 4 and all(b["fallback"] == "0" for b in boxes)

    # A second run into the non-empty output is refused, then allowed with --overwrite.
    assert main(["data", "crop", "--src", str(src), "--dst", str(dst), "-q"]) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert main(["data", "crop", "--src", str(src), "--dst", str(dst), "--overwrite", "-q"]) == 0
    assert tree_hash(src) == before


@pytest.mark.real_data
def test_crop_folder_skips_the_corrupt_file_with_its_reason(tmp_path, brain_mri_sample):
    src = tmp_path / "src"
    files = _make_tree(src, brain_mri_sample)
    summary = crop_folder(src, tmp_path / "dst", size=48, progress=False)
    assert summary.cropped == 4 and summary.masks == 1 and not summary.fallback
    skipped = dict(summary.skipped)
    rel = files["corrupt"].relative_to(src).as_posix()
    assert set(skipped) == {rel} and skipped[rel]
    assert not (tmp_path / "dst" / rel).exists()
    assert json.loads(json.dumps(summary.to_dict()))["skipped"] == [[rel, skipped[rel]]]


def test_crop_folder_reports_fallbacks_and_body_mode(tmp_path):
    src = tmp_path / "src" / "Normal"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "black.png"), np.zeros((40, 40), np.uint8))
    head, _ = synthetic_head(64, seed=1)
    cv2.imwrite(str(src / "head.png"), head)
    summary = crop_folder(tmp_path / "src", tmp_path / "dst", mode="body", size=32, progress=False)
    assert summary.cropped == 2
    assert [p for p, _ in summary.fallback] == ["Normal/black.png"]
    assert cv2.imread(str(tmp_path / "dst" / "Normal" / "black.png")).shape == (32, 32, 3)


def test_crop_folder_refuses_unsafe_destinations(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="differ"):
        crop_folder(src, src)
    with pytest.raises(ValueError, match="inside"):
        crop_folder(src, src / "out")
    with pytest.raises(ValueError, match="contain"):
        crop_folder(src, tmp_path)
    with pytest.raises(FileNotFoundError):
        crop_folder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="mode"):
        crop_folder(src, tmp_path / "out", mode="lungs")
