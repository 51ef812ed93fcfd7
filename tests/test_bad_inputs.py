"""Bad input through the public API and the CLIs: every failure names the file and the reason,
runs skip and count bad files (or stop up front with --strict), inputs are never modified and no
output is left half-written."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import kidney_tf
from kidney_tf.cli.main import main as cli_main
from kidney_tf.data.reading import ImageReadError, ImageRecord, read_image, scan_folder

SIZE = 32


# ------------------------------------------------------------------------------------ helpers


def head_image(value: int = 170, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Grayscale 'scan': black background, a bright ellipse (so brain/body crops find it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    inside = ((yy - size / 2) / (0.35 * size)) ** 2 + ((xx - size / 2) / (0.3 * size)) ** 2 < 1
    image = np.where(inside, value, 0) + rng.integers(0, 8, (size, size)) * inside
    return image.astype(np.uint8)


def encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=fmt)
    return buffer.getvalue()


def bad_files(seed: int = 0) -> dict[str, bytes]:
    """File name -> content of every kind of unreadable file."""
    rng = np.random.default_rng(seed)
    jpeg, png = encode(head_image(), "JPEG"), encode(head_image(), "PNG")
    return {
        "zero.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "corrupt.jpg": jpeg[:20] + rng.bytes(400),
        "corrupt_data.jpg": jpeg[:300] + rng.bytes(len(jpeg) - 300),
        "corrupt.png": png[:16] + rng.bytes(200),
        "text.jpg": b"this is a text file, not a JPEG\n",
    }


def placeholder_model(path: Path) -> Path:
    """A zip archive named .keras: passes the model-file checks, fails only when Keras reads it
    (for the checks that must refuse an argument before TensorFlow starts)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return path


def make_tree(root: Path, classes=("a", "b"), per_class: int = 4, size: int = SIZE) -> Path:
    for c, label in enumerate(classes):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = head_image(90 + 40 * c + 3 * i, size, seed=10 * c + i)
            (root / label / f"{label}_{i:02d}_scan.png").write_bytes(encode(image, "PNG"))
    return root


def tree_state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Relative path -> (sha256, size, mtime_ns) of every file and folder entry under ``root``."""
    state = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (digest, stat.st_size, stat.st_mtime_ns)
    return state


def leftovers(root: Path) -> list[str]:
    """Temporary files of interrupted atomic writes (``.<name>.*``) anywhere under ``root``."""
    from kidney_tf.utils.io import OUTPUT_MARKER

    return sorted(
        str(p)
        for p in root.rglob(".*")
        if not p.name.startswith(".write-probe") and p.name != OUTPUT_MARKER
    )


@contextlib.contextmanager
def _keep_logging():
    """The CLI reconfigures the package logger; restore it for the other tests."""
    logger = logging.getLogger("kidney_tf")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with _keep_logging():
        code = cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_model(classes=("a", "b"), size: int = SIZE) -> keras.Model:
    from kidney_tf.models.builders import Classifier

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(len(classes), name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return Classifier(inputs, outputs, class_names=list(classes), metadata={"image_size": size})


# ------------------------------------------------------------------------ unreadable images


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_read_image_names_file_and_reason(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bad_files()[name])
    with pytest.raises(ImageReadError) as info:
        kidney_tf.read_image(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert len(info.value.reason) > 10


def test_reasons_say_what_is_wrong(tmp_path):
    files = bad_files()
    reasons = {}
    for name in ("zero.jpg", "truncated.png", "text.jpg"):
        (tmp_path / name).write_bytes(files[name])
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        reasons[name] = info.value.reason
    assert "empty" in reasons["zero.jpg"] and "0 bytes" in reasons["zero.jpg"]
    assert "truncated" in reasons["truncated.png"]
    assert "not a recognised image" in reasons["text.jpg"]


def test_scan_and_pipeline_skip_and_count_bad_files(tmp_path):
    from kidney_tf.data.pipeline import build_datasets

    root = make_tree(tmp_path / "data")
    for name, content in bad_files().items():
        (root / "a" / name).write_bytes(content)
    scan = scan_folder(root)
    bad = {Path(b.path).name: b.reason for b in scan.bad_files}
    assert set(bad) == set(bad_files())
    assert len(scan.records) == 8

    bundle = build_datasets(root, image_size=SIZE, batch_size=4, split="stratified", seed=0)
    assert sorted(Path(b.path).name for b in bundle.bad_files) == sorted(bad_files())
    assert "Bad files skipped: 7" in bundle.describe()
    seen = sum(
        int(x.shape[0]) for split in ("train", "val", "test") for x, _ in bundle.dataset(split)
    )
    assert seen == 8

    with pytest.raises(ImageReadError) as info:
        build_datasets(root, image_size=SIZE, batch_size=4, strict=True)
    assert Path(info.value.path).name in bad_files()


def test_train_strict_fails_up_front_naming_the_file(tmp_path, capsys):
    root = make_tree(tmp_path / "data")
    (root / "b" / "text.jpg").write_bytes(b"not an image")
    before = tree_state(root)
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        *("train", "--data", root, "--out", run, "--arch", "resnet50", "--image-size", 32),
        *("--weights", "none", "--epochs", "1", "--strict"),
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("kidney-tf train: error: ")
    assert str(root / "b" / "text.jpg") in lines[-1] and "not a recognised image" in lines[-1]
    assert not (run / "model.keras").exists() and not (run / "config.json").exists()
    assert leftovers(run) == []
    assert tree_state(root) == before


# -------------------------------------------------------------------- unusual pixel formats


def _formats() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Mode -> (PIL image, expected read_image RGB output)."""
    gray = head_image()
    palette = Image.fromarray((gray // 64).astype(np.uint8), "P")
    colours = np.array([[0, 0, 0], [200, 30, 10], [20, 220, 40], [250, 250, 90]], np.uint8)
    palette.putpalette(colours.flatten().tolist() + [0] * (768 - colours.size))
    deep = (gray.astype(np.uint16) * 257 + 100).astype(np.uint16)
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., :3] = np.stack([gray, gray // 2, gray // 3], -1)
    rgba[..., 3] = np.where(np.arange(SIZE)[:, None] < SIZE // 2, 255, 0)  # bottom transparent
    composite = (
        (rgba[..., :3].astype(np.float32) * (rgba[..., 3:] / 255.0)).round().astype(np.uint8)
    )
    return {
        "L": (Image.fromarray(gray, "L"), np.repeat(gray[..., None], 3, -1)),
        "P": (palette, colours[gray // 64]),
        "I;16": (
            Image.fromarray(deep),
            np.repeat(
                np.round(deep.astype(np.float64) * 255 / 65535).astype(np.uint8)[..., None], 3, -1
            ),
        ),
        "RGBA": (Image.fromarray(rgba, "RGBA"), composite),
    }


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "RGBA"])
def test_read_image_converts_pixel_formats_to_rgb(tmp_path, mode):
    image, expected = _formats()[mode]
    path = tmp_path / f"{mode.replace(';', '')}.png"
    image.save(path)
    assert Image.open(path).mode == mode
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=1)


def _pipeline_pixels(tmp_path: Path, mode: str) -> tuple[np.ndarray, np.ndarray]:
    from kidney_tf.data.pipeline import build_datasets

    image, expected = _formats()[mode]
    path = tmp_path / "test" / f"{mode.replace(';', '')}.png"
    path.parent.mkdir()
    image.save(path)
    train = tmp_path / "train.png"
    Image.fromarray(head_image()).save(train)
    records = [ImageRecord(str(train), "a", "train"), ImageRecord(str(path), "a", "test")]
    bundle = build_datasets(
        records, image_size=SIZE, batch_size=2, split="folders", val_fraction=0, augment=False
    )
    images, _ = next(iter(bundle.test))
    return images.numpy()[0], expected


@pytest.mark.parametrize("mode", ["L", "P", "I;16"])
def test_pipeline_decodes_pixel_formats_like_read_image(tmp_path, mode):
    pixels, expected = _pipeline_pixels(tmp_path, mode)
    np.testing.assert_allclose(pixels, expected.astype(np.float32), atol=1)


def test_pipeline_composites_rgba_like_read_image(tmp_path):
    pixels, expected = _pipeline_pixels(tmp_path, "RGBA")
    np.testing.assert_allclose(pixels, expected.astype(np.float32), atol=1)


# ----------------------------------------------------------------------- all-black image


def test_all_black_image_falls_back_to_the_whole_image(tmp_path, capsys):
    import tensorflow as tf

    from kidney_tf.data.crop import crop_body, crop_brain
    from kidney_tf.data.crop_tf import tf_crop_brain

    black = np.zeros((48, 40, 3), np.uint8)
    for crop in (crop_brain, crop_body):
        result = crop(black, size=24)
        assert result.fallback and result.reason
        assert result.box == (0, 0, 40, 48)
        assert result.image.shape == (24, 24, 3) and not result.image.any()
    out = tf_crop_brain(tf.constant(black), 24).numpy()
    assert out.shape == (24, 24, 3) and not out.any()

    src = make_tree(tmp_path / "src", per_class=2)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(src / "a" / "black.png")
    before = tree_state(src)
    code, out_text, _ = run_cli(
        capsys, "data", "crop", "--src", src, "--dst", tmp_path / "dst", "--size", 24
    )
    assert code == 0
    assert "fallback (whole image kept): 1" in out_text and "black.png" in out_text
    assert Image.open(tmp_path / "dst" / "a" / "black.png").size == (24, 24)
    assert tree_state(src) == before


def test_pipeline_brain_crop_accepts_an_all_black_image(tmp_path):
    from kidney_tf.data.pipeline import build_datasets

    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(black)
    ok = tmp_path / "ok.png"
    Image.fromarray(head_image()).save(ok)
    records = [ImageRecord(str(ok), "a", "train"), ImageRecord(str(black), "a", "test")]
    bundle = build_datasets(
        records, image_size=16, batch_size=2, split="folders", val_fraction=0, crop="brain"
    )
    images, _ = next(iter(bundle.test))
    assert images.shape == (1, 16, 16, 3) and float(np.max(images)) == 0.0


# ----------------------------------------------------------------------- huge image, memory

MAKE_HUGE = textwrap.dedent(
    """
    import sys
    from PIL import Image, ImageDraw
    image = Image.new("L", (10000, 10000), 0)
    ImageDraw.Draw(image).ellipse((1000, 1000, 9000, 9000), fill=150)
    image.save(sys.argv[1] + "/huge.jpg", quality=80)
    image.save(sys.argv[1] + "/huge.png")
    """
)

MEASURE_READ = textwrap.dedent(
    """
    import json, sys
    from kidney_tf.data.reading import ImageReadError, read_image

    def peak_mib():
        # VmHWM: peak RSS of THIS program. ru_maxrss would start at the parent's (pytest's)
        # RSS, which Linux carries across fork + exec, and hide the growth measured here.
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024

    folder, max_pixels = sys.argv[1], int(sys.argv[2])
    base = peak_mib()
    out = {"shape": read_image(folder + "/huge.jpg", max_pixels=max_pixels).shape}
    out["jpeg_growth_mib"] = peak_mib() - base
    try:
        read_image(folder + "/huge.png", max_pixels=max_pixels)
        out["png"] = "decoded"
    except ImageReadError as exc:
        out["png"] = str(exc)
    out["total_growth_mib"] = peak_mib() - base
    print(json.dumps(out))
    """
)

MEASURE_PIPELINE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from PIL import Image
    from kidney_tf.data.pipeline import build_datasets
    from kidney_tf.data.reading import ImageRecord

    def peak_mib():  # see MEASURE_READ
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024

    folder = sys.argv[1]
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(folder + "/small.png")
    records = [ImageRecord(folder + "/small.png", "a", "train"),
               ImageRecord(folder + "/huge.jpg", "a", "test")]
    bundle = build_datasets(records, image_size=64, batch_size=1, split="folders",
                            val_fraction=0, augment=False)
    base = peak_mib()
    for _ in bundle.test:
        pass
    growth = peak_mib() - base
    print(json.dumps({"growth_mib": growth}))
    """
)

# A full decode of the 10,000 x 10,000 JPEG with Pillow (gray, then RGB) peaks near 950 MiB.
FULL_RGB_MIB = 10_000 * 10_000 * 3 / 2**20  # 286 MiB: the decoded RGB array alone


def _python(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}


@pytest.fixture(scope="module")
def huge_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("huge")
    _python(MAKE_HUGE, str(folder))
    return folder


@pytest.mark.slow
def test_huge_image_is_read_with_bounded_memory(huge_images):
    default = _python(MEASURE_READ, str(huge_images), "50000000")
    assert default["shape"] == [5000, 5000, 3]  # decoded at 1/2 scale (JPEG DCT scaling)
    assert default["jpeg_growth_mib"] < 400  # a full decode peaks near 950 MiB
    assert "huge.png" in default["png"] and "max_pixels" in default["png"]
    assert default["total_growth_mib"] - default["jpeg_growth_mib"] < 20  # PNG refused unread

    small = _python(MEASURE_READ, str(huge_images), "10000000")
    assert small["shape"] == [2500, 2500, 3]
    assert small["jpeg_growth_mib"] < FULL_RGB_MIB / 2


@pytest.mark.slow
def test_pipeline_reads_huge_image_with_bounded_memory(huge_images, tmp_path):
    result = _python(MEASURE_PIPELINE, str(huge_images))
    assert result["growth_mib"] < 400


# ------------------------------------------------------------------ dataset-level problems


def test_empty_class_folder_is_reported_and_left_out(tmp_path):
    from kidney_tf.data.pipeline import build_datasets

    root = make_tree(tmp_path / "data")
    (root / "empty").mkdir()
    scan = scan_folder(root)
    assert scan.class_names == ["a", "b"]
    assert any(str(root / "empty") in w and "empty class folder" in w for w in scan.warnings)
    bundle = build_datasets(root, image_size=SIZE, batch_size=4, split="stratified")
    assert bundle.class_names == ["a", "b"]


def test_mismatched_mask_size_is_a_bad_file(tmp_path):
    root = make_tree(tmp_path / "data", per_class=2)
    masks = root / "masks" / "a"
    masks.mkdir(parents=True)
    Image.fromarray(np.zeros((SIZE + 4, SIZE), np.uint8)).save(masks / "a_00_scan.png")
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(masks / "a_01_scan.png")
    scan = scan_folder(root)
    assert len(scan.bad_files) == 1
    bad = scan.bad_files[0]
    assert bad.path == str(masks / "a_00_scan.png")
    assert "differs from image size" in bad.reason and "a_00_scan.png" in bad.reason
    assert [Path(r.path).name for r in scan.records if r.label == "a"] == ["a_01_scan.png"]
    with pytest.raises(ImageReadError, match="differs from image size"):
        scan_folder(root, strict=True)


def test_unknown_class_in_evaluation(tmp_path, capsys):
    from kidney_tf.evaluation.report import evaluate_model

    root = make_tree(tmp_path / "data", classes=("a", "b", "c"), per_class=3)
    model = tiny_model(("a", "b"))
    with pytest.raises(ValueError, match=r"\['c'\]") as info:
        evaluate_model(model, root, out_dir=tmp_path / "report", split_method="stratified")
    assert str(root) in str(info.value)

    path = tmp_path / "model.keras"
    model.save(path)
    out = tmp_path / "cli-report"
    code, _, err = run_cli(capsys, "evaluate", "--model", path, "--data", root, "--out", out)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("kidney-tf evaluate: error: ") and "'c'" in last and str(root) in last
    assert not (out / "metrics.json").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------- not a model file


def _not_models(folder: Path) -> dict[str, Path]:
    paths = {
        "random bytes": folder / "notamodel.keras",
        "text": folder / "readme.keras",
        "zip without a model": folder / "archive.keras",
        "garbage h5": folder / "weights.h5",
    }
    paths["random bytes"].write_bytes(np.random.default_rng(0).bytes(256))
    paths["text"].write_text("I am a model, trust me\n")
    with zipfile.ZipFile(paths["zip without a model"], "w") as archive:
        archive.writestr("notes.txt", "hello")
    paths["garbage h5"].write_bytes(b"\x89HDF-but-not-really")
    return paths


def test_load_model_names_the_file(tmp_path):
    for what, path in {**_not_models(tmp_path), "missing": tmp_path / "none.keras"}.items():
        with pytest.raises(ValueError) as info:
            kidney_tf.load_model(path)
        assert str(info.value).startswith(f"{path}: "), what


def test_evaluate_cli_refuses_a_file_that_is_not_a_model(tmp_path, capsys):
    root = make_tree(tmp_path / "data", per_class=2)
    model = _not_models(tmp_path)["random bytes"]
    out = tmp_path / "report"
    code, _, err = run_cli(capsys, "evaluate", "--model", model, "--data", root, "--out", out)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"kidney-tf evaluate: error: {model}: not a Keras model file")
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------- serving: image bytes


@pytest.mark.slow
def test_predict_image_bytes_refuses_non_images(tmp_path):
    import tensorflow as tf

    export = kidney_tf.export_saved_model(tiny_model(), tmp_path / "serving" / "1")
    served = tf.saved_model.load(str(export)).signatures["predict_image_bytes"]
    good = encode(head_image(), "PNG")
    jpeg = encode(head_image(), "JPEG")
    for bad, index in ((b"GET / HTTP/1.1", 1), (b"", 1), (b"\x00" * 64, 1)):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            served(image_bytes=tf.constant([good, bad]))
        assert f"image_bytes[{index}]" in info.value.message
        assert "is not a JPEG, PNG, GIF or BMP file" in info.value.message
    with pytest.raises(tf.errors.InvalidArgumentError):
        served(image_bytes=tf.constant([jpeg[: len(jpeg) // 3]]))
    result = served(image_bytes=tf.constant([good, jpeg]))  # the server keeps working
    assert result["probabilities"].shape == (2, 2)


# ------------------------------------------------- end to end: skip, count, inputs untouched


@pytest.mark.slow
def test_train_evaluate_crop_skip_bad_files_and_never_touch_inputs(tmp_path, capsys):
    root = make_tree(tmp_path / "data", per_class=6)
    for name, content in bad_files().items():
        (root / ("a" if len(name) % 2 else "b") / name).write_bytes(content)
    before = tree_state(root)
    run, report, cropped = tmp_path / "run", tmp_path / "report", tmp_path / "cropped"

    code, _, err = run_cli(
        capsys,
        *("train", "--data", root, "--out", run, "--arch", "resnet50", "--image-size", 32),
        *("--weights", "none", "--epochs", "1", "--batch-size", "4", "--split", "stratified"),
        *("--no-augment", "--patience", "0", "--quiet"),
    )
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert sorted(Path(b["path"]).name for b in config["bad_files"]) == sorted(bad_files())
    assert (run / "model.keras").is_file()
    assert tree_state(root) == before

    code, _, err = run_cli(
        capsys,
        *("evaluate", "--model", run / "model.keras", "--out", report),
        *("--max-cam-images", "0", "--extra-methods", "", "--quiet"),
    )
    assert code == 0, err
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n_images"] == sum(1 for line in (run / "split.csv").open() if ",test," in line)
    assert tree_state(root) == before

    # Evaluating the raw folder screens it again: bad files are skipped and listed, or --strict fails.
    code, out, err = run_cli(
        capsys,
        *("evaluate", "--model", run / "model.keras", "--data", root, "--out", tmp_path / "r2"),
        *("--max-cam-images", "0", "--extra-methods", "", "--quiet"),
    )
    assert code == 0, err
    skipped = json.loads((tmp_path / "r2" / "metrics.json").read_text())["data"]
    assert sorted(Path(b["path"]).name for b in skipped["skipped_bad_files"]) == sorted(bad_files())
    code, _, err = run_cli(
        capsys,
        *("evaluate", "--model", run / "model.keras", "--data", root, "--out", tmp_path / "r3"),
        *("--max-cam-images", "0", "--extra-methods", "", "--quiet", "--strict"),
    )
    assert code == 2 and any(name in err for name in bad_files()), err
    # nothing written before the failure but the output guard's marker of the new folder
    assert [p.name for p in (tmp_path / "r3").rglob("*")] in ([], [".kidney-tf-output.json"])
    assert tree_state(root) == before

    code, out, err = run_cli(capsys, "data", "crop", "--src", root, "--dst", cropped, "--size", 24)
    assert code == 0, err
    assert f"skipped: {len(bad_files())}" in out
    assert tree_state(root) == before
    for folder in (run, report, cropped):
        assert leftovers(folder) == [], folder


# ------------------------------------------------------- verify: blank images, stray files


def test_verify_warns_about_blank_images_and_stray_files(tmp_path, capsys):
    from kidney_tf.data.verify import verify_dataset

    root = make_tree(tmp_path / "data", per_class=3)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(root / "a" / "black.png")
    Image.fromarray(np.full((SIZE, SIZE, 3), 200, np.uint8)).save(
        root / "b" / "grey.jpg", quality=100
    )
    (root / "b" / "README.txt").write_text("how I collected these\n")
    report = verify_dataset(root)
    warnings = {issue.code: issue for issue in report.warnings}
    constant = warnings["constant_images"]
    assert constant.details["count"] == 2
    assert sorted(Path(p).name for p in constant.details["examples"]) == ["black.png", "grey.jpg"]
    assert any("README.txt" in w.message and "non-image" in w.message for w in report.warnings)
    assert report.exit_code == 1
    code, out, _ = run_cli(capsys, "data", "verify", "--root", root)
    assert code == 1 and "single pixel value" in out and "README.txt" in out

    clean = make_tree(tmp_path / "clean", per_class=3)
    assert "constant_images" not in verify_dataset(clean).codes()


def test_max_pixels_flag_sets_the_limit_of_every_reader_for_one_command(
    tmp_path, capsys, monkeypatch
):
    from kidney_tf.data.reading import MAX_PIXELS_ENV, max_pixels_limit

    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    root = make_tree(tmp_path / "data", per_class=3)
    big = root / "a" / "big.png"
    noise = np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8)
    Image.fromarray(noise).save(big)  # 3,600 pixels
    assert SIZE * SIZE < 2000
    code, out, _ = run_cli(capsys, "data", "verify", "--root", root, "--max-pixels", "2000")
    assert code == 1 and "Images: 6 readable, 1 unreadable" in out
    assert "big.png: image is 60x60 (3,600 pixels) > max_pixels=2,000" in out
    assert "--max-pixels N" in out
    assert MAX_PIXELS_ENV not in os.environ  # the limit held for that command only
    code, out, _ = run_cli(capsys, "data", "verify", "--root", root)
    assert "Images: 7 readable, 0 unreadable" in out

    assert max_pixels_limit() == 50_000_000 and max_pixels_limit(None) is None
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    assert max_pixels_limit() is None and max_pixels_limit(7) == 7
    monkeypatch.setenv(MAX_PIXELS_ENV, "many")
    with pytest.raises(ValueError, match="KIDNEY_TF_MAX_PIXELS='many': expected a pixel count"):
        max_pixels_limit()


def test_evaluate_names_a_missing_model_first(tmp_path, capsys):
    missing = tmp_path / "nope.keras"
    code, _, err = run_cli(capsys, "evaluate", "--model", missing, "--out", tmp_path / "r")
    assert code == 2
    assert err.strip() == f"kidney-tf evaluate: error: {missing}: model file not found"
    assert not (tmp_path / "r").exists()


# ------------------------------------------- argument errors before TensorFlow; no TF noise

REPO = Path(__file__).resolve().parents[1]
POISON = "raise ImportError('tensorflow was imported')\n"


def _kidney_tf(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kidney_tf", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_argument_errors_come_before_tensorflow_is_imported(tmp_path):
    poison = tmp_path / "poison"
    for name in ("tensorflow", "keras"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(POISON)
    env = {"PYTHONPATH": os.pathsep.join([str(poison), str(REPO)])}
    data = make_tree(tmp_path / "data", per_class=1)
    train = ("train", "--data", data, "--out", tmp_path / "run")
    cases = {
        ("--epochs", "0"): "argument --epochs: must be >= 1, got 0",
        (
            "--init",
            tmp_path / "missing.keras",
        ): f"{tmp_path / 'missing.keras'}: --init model not found",
        ("--batch-size", "many"): "argument --batch-size: expected an integer, got 'many'",
        ("--lr", "-1"): "argument --lr: must be a finite number > 0",
    }
    for extra, message in cases.items():
        proc = _kidney_tf(*train, *extra, env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kidney-tf train: error: "), proc.stderr
        assert message in lines[0]
    proc = _kidney_tf("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "r", env=env)
    assert proc.returncode == 2 and "nowhere: training data not found" in proc.stderr
    # control: the poisoned package really stops anything that imports TensorFlow
    control = _kidney_tf("train", "--data", data, "--out", tmp_path / "run", env=env)
    assert control.returncode != 0 and "tensorflow was imported" in control.stderr
    # the run folder was checked and claimed before TensorFlow: it holds only the guard's marker
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".kidney-tf-output.json"]

    # export: the model file, the version folder and the output guard, all before TensorFlow
    model = placeholder_model(tmp_path / "m.keras")
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"user's file")
    cases = {
        ("--model", tmp_path / "nope.keras", "--out", tmp_path / "s" / "1"): (
            f"{tmp_path / 'nope.keras'}: model file not found"
        ),
        ("--model", model, "--out", notes, "--overwrite"): "the version folder must be a positive",
        ("--model", model, "--out", tmp_path / "s", "--version", "v2"): (
            "version must be a positive integer or 'auto', got 'v2'"
        ),
    }
    for args, message in cases.items():
        proc = _kidney_tf("export", *args, env=env)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "tensorflow was imported" not in proc.stderr
    assert notes.read_bytes() == b"user's file" and not (tmp_path / "s").exists()
    control = _kidney_tf("export", "--model", model, "--out", tmp_path / "s" / "1", env=env)
    assert control.returncode != 0 and "tensorflow was imported" in control.stderr


NATIVE_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit|cudart_stub", re.M)


@pytest.mark.slow
def test_commands_print_no_tensorflow_startup_noise(tmp_path):
    tiny_model().save(tmp_path / "m.keras")
    export = ("export", "--model", tmp_path / "m.keras", "--out", tmp_path / "s", "--version")
    proc = _kidney_tf(*export, "auto", "--no-explain", "-q")
    assert proc.returncode == 0, proc.stderr
    assert NATIVE_LOG.search(proc.stderr) is None, proc.stderr
    assert (tmp_path / "s" / "1" / "saved_model.pb").is_file()
    failed = _kidney_tf("export", "--model", tmp_path / "none.keras", "--out", tmp_path / "s" / "2")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"kidney-tf export: error: {tmp_path / 'none.keras'}: model file not found"
    ]


def test_model_files_and_outputs_are_checked_before_tensorflow(tmp_path):
    """Found by benchmarks/hostile_inputs.py: these were refused only after TensorFlow's start
    (a minute on a busy machine), and benchmark --out replaced any file at the end of its run."""
    from kidney_bench.core import SCHEMA, is_benchmark_report

    poison = tmp_path / "poison"
    for name in ("tensorflow", "keras"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(POISON)
    env = {"PYTHONPATH": os.pathsep.join([str(poison), str(REPO)])}
    data = make_tree(tmp_path / "data", per_class=1)
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.docx").write_bytes(b"years of work")
    notes = tmp_path / "notes.png"
    notes.write_bytes(encode(head_image(), "PNG"))
    model = placeholder_model(tmp_path / "m.keras")
    before = tree_state(tmp_path)
    out = tmp_path / "r"
    cases = {
        ("train", "--data", data, "--out", thesis): f"{thesis}: folder is not empty",
        ("train", "--out", out): "pass --data, --manifest or --config",
        ("evaluate", "--model", thesis, "--data", data, "--out", tmp_path / "r1"): (
            f"{thesis}: is a folder, not a model file"
        ),
        ("evaluate", "--model", notes, "--data", data, "--out", tmp_path / "r2"): (
            f"{notes}: not a Keras model file"
        ),
        ("evaluate", "--model", model, "--data", data, "--out", out, "--method", "gradcam+++"): (
            "argument --method: invalid choice: 'gradcam+++'"
        ),
        ("evaluate", "--model", model, "--data", data, "--out", out, "--extra-methods", "nope"): (
            "--extra-methods: unknown method(s) nope"
        ),
        ("explain", "--model", model, "--image", notes, "--out", thesis): (
            f"{thesis}: folder is not empty"
        ),
        ("explain", "--model", tmp_path / "no.keras", "--image", notes, "--out", tmp_path / "r3"): (
            f"{tmp_path / 'no.keras'}: model file not found"
        ),
        ("export", "--model", notes, "--out", tmp_path / "s" / "1"): (
            f"{notes}: not a Keras model file"
        ),
        ("benchmark", "--preset", "smoke", "--out", notes): (
            f"{notes}: exists and is not an earlier benchmark report"
        ),
        ("benchmark", "--preset", "smoke", "--workdir", thesis, "--out", tmp_path / "b.json"): (
            f"{thesis}: folder is not empty and is not an earlier 'kidney-tf benchmark' output"
        ),
    }
    for args, message in cases.items():
        proc = _kidney_tf(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, proc.stderr)
    # nothing of the user's changed (evaluate and explain may create their new report folders)
    after = tree_state(tmp_path)
    new = sorted(set(after) - set(before))
    assert [p for p in new if not p.startswith(("r1", "r2", "r3", "poison"))] == [], new
    assert {p: after[p] for p in before} == before
    report = tmp_path / "bench.json"
    report.write_text(json.dumps({"schema": SCHEMA, "figures": []}))
    assert is_benchmark_report(report) and not is_benchmark_report(notes)


def test_verify_names_a_binary_manifest_and_counts_are_checked(tmp_path, capsys):
    root = make_tree(tmp_path / "data", per_class=1)
    notes = tmp_path / "notes.png"
    notes.write_bytes(encode(head_image(), "PNG"))
    code, _, err = run_cli(capsys, "data", "verify", "--root", root, "--manifest", notes)
    assert code == 2 and err.count("\n") == 1
    assert f"{notes}: invalid dataset manifest: not a JSON text file" in err
    for argv, message in (
        (("data", "verify", "--root", root, "--workers", "0"), "argument --workers: must be >= 1"),
        (("compare", root, root, "--out", tmp_path / "c", "--max-pairs", "-1"), "--max-pairs"),
    ):
        with pytest.raises(SystemExit) as info:
            run_cli(capsys, *argv)
        assert info.value.code == 2 and message in capsys.readouterr().err


def test_crop_of_a_folder_without_images_fails_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "Cyst").mkdir(parents=True)
    (empty / "Cyst" / "notes.txt").write_text("no scans yet")
    code, _, err = run_cli(capsys, "data", "crop", "--src", empty, "--dst", tmp_path / "dst")
    assert code == 2 and err.count("\n") == 1
    assert f"{empty}: no images to crop" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
