"""``kidney-tf explain`` on a tiny saved model and generated images."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from kidney_tf.cli.main import main
from kidney_tf.models.builders import Classifier
from kidney_tf.utils.io import OUTPUT_MARKER

SIZE = 32
CLASSES = ["Cyst", "Normal", "Stone"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(len(CLASSES), name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = Classifier(
        inputs, outputs, class_names=CLASSES, metadata={"image_size": SIZE, "crop": None}
    )
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture()
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        pixels = np.zeros((48, 40, 3), np.uint8)
        pixels[8:40, 6:34] = rng.integers(60, 255, (32, 28, 3))  # a "body" on black
        Image.fromarray(pixels).save(folder / f"scan_{i}.png")
    return folder


def test_explain_writes_overlays_and_json(model_path, image_dir, tmp_path):
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in image_dir.iterdir()}
    code = main(
        ["explain", "--model", str(model_path), "--image", str(image_dir / "scan_0.png"),
         str(image_dir / "scan_1.png"), "--out", str(out), "--foreground", "body", "--save-maps",
         "-q"]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "explanations.json").read_text())
    assert report["method"] == "gradcam++" and report["layer"] == "conv2"
    assert report["native_shape"] == [16, 16] and report["image_size"] == SIZE
    assert report["foreground"] == "body"
    assert len(report["images"]) == 2
    first = report["images"][0]
    assert first["predicted"] in CLASSES and first["explained_class"] == first["predicted"]
    assert set(first["statistics"]) >= {"entropy", "radius", "snr_db", "outside_fraction"}
    assert 0 <= first["statistics"]["entropy"] <= 1
    overlay = Image.open(out / first["overlay"])
    assert overlay.format == "PNG" and overlay.size[0] > overlay.size[1]
    maps = np.load(out / "maps.npz")["maps"]
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    assert {p: p.read_bytes() for p in image_dir.iterdir()} == before  # inputs untouched
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [OUTPUT_MARKER]  # no temp files left, only the guard's marker


def test_explain_folder_with_class_name_and_method(model_path, image_dir, tmp_path):
    out = tmp_path / "out"
    args = ["explain", "--model", str(model_path), "--image", str(image_dir), "--out", str(out)]
    assert main([*args, "--class", "Stone", "--method", "gradcam", "-q"]) == 0
    report = json.loads((out / "explanations.json").read_text())
    assert [r["explained_class"] for r in report["images"]] == ["Stone"] * 3
    assert sorted(p.name for p in out.glob("*.png")) == [f"scan_{i}.gradcam.png" for i in range(3)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "Tumor"], "not one of Cyst, Normal, Stone"),
        (["--class", "5"], "out of range"),
        (["--layer", "nope"], "no layer 'nope'"),
        (["--image-size", "64"], "takes 32 px"),
    ],
)
def test_explain_errors_are_one_line(model_path, image_dir, tmp_path, capsys, extra, message):
    args = [
        "explain",
        "--model",
        str(model_path),
        "--image",
        str(image_dir),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err


def test_explain_bad_image_names_the_file(model_path, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    args = [
        "explain",
        "--model",
        str(model_path),
        "--image",
        str(bad),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main([*args[:4], str(tmp_path / "missing.png"), *args[5:]]) == 2
    assert "missing.png" in capsys.readouterr().err
