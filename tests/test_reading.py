"""Reading images, masks, class-folder trees, manifest CSVs and DICOM (files made in tmp_path)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from kidney_tf.data import dicom, reading
from kidney_tf.data.reading import (
    BadFile,
    ImageReadError,
    ImageRecord,
    load_source,
    read_image,
    read_manifest,
    read_mask,
    scan_folder,
    validate_image,
    write_manifest,
)

RNG = np.random.default_rng(0)


def noise(h: int = 40, w: int = 48, channels: int | None = 3) -> np.ndarray:
    shape = (h, w) if channels is None else (h, w, channels)
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


# --------------------------------------------------------------------------- formats


def test_rgb_png_keeps_channel_order(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    image[0, 0] = (255, 0, 0)
    image[1, 1] = (0, 0, 255)
    out = read_image(save(tmp_path / "rgb.png", image))
    assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out, image)


def test_grayscale_png_and_jpeg_become_three_equal_channels(tmp_path):
    gray = noise(channels=None)
    out = read_image(save(tmp_path / "g.png", gray))
    assert out.shape == (*gray.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    jpg = read_image(save(tmp_path / "g.jpg", gray, quality=95))
    assert jpg.shape == (*gray.shape, 3)
    assert np.array_equal(jpg[..., 0], jpg[..., 2])
    assert np.abs(jpg[..., 0].astype(int) - gray).mean() < 12  # lossy, but the same picture


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # transparent -> black
    rgba[0, 2, 3] = 128  # half
    out = read_image(save(tmp_path / "a.png", rgba))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], (200, 100, 50))
    np.testing.assert_array_equal(out[0, 1], (0, 0, 0))
    np.testing.assert_allclose(out[0, 2], np.array([200, 100, 50]) * 128 / 255, atol=1)


def test_palette_png_with_and_without_transparency(tmp_path):
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 1], (255, 0, 0))
    np.testing.assert_array_equal(out[1, 0], (0, 255, 0))
    image.save(tmp_path / "pt.png", transparency=1)  # index 1 transparent -> black
    out = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[0, 1], (0, 0, 0))
    np.testing.assert_array_equal(out[1, 0], (0, 255, 0))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_scales_full_range(tmp_path, suffix):
    values = np.array([[0, 65535, 32768], [257, 1000, 65278]], np.uint16)
    path = tmp_path / f"g16{suffix}"
    assert cv2.imwrite(str(path), values)
    out = read_image(path)
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 1, 0] == 255 and out[0, 0, 0] == 0 and out[1, 0, 0] == 1


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".tiff"])
def test_lossless_colour_formats_round_trip(tmp_path, suffix):
    image = noise()
    np.testing.assert_array_equal(read_image(save(tmp_path / f"x{suffix}", image)), image)


def test_bilevel_and_float_tiff(tmp_path):
    bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    bits.save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png")[0, :, 0], (0, 255))
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="float"):
        read_image(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="float"):
        validate_image(tmp_path / "f.tif")


# --------------------------------------------------------------------------- bad files


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(tmp_path: Path, suffix: str) -> Path:
    good = save(tmp_path / f"good{suffix}", noise(64, 64))
    data = good.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    return bad


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: _write(d / "zero.jpg", b""), "empty file"),
        (lambda d: _write(d / "text.jpg", b"hello"), "not a recognised"),
        (lambda d: _truncated(d, ".jpg"), "truncated"),
        (lambda d: _truncated(d, ".png"), "truncated"),
        (lambda d: d / "missing.png", "file not found"),
    ],
    ids=["zero-byte", "text-as-jpg", "truncated-jpeg", "truncated-png", "missing"],
)
def test_bad_files_raise_with_path_and_reason(tmp_path, make, reason):
    path = make(tmp_path)
    for reader in (read_image, validate_image):
        with pytest.raises(ImageReadError, match=reason) as info:
            reader(path)
        assert str(info.value).startswith(f"{path}: ")
        assert info.value.path == str(path)
        assert isinstance(info.value, ValueError)


def test_image_read_error_pickles():
    err = pickle.loads(pickle.dumps(ImageReadError("a/b.jpg", "broken")))
    assert (err.path, err.reason, str(err)) == ("a/b.jpg", "broken", "a/b.jpg: broken")


# --------------------------------------------------------------------------- size limits


def test_max_side_downscales_keeping_aspect(tmp_path):
    for name in ("big.jpg", "big.png"):
        path = save(tmp_path / name, noise(200, 400))
        out = read_image(path, max_side=100)
        assert out.shape == (50, 100, 3)


def test_over_limit_jpeg_is_decoded_at_reduced_scale_and_png_refused(tmp_path):
    jpg = save(tmp_path / "wide.jpg", noise(300, 400))
    out = read_image(jpg, max_pixels=40_000)  # 120k pixels -> 1/2 scale = 30k pixels
    assert out.shape == (150, 200, 3)
    png = save(tmp_path / "wide.png", noise(300, 400))
    with pytest.raises(ImageReadError, match="max_pixels"):
        read_image(png, max_pixels=40_000)
    with pytest.raises(ImageReadError, match="max_pixels"):
        validate_image(png, max_pixels=40_000)
    with pytest.raises(ImageReadError, match="1/8"):
        read_image(jpg, max_pixels=1_000)
    assert read_image(png, max_pixels=None).shape == (300, 400, 3)


def test_huge_10k_jpeg_is_memory_bounded(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("L", (10_000, 10_000), 90).save(path, quality=50)
    assert validate_image(path) == (10_000, 10_000)
    out = read_image(path)  # default max_pixels = 50 M: decoded at 1/2 scale
    assert out.shape == (5_000, 5_000, 3)
    assert abs(int(out[2500, 2500, 0]) - 90) <= 2
    assert read_image(path, max_side=256).shape == (256, 256, 3)


# --------------------------------------------------------------------------- masks


def test_read_mask_foreground_rules_and_size_check(tmp_path):
    labels = np.zeros((8, 10), np.uint8)
    labels[2:4, 3:6] = 1
    mask = read_mask(save(tmp_path / "m01.png", labels))
    assert mask.dtype == bool and mask.shape == (8, 10) and mask.sum() == 6
    assert read_mask(save(tmp_path / "m255.png", labels * 255)).sum() == 6
    big = np.zeros((64, 64), np.uint8)
    big[16:48, 16:48] = 255
    jpg_mask = read_mask(save(tmp_path / "m.jpg", big, quality=70))
    assert abs(int(jpg_mask.sum()) - 32 * 32) < 40  # lossy ringing does not count as foreground
    with pytest.raises(ImageReadError, match=r"mask size 10x8 .*differs from image size 12x9"):
        read_mask(tmp_path / "m01.png", shape=(9, 12))


# --------------------------------------------------------------------------- class folders


def _tree(root: Path) -> None:
    save(root / "Normal" / "n1.png", noise())
    save(root / "Normal" / "N2.PNG", noise())
    save(root / "Cyst" / "c1.JPG", noise(), quality=90)
    save(root / "Cyst" / "c2.jpeg", noise(), quality=90)
    save(root / "Cyst" / "c3.BmP", noise())
    (root / "Cyst" / "notes.txt").write_text("not an image")
    (root / "Cyst" / ".hidden.png").write_bytes(b"")  # hidden: never read
    (root / ".cache").mkdir()
    save(root / ".cache" / "x.png", noise())
    (root / "Empty").mkdir()


def test_scan_folder_classes_sorted_hidden_and_empty(tmp_path):
    _tree(tmp_path)
    result = scan_folder(tmp_path)
    assert result.class_names == ["Cyst", "Normal"]
    assert [Path(r.path).name for r in result.records] == [
        "c1.JPG",
        "c2.jpeg",
        "c3.BmP",
        "N2.PNG",
        "n1.png",
    ]
    assert all(r.split is None and r.mask_path is None for r in result.records)
    assert result.bad_files == []
    assert any("Empty" in w and "empty class folder" in w for w in result.warnings)
    assert result.counts() == {"all": {"Cyst": 3, "Normal": 2}}


def test_scan_folder_collects_bad_files_or_raises_when_strict(tmp_path):
    _tree(tmp_path)
    (tmp_path / "Normal" / "zero.png").write_bytes(b"")
    (tmp_path / "Normal" / "text.jpg").write_text("hello")
    result = scan_folder(tmp_path)
    assert sorted(Path(b.path).name for b in result.bad_files) == ["text.jpg", "zero.png"]
    assert all(isinstance(b, BadFile) and b.reason for b in result.bad_files)
    assert len(result.records) == 5
    assert len(scan_folder(tmp_path, validate=False).records) == 7
    with pytest.raises(ImageReadError, match="text.jpg"):
        scan_folder(tmp_path, strict=True)


def test_split_folder_layout_with_masks(tmp_path):
    for split in ("Training", "Testing", "valid"):
        for cls in ("glioma", "notumor"):
            image = save(tmp_path / split / cls / f"{split[:2]}-{cls}.jpg", noise(), quality=90)
            mask = np.zeros(image_shape(image), np.uint8)
            save(tmp_path / split / "masks" / cls / f"{split[:2]}-{cls}.png", mask)
    result = scan_folder(tmp_path)
    assert result.class_names == ["glioma", "notumor"]
    assert {r.split for r in result.records} == {"train", "val", "test"}
    assert list(result.counts()) == ["train", "val", "test"]
    assert all(r.mask_path and r.mask_path.endswith(".png") for r in result.records)
    assert result.bad_files == []


def test_split_layout_with_top_level_masks_folder(tmp_path):
    for split in ("Training", "Testing"):
        image = save(tmp_path / split / "Cyst" / "a.png", noise(40, 48))
        save(tmp_path / "masks" / split / "Cyst" / "a.png", np.zeros((40, 48), np.uint8))
    result = scan_folder(tmp_path)
    assert result.class_names == ["Cyst"] and result.bad_files == []
    assert [(r.split, Path(r.mask_path).parent.parent.name) for r in result.records] == [
        ("train", "Training"),
        ("test", "Testing"),
    ]
    assert image.is_file()


def image_shape(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.height, image.width


def test_masks_folder_and_mask_size_mismatch(tmp_path):
    save(tmp_path / "Tumor" / "a.png", noise(40, 48))
    save(tmp_path / "Tumor" / "b.png", noise(40, 48))
    save(tmp_path / "Tumor" / "c.png", noise(40, 48))
    save(tmp_path / "masks" / "Tumor" / "a.png", np.zeros((40, 48), np.uint8))
    save(tmp_path / "masks" / "Tumor" / "b.png", np.zeros((30, 48), np.uint8))
    result = scan_folder(tmp_path)
    assert result.class_names == ["Tumor"]  # "masks" is never a class
    assert [Path(r.path).name for r in result.records] == ["a.png", "c.png"]
    assert result.records[0].mask_path.endswith("a.png") and result.records[1].mask_path is None
    (bad,) = result.bad_files
    assert "mask size 48x30" in bad.reason and "image size 48x40" in bad.reason
    assert any("1 of 3 image(s) have no mask" in w for w in result.warnings)


def test_mixed_and_duplicate_split_layouts_are_rejected(tmp_path):
    save(tmp_path / "a" / "Training" / "x" / "1.png", noise())
    save(tmp_path / "a" / "Cyst" / "1.png", noise())
    with pytest.raises(ValueError, match="mixed layout"):
        scan_folder(tmp_path / "a")
    save(tmp_path / "b" / "Training" / "x" / "1.png", noise())
    save(tmp_path / "b" / "train" / "x" / "1.png", noise())
    with pytest.raises(ValueError, match="both split 'train'"):
        scan_folder(tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "nope")


# --------------------------------------------------------------------------- manifest CSVs


def test_manifest_round_trip_relative_paths(tmp_path):
    save(tmp_path / "data" / "A" / "1.png", noise())
    save(tmp_path / "data" / "B" / "2.png", noise())
    save(tmp_path / "data" / "masks" / "A" / "1.png", np.zeros((40, 48), np.uint8))
    csv_path = tmp_path / "data" / "manifest.csv"
    csv_path.write_text(
        "path,label,split,mask_path,notes\n"
        "A/1.png,A,Training,masks/A/1.png,x\n"
        "./B/../B/2.png,B,test,,\n"
        "\n"
    )
    result = read_manifest(csv_path)
    assert result.class_names == ["A", "B"]
    assert [(r.label, r.split) for r in result.records] == [("A", "train"), ("B", "test")]
    assert result.records[0].mask_path == str(tmp_path / "data" / "masks" / "A" / "1.png")
    assert result.records[1].path == str(tmp_path / "data" / "B" / "2.png")
    out = write_manifest(result.records, tmp_path / "elsewhere" / "m.csv", root=tmp_path / "data")
    assert "A/1.png,A,train,masks/A/1.png" in out.read_text()
    again = read_manifest(out, root=tmp_path / "data")
    assert again.records == result.records
    assert load_source(csv_path).records == result.records


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("../outside.png,A,,", "escapes the data root"),
        ("A/../../outside.png,A,,", "escapes the data root"),
        ("/etc/passwd,A,,", "absolute path"),
        ("A/1.png,A,,../x.png", "escapes the data root"),
        ("A/1.png,,,", "empty label"),
        ("A/1.png,A,holdout,", "unknown split"),
    ],
)
def test_manifest_rejects_escapes_and_malformed_rows(tmp_path, row, message):
    save(tmp_path / "A" / "1.png", noise())
    save(tmp_path.parent / "outside.png", noise())
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(f"path,label,split,mask_path\n{row}\n")
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(csv_path)
    assert str(csv_path) in str(info.value)


def test_manifest_absolute_paths_inside_explicit_root_and_missing_files(tmp_path):
    image = save(tmp_path / "data" / "A" / "1.png", noise())
    csv_path = tmp_path / "runs" / "split.csv"
    csv_path.parent.mkdir()
    csv_path.write_text(
        f"path,label,split\n{image},A,train\nA/2.png,A,test\nA/1.png,A,val\n{image.parent.parent.parent / 'x.png'},A,\n"
    )
    with pytest.raises(ValueError, match="escapes the data root"):
        read_manifest(csv_path, root=tmp_path / "data")
    csv_path.write_text(f"path,label,split\n{image},A,train\nA/2.png,A,test\nA/1.png,A,val\n")
    result = read_manifest(csv_path, root=tmp_path / "data")
    assert [r.split for r in result.records] == ["train"]
    reasons = sorted(b.reason for b in result.bad_files)
    assert reasons[0].startswith("file not found (line 3")
    assert reasons[1] == "listed again on line 4 (first on line 2)"
    with pytest.raises(ImageReadError, match="file not found"):
        read_manifest(csv_path, root=tmp_path / "data", strict=True)
    with pytest.raises(ValueError, match="absolute path"):
        read_manifest(csv_path)  # no explicit root: absolute paths are refused


def test_manifest_header_errors_and_load_source(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,A\n")
    with pytest.raises(ValueError, match="missing column"):
        read_manifest(bad)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not a dataset folder"):
        load_source(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_source(tmp_path / "missing")


def test_validate_records_keeps_order(tmp_path):
    a = save(tmp_path / "a.png", noise())
    (tmp_path / "b.png").write_text("x")
    records = [ImageRecord(str(a), "A"), ImageRecord(str(tmp_path / "b.png"), "A")]
    good, bad = reading.validate_records(records)
    assert good == records[:1] and [b.path for b in bad] == [records[1].path]


# --------------------------------------------------------------------------- real samples


@pytest.mark.real_data
def test_scan_real_samples(kidney_ct_sample, brain_mri_sample):
    kidney = scan_folder(kidney_ct_sample)
    assert kidney.class_names == ["Cyst", "Normal", "Stone", "Tumor"]
    assert kidney.bad_files == [] and kidney.warnings == []
    assert len(kidney.records) == len(list(Path(kidney_ct_sample).glob("*/*.jpg")))
    image = read_image(kidney.records[0].path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    brain = scan_folder(brain_mri_sample)
    assert brain.class_names == ["glioma", "meningioma", "notumor", "pituitary"]
    assert brain.bad_files == []


# --------------------------------------------------------------------------- DICOM


def write_ct_dicom(
    path: Path, hu: np.ndarray, *, photometric: str = "MONOCHROME2", frames: int = 1, **extra
) -> Path:
    """A minimal CT slice: stored = HU + 1024 (slope 1, intercept -1024); ``extra`` attributes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = 400
    ds.WindowWidth = 1800
    stored = (hu.astype(np.int32) + 1024).astype(np.uint16)
    if frames > 1:
        stored = np.stack([stored] * frames)
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


HU = np.array([[-1000, -160, 40], [240, 1000, 3000]], dtype=np.int16)


def test_dicom_round_trip_hu_and_windows(tmp_path):
    path = write_ct_dicom(tmp_path / "slice.dcm", HU)
    np.testing.assert_array_equal(dicom.dicom_to_hu(path), HU.astype(np.float32))
    kidney = dicom.read_dicom(path)  # CT default: kidney window, center 40 width 400
    np.testing.assert_array_equal(kidney, [[0, 0, 128], [255, 255, 255]])
    np.testing.assert_array_equal(
        dicom.read_dicom(path, window="bone"), dicom.apply_window(HU, 400, 1800)
    )
    np.testing.assert_array_equal(
        dicom.read_dicom(path, window="file"), dicom.read_dicom(path, window=(400, 1800))
    )
    assert dicom.read_dicom(path, window="minmax")[1, 2] == 255
    assert dicom.WINDOW_PRESETS["brain"] == (40.0, 80.0)
    assert dicom.dicom_size(path) == HU.shape
    rgb = read_image(path)
    assert rgb.shape == (2, 3, 3) and np.array_equal(rgb[..., 1], kidney)
    assert validate_image(path) == HU.shape
    with pytest.raises(ImageReadError, match="unknown window"):
        dicom.read_dicom(path, window="spine")


def _dicom_linear(hu, center, width):
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR onto 0..255, written out independently."""
    x = hu.astype(np.float64)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= center - 0.5 - (width - 1) / 2, 0, y)
    y = np.where(x > center - 0.5 + (width - 1) / 2, 255, y)
    return np.rint(y).astype(np.uint8)


def test_dicom_voi_follows_the_standard(tmp_path):
    hu = np.arange(-200, 300, 7, dtype=np.int16).reshape(1, -1)
    plain = write_ct_dicom(tmp_path / "plain.dcm", hu)
    np.testing.assert_array_equal(dicom.read_dicom(plain), _dicom_linear(hu, 40, 400))
    np.testing.assert_array_equal(
        dicom.read_dicom(plain, window=(50, 350)), _dicom_linear(hu, 50, 350)
    )
    sigmoid = write_ct_dicom(
        tmp_path / "sigmoid.dcm", hu, WindowCenter=60, WindowWidth=200, VOILUTFunction="SIGMOID"
    )
    expected = np.rint(255 / (1 + np.exp(-4 * (hu - 60.0) / 200))).astype(np.uint8)
    np.testing.assert_array_equal(dicom.read_dicom(sigmoid, window="file"), expected)
    exact = write_ct_dicom(
        tmp_path / "exact.dcm", hu, WindowCenter=0, WindowWidth=100, VOILUTFunction="LINEAR_EXACT"
    )
    linear_exact = np.clip(np.rint((hu + 50.0) * 255 / 100), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(dicom.read_dicom(exact, window="file"), linear_exact)

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()  # 8-bit VOI LUT: entries 0..99 for HU 0..99, clipped outside
    item.LUTDescriptor = [100, 0, 8]
    lut = np.linspace(0, 255, 100).round().astype("<u2")
    item.LUTData = lut.tobytes()  # OW, as scanners write it
    lut_file = write_ct_dicom(tmp_path / "lut.dcm", hu, VOILUTSequence=Sequence([item]))
    index = np.clip(hu.astype(np.int64), 0, 99)
    np.testing.assert_array_equal(
        dicom.read_dicom(lut_file, window="file"), lut.astype(np.uint8)[index]
    )
    with pytest.raises(ImageReadError, match=r"Window Width") as info:
        dicom.read_dicom(plain, window=(40, 0.5))
    assert info.value.path == str(plain)


def test_dicom_monochrome1_multiframe_and_scan(tmp_path):
    inverted = write_ct_dicom(tmp_path / "m1.dcm", HU, photometric="MONOCHROME1")
    np.testing.assert_array_equal(dicom.read_dicom(inverted), 255 - dicom.apply_window(HU, 40, 400))
    multi = write_ct_dicom(tmp_path / "multi.dcm", HU, frames=3)
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_image(multi)
    assert dicom.read_dicom(multi, frame=2).shape == HU.shape
    data = tmp_path / "data"
    (data / "Kidney").mkdir(parents=True)
    write_ct_dicom(data / "Kidney" / "IM1.DCM", HU)
    (data / "Kidney" / "bad.dcm").write_text("not dicom")
    result = scan_folder(data)
    assert [Path(r.path).name for r in result.records] == ["IM1.DCM"]
    assert [Path(b.path).name for b in result.bad_files] == ["bad.dcm"]
    assert "DICOM" in result.bad_files[0].reason


def test_dicom_without_pydicom_says_how_to_install(tmp_path, monkeypatch):
    path = write_ct_dicom(tmp_path / "slice.dcm", HU)
    save(tmp_path / "data" / "Cyst" / "a.png", noise())
    (tmp_path / "data" / "Cyst" / "b.dcm").write_bytes(path.read_bytes())
    monkeypatch.setitem(sys.modules, "pydicom", None)
    assert not dicom.pydicom_available()
    with pytest.raises(ImportError, match=r"pip install 'kidney_tf\[dicom\]'"):
        dicom.read_dicom(path)
    result = scan_folder(tmp_path / "data")
    assert [Path(r.path).name for r in result.records] == ["a.png"]
    assert any("pip install 'kidney_tf[dicom]'" in w for w in result.warnings)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow complains about broken TIFF tags
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".tif"])
def test_fuzzed_files_only_ever_raise_image_read_error(tmp_path, suffix):
    data = bytearray(save(tmp_path / f"src{suffix}", noise(24, 24)).read_bytes())
    rng = np.random.default_rng(len(suffix))
    for k in range(100):
        corrupt = bytearray(data)
        positions = rng.integers(0, min(len(corrupt), 200 if k % 2 else len(corrupt)), size=4)
        for pos in positions:
            corrupt[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"fuzz{k}{suffix}"
        path.write_bytes(bytes(corrupt))
        for reader in (read_image, validate_image):
            try:
                reader(path)
            except ImageReadError as exc:
                assert exc.path == str(path) and exc.reason
