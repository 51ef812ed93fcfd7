"""SavedModel export for TF Serving: signatures, fidelity, bad input, atomic writes, CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kidney_tf.export.saved_model import (
    METADATA_DIR,
    METADATA_FILE,
    export_saved_model,
    read_export_metadata,
    resolve_version_dir,
)

CLASSES = ["cyst", "normal", "stone"]
SIZE = 32


def tiny_cnn(size: int | None = SIZE, num_classes: int = 3, seed: int = 0) -> keras.Model:
    """Functional CNN shaped like the package's classifiers: named last conv, GAP, logits, softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return tiny_cnn()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serving") / "tiny" / "1"
    return export_saved_model(model, out, class_names=CLASSES, source="tiny.keras")


def _images(n: int = 4, size: int = SIZE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


# ----------------------------------------------------------------------- the fresh-process check

SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    cfg = json.loads(open(sys.argv[1]).read())
    loaded = tf.saved_model.load(cfg["export_dir"])
    sig = loaded.signatures
    out = {"signatures": sorted(sig.keys())}
    images = tf.constant(np.load(cfg["images"]))
    files = [open(p, "rb").read() for p in cfg["files"]]

    r = sig["serving_default"](images=images)
    out["sd"] = {k: v.numpy().tolist() for k, v in r.items() if k != "class_name"}
    out["sd"]["class_name"] = [s.decode() for s in r["class_name"].numpy()]
    r = sig["predict_image_bytes"](image_bytes=tf.constant(files))
    out["bytes"] = r["probabilities"].numpy().tolist()
    e = sig["explain"](images=images)
    keys = ("cam", "cam_entropy", "cam_radius", "cam_snr", "class_id")
    out["explain"] = {k: e[k].numpy().tolist() for k in keys}
    png = tf.cast(tf.io.decode_png(files[0], channels=3), tf.float32)
    e = sig["explain"](images=png[tf.newaxis])
    out["explain_file"] = {k: e[k].numpy().tolist() for k in keys if k != "cam"}

    errors = []
    for bad in (b"definitely not an image", files[0][: len(files[0]) // 3], b""):
        try:
            sig["predict_image_bytes"](image_bytes=tf.constant([files[0], bad]))
            errors.append(None)
        except tf.errors.InvalidArgumentError as exc:
            errors.append(exc.message)
    out["errors"] = errors
    r = sig["predict_image_bytes"](image_bytes=tf.constant(files))
    out["bytes_after_errors"] = r["probabilities"].numpy().tolist()
    out["kidney_tf_imported"] = any(m.split(".")[0] == "kidney_tf" for m in sys.modules)
    assert "kidney_tf" not in sys.modules
    json.dump(out, open(cfg["out"], "w"))
    """
)


@pytest.fixture(scope="module")
def served(exported, model, tmp_path_factory) -> dict:
    """Run every signature in a fresh interpreter that only has TensorFlow."""
    work = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(2)
    decoded = [
        rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        rng.integers(0, 256, (45, 51, 3), dtype=np.uint8),  # resized inside the graph
    ]
    files = []
    for i, image in enumerate(decoded):
        path = work / f"img{i}.png"
        path.write_bytes(tf.io.encode_png(image).numpy())
        files.append(str(path))
    gray = rng.integers(0, 256, (SIZE, SIZE, 1), dtype=np.uint8)
    (work / "gray.jpg").write_bytes(tf.io.encode_jpeg(gray).numpy())
    files.append(str(work / "gray.jpg"))
    images = _images()
    np.save(work / "images.npy", images)
    cfg = {
        "export_dir": str(exported),
        "images": str(work / "images.npy"),
        "files": files,
        "out": str(work / "out.json"),
    }
    (work / "cfg.json").write_text(json.dumps(cfg))
    (work / "serve.py").write_text(SERVE_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, str(work / "serve.py"), str(work / "cfg.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((work / "out.json").read_text())
    result["images"] = images
    result["files"] = files
    return result


@pytest.mark.slow
def test_fresh_process_serves_all_signatures_without_kidney_tf(served):
    assert served["kidney_tf_imported"] is False
    assert served["signatures"] == ["explain", "predict_image_bytes", "serving_default"]


@pytest.mark.slow
def test_serving_default_matches_keras(served, model):
    expected = model.predict(served["images"], verbose=0)
    np.testing.assert_allclose(served["sd"]["probabilities"], expected, atol=1e-5)
    ids = expected.argmax(axis=1)
    assert served["sd"]["class_id"] == ids.tolist()
    assert served["sd"]["class_name"] == [CLASSES[i] for i in ids]


@pytest.mark.slow
def test_image_bytes_decodes_resizes_like_training(served, model):
    from kidney_tf.data.crop_tf import resize
    from kidney_tf.data.reading import read_image

    batch = []
    for path in served["files"]:
        image = read_image(path)  # PIL: the served decoder gives its pixels exactly
        batch.append(tf.clip_by_value(tf.round(resize(image, SIZE)), 0, 255))
    expected = model.predict(tf.stack(batch), verbose=0)
    np.testing.assert_allclose(served["bytes"], expected, atol=1e-5)


@pytest.mark.slow
def test_bad_bytes_are_request_errors_and_serving_continues(served):
    not_image, truncated, empty = served["errors"]
    assert not_image is not None and "image_bytes[1] is not a JPEG, PNG, GIF or BMP" in not_image
    assert '"b64"' in not_image.replace('\\"', '"')
    assert truncated is not None and "PNG" in truncated
    assert empty is not None and "got 0 bytes" in empty
    np.testing.assert_allclose(served["bytes_after_errors"], served["bytes"], atol=1e-6)


@pytest.mark.slow
def test_explain_gives_gradcam_plus_plus_and_the_evaluation_statistics(served, model):
    from kidney_tf.explain.cams import compute_cams
    from kidney_tf.explain.statistics import summarize_maps

    explain = served["explain"]
    cam = np.asarray(explain["cam"], dtype=np.float32)
    images = served["images"]
    assert cam.shape == (len(images), SIZE, SIZE)
    assert explain["class_id"] == served["sd"]["class_id"]
    # the map evaluate and `kidney-tf explain` compute with tf-keras-vis, and its statistics
    reference = compute_cams(model, images, method="gradcam++", class_index=explain["class_id"])
    np.testing.assert_allclose(cam, reference, atol=1e-4)
    stats = summarize_maps(reference)["per_image"]
    for key, name in (("cam_entropy", "entropy"), ("cam_radius", "radius"), ("cam_snr", "snr")):
        np.testing.assert_allclose(explain[key], stats[name], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_served_cam_statistics_equal_kidney_tf_explain(served, model, tmp_path):
    from kidney_tf.cli.main import main

    path = tmp_path / "tiny.keras"
    model.save(path)
    out = tmp_path / "explain"
    image = served["files"][0]  # a PNG at the model's input size: no crop, no resize
    argv = ["explain", "--model", str(path), "--image", image, "--out", str(out)]
    assert main([*argv, "--method", "gradcam++", "-q"]) == 0
    stats = json.loads((out / "explanations.json").read_text())["images"][0]["statistics"]
    served_stats = served["explain_file"]
    assert abs(served_stats["cam_entropy"][0] - stats["entropy"]) < 1e-4
    assert abs(served_stats["cam_radius"][0] - stats["radius"]) < 1e-4
    assert abs(served_stats["cam_snr"][0] - stats["snr"]) < 1e-4 * max(1.0, stats["snr"])


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    proc = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(exported)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("serving_default", "predict_image_bytes", "explain"):
        assert f"signature_def['{name}']" in proc.stdout
    for tensor in ("inputs['images']", "inputs['image_bytes']", "outputs['cam']", "DT_STRING"):
        assert tensor in proc.stdout


# ---------------------------------------------------------------------------- in-process checks


def test_layout_metadata_and_permissions(exported):
    assert exported.name == "1"
    assert (exported / "saved_model.pb").is_file() and (exported / "variables").is_dir()
    meta = read_export_metadata(exported)
    assert meta["class_names"] == CLASSES
    assert meta["image_size"] == [SIZE, SIZE]
    assert meta["crop"] is None and meta["temperature"] is None
    assert meta["cam_layer"] == "last_conv"
    assert meta["source_model"].endswith("tiny.keras")
    assert set(meta["versions"]) == {"kidney_tf", "tensorflow", "keras"}
    assert meta["signatures"]["predict_image_bytes"]["inputs"] == {"image_bytes": "string [-1]"}
    assert meta["signatures"]["explain"]["outputs"]["cam"] == f"float32 [-1, {SIZE}, {SIZE}]"
    mask = os.umask(0)
    os.umask(mask)
    metadata_file = exported / METADATA_DIR / METADATA_FILE
    assert stat.S_IMODE(exported.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE(metadata_file.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in exported.parent.iterdir()] == ["1"]  # no temp folders left


def test_refuses_to_overwrite_then_replaces_with_overwrite(exported, model):
    before = (exported / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(model, exported, class_names=CLASSES)
    assert (exported / "saved_model.pb").read_bytes() == before
    # overwrite into a copy so the shared fixture stays intact
    other = exported.parent.parent / "other" / "3"
    export_saved_model(model, other, class_names=CLASSES, include_explain=False)
    export_saved_model(model, other, class_names=["a", "b", "c"], overwrite=True)
    assert read_export_metadata(other)["class_names"] == ["a", "b", "c"]
    assert sorted(p.name for p in other.parent.iterdir()) == ["3"]


def test_failure_mid_export_leaves_nothing(model, tmp_path, monkeypatch):
    import kidney_tf.export.saved_model as sm

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sm, "write_json_atomic", boom)  # after the SavedModel itself is written
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path / "m" / "1", class_names=CLASSES, include_explain=False)
    assert list((tmp_path / "m").iterdir()) == []


def test_versions_auto_and_explicit(tmp_path):
    base = tmp_path / "kidney"
    assert resolve_version_dir(base, "auto") == base / "1"
    (base / "1").mkdir(parents=True)
    (base / "7").mkdir()
    (base / "notes").mkdir()
    assert resolve_version_dir(base, "auto") == base / "8"
    assert resolve_version_dir(base, 3) == base / "3"
    assert resolve_version_dir(base / "2") == base / "2"
    for bad in ("v2", "0", -1, 0, "01", "1.5", True):
        with pytest.raises(ValueError, match="positive integer"):
            resolve_version_dir(base, bad)
    for bad in ("notes.png", "0", "v1", "latest"):
        with pytest.raises(ValueError, match="version folder must be a positive integer"):
            resolve_version_dir(base / bad)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="a file is there"):
        resolve_version_dir(tmp_path / "file", "auto")


def test_cli_export_never_replaces_a_user_path(model, tmp_path, capsys):
    """Case 2 of issue 15: --out onto a file, a non-numeric or foreign folder is refused."""
    from kidney_tf.cli.main import main

    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"my notes")
    user = tmp_path / "serving" / "1"
    user.mkdir(parents=True)
    (user / "thesis.txt").write_text("mine")
    export = ["export", "--model", str(model_path), "--overwrite", "--no-explain", "--out"]
    for argv in (
        [str(notes)],
        [str(notes), "--version", "auto"],
        [str(tmp_path / "serving"), "--version", "0"],
        [str(tmp_path / "serving"), "--version", "v2"],
        [str(user)],
        [str(tmp_path / "serving"), "--version", "1"],
        [str(tmp_path)],
    ):
        assert main([*export, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kidney-tf export: error: ") and err.count("\n") == 1, err
    assert notes.read_bytes() == b"my notes" and (user / "thesis.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["1"]
    # an earlier export is replaced with --overwrite
    assert main([*export, str(tmp_path / "serving"), "--version", "2"]) == 0
    assert main([*export, str(tmp_path / "serving" / "2")]) == 0
    assert "serving/2" in capsys.readouterr().out


def test_temperature_scales_logits_in_every_signature(model, tmp_path):
    path = export_saved_model(model, tmp_path / "t" / "1", class_names=CLASSES, temperature=2.5)
    loaded = tf.saved_model.load(str(path))
    images = _images(3)
    logits = keras.Model(model.inputs[0], model.get_layer("logits").output)(images)
    expected = tf.nn.softmax(logits / 2.5).numpy()
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    explained = loaded.signatures["explain"](images=tf.constant(images))
    np.testing.assert_allclose(explained["probabilities"].numpy(), expected, atol=1e-5)
    assert read_export_metadata(path)["temperature"] == 2.5


def test_bad_arguments_are_clear_errors(model, tmp_path):
    out = tmp_path / "x" / "1"
    with pytest.raises(ValueError, match="2 class names"):
        export_saved_model(model, out, class_names=["a", "b"])
    with pytest.raises(ValueError, match="crop must be"):
        export_saved_model(model, out, class_names=CLASSES, crop="kidney")
    with pytest.raises(ValueError, match="temperature must be"):
        export_saved_model(model, out, class_names=CLASSES, temperature=0)
    with pytest.raises(ValueError, match="does not match the model's input size"):
        export_saved_model(model, out, class_names=CLASSES, image_size=64)
    with pytest.raises(ValueError, match="pass image_size"):
        export_saved_model(tiny_cnn(size=None), out, class_names=CLASSES)
    assert not (tmp_path / "x").exists()


def test_dynamic_size_model_exports_at_given_size(tmp_path):
    path = export_saved_model(
        tiny_cnn(size=None), tmp_path / "d" / "1", class_names=CLASSES, image_size=24
    )
    assert read_export_metadata(path)["image_size"] == [24, 24]


def test_cli_export(model, tmp_path, capsys):
    from kidney_tf.cli.main import main

    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    out = tmp_path / "serving" / "tiny"
    argv = ["export", "--model", str(model_path), "--out", str(out), "--version", "auto"]
    assert main([*argv, "--class-names", "a,b,c", "--no-explain"]) == 0
    printed = capsys.readouterr().out
    assert "predict_image_bytes(image_bytes: string [-1])" in printed
    assert f"saved_model_cli show --all --dir {out / '1'}" in printed
    assert "explain" not in printed
    assert read_export_metadata(out / "1")["class_names"] == ["a", "b", "c"]
    assert main(["export", "--model", str(model_path), "--out", str(out / "1")]) == 2
    assert "already exists" in capsys.readouterr().err


# ------------------------------------------------------------------------------- real MRI + crop


@pytest.mark.real_data
@pytest.mark.slow
def test_image_bytes_with_brain_crop_matches_tf_crop(brain_mri_sample, tmp_path):
    from kidney_tf.data.crop_tf import tf_crop_brain
    from kidney_tf.data.reading import read_image

    size = 64
    model = tiny_cnn(size=size, num_classes=4, seed=3)
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    path = export_saved_model(
        model, tmp_path / "brain" / "1", class_names=names, crop="brain", include_explain=False
    )
    assert read_export_metadata(path)["crop"] == "brain"
    files = sorted(brain_mri_sample.glob("*/*.jpg"))[:3]
    data = [f.read_bytes() for f in files]
    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["predict_image_bytes"](image_bytes=tf.constant(data))

    cropped = [
        tf.clip_by_value(tf.round(tf_crop_brain(read_image(f), size)), 0, 255) for f in files
    ]
    reference = loaded.signatures["serving_default"](images=tf.stack(cropped))
    np.testing.assert_allclose(
        served["probabilities"].numpy(), reference["probabilities"].numpy(), atol=1e-5
    )
    assert served["class_name"].numpy().tolist() == reference["class_name"].numpy().tolist()


BYTES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    export_dir, out, *files = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    data = tf.constant([open(p, "rb").read() for p in files])
    r = loaded.signatures["predict_image_bytes"](image_bytes=data)
    json.dump({
        "probabilities": r["probabilities"].numpy().tolist(),
        "class_name": [s.decode() for s in r["class_name"].numpy()],
        "kidney_tf_imported": any(m.split(".")[0] == "kidney_tf" for m in sys.modules),
    }, open(out, "w"))
    """
)


def serve_image_bytes(export, files, tmp_path: Path, timeout: float) -> dict:
    """``predict_image_bytes`` of ``export`` on ``files`` in a fresh process that imports
    TensorFlow only (BYTES_SCRIPT); its JSON result, after checking kidney_tf stayed out."""
    (tmp_path / "serve.py").write_text(BYTES_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "serve.py"), str(export), str(tmp_path / "out.json"),
         *map(str, files)],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads((tmp_path / "out.json").read_text())
    assert served["kidney_tf_imported"] is False
    return served


@pytest.mark.real_data
@pytest.mark.slow
def test_image_bytes_with_body_crop_in_a_fresh_process(kidney_ct_sample, tmp_path):
    """Raw CT JPEGs through the body-crop bytes signature, served by a process with only
    TensorFlow, equal the Keras model on the package's TF body crop of the same files."""
    from kidney_tf.data.crop_tf import tf_crop_body
    from kidney_tf.data.reading import read_image

    size = 64
    model = tiny_cnn(size=size, num_classes=4, seed=4)
    names = ["Cyst", "Normal", "Stone", "Tumor"]
    path = export_saved_model(
        model, tmp_path / "kidney" / "1", class_names=names, crop="body", include_explain=False
    )
    assert read_export_metadata(path)["crop"] == "body"
    files = [sorted((kidney_ct_sample / name).glob("*.jpg"))[0] for name in names]
    served = serve_image_bytes(path, files, tmp_path, timeout=300)

    cropped = [tf.clip_by_value(tf.round(tf_crop_body(read_image(f), size)), 0, 255) for f in files]
    expected = model.predict(tf.stack(cropped), verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    assert served["class_name"] == [names[i] for i in expected.argmax(axis=1)]
    # the crop mattered: the uncropped, resized scans give other probabilities
    from kidney_tf.data.crop_tf import resize

    plain = [tf.clip_by_value(tf.round(resize(read_image(f), size)), 0, 255) for f in files]
    assert np.abs(model.predict(tf.stack(plain), verbose=0) - expected).max() > 1e-4


# ------------------------------------------------------------------ integration with the package


def test_fostering_model_exports_its_cams_names_and_metadata(tmp_path):
    from kidney_tf import load_model
    from kidney_tf.training.fostering import CamFosteringModel

    fostered = CamFosteringModel.from_classifier(
        tiny_cnn(seed=5),
        cam_weight=0.1,
        class_names=CLASSES,
        metadata={"temperature": 1.5, "crop": "body", "dataset": "phantoms"},
    )
    fostered.save(tmp_path / "fostered.keras")
    model = load_model(tmp_path / "fostered.keras")
    path = export_saved_model(model, tmp_path / "serving" / "1")  # everything from the model
    meta = read_export_metadata(path)
    assert meta["class_names"] == CLASSES
    assert (meta["temperature"], meta["crop"], meta["cam_layer"]) == (1.5, "body", "last_conv")

    images = _images(3, seed=7)
    explained = tf.saved_model.load(str(path)).signatures["explain"](images=tf.constant(images))
    logits = keras.Model(model.inputs[0], model.get_layer("logits").output)(images)
    probabilities = tf.nn.softmax(logits / 1.5).numpy()
    np.testing.assert_allclose(explained["probabilities"].numpy(), probabilities, atol=1e-5)
    ids = probabilities.argmax(axis=1)
    assert explained["class_name"].numpy().tolist() == [CLASSES[i].encode() for i in ids]
    # Grad-CAM++ as tf-keras-vis computes it (evaluate, `kidney-tf explain`); for this GAP head
    # it is the fostering model's closed-form gradcam++ map, zoomed and scaled to [0, 1]
    from kidney_tf.explain.cams import compute_cams
    from kidney_tf.explain.maps import expand_cams, head_cams

    reference = compute_cams(model, images, method="gradcam++", class_index=ids)
    np.testing.assert_allclose(explained["cam"].numpy(), reference, atol=1e-4)
    features = keras.Model(model.inputs[0], model.get_layer("last_conv").output)(images)
    kernel = model.get_layer("logits").kernel.numpy()[:, ids].T
    closed = expand_cams(head_cams(features, kernel, "gradcam++"), (SIZE, SIZE)).numpy()
    np.testing.assert_allclose(closed, reference, atol=1e-4)


# ------------------------------------------------------ serving contract (issue 15, 4 and 5)


def test_every_signature_checks_each_request_and_keeps_serving(exported):
    sig = tf.saved_model.load(str(exported)).signatures
    good = tf.constant(_images(2))
    expected = f"must be float32 [batch, {SIZE}, {SIZE}, 3]"
    for name in ("serving_default", "explain"):
        for bad, shape in (
            (np.zeros((1, 16, 16, 3), np.float32), "[1, 16, 16, 3]"),
            (np.zeros((1, SIZE, SIZE, 1), np.float32), f"[1, {SIZE}, {SIZE}, 1]"),
            (np.zeros((2, SIZE, 64, 3), np.float32), f"[2, {SIZE}, 64, 3]"),
        ):
            with pytest.raises(tf.errors.InvalidArgumentError) as info:
                sig[name](images=tf.constant(bad))
            assert f"images {expected}" in info.value.message
            assert f"got shape {shape}" in info.value.message
        with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
            sig[name](images=tf.constant(_images(1).astype(np.uint8)))
        assert sig[name](images=good)["probabilities"].shape == (2, len(CLASSES))


def test_empty_batches_return_empty_outputs(exported):
    sig = tf.saved_model.load(str(exported)).signatures
    empty = tf.zeros([0, SIZE, SIZE, 3])
    result = sig["serving_default"](images=empty)
    assert result["probabilities"].shape == (0, len(CLASSES))
    assert result["class_id"].shape == (0,) and result["class_name"].shape == (0,)
    result = sig["predict_image_bytes"](image_bytes=tf.constant([], tf.string))
    assert result["probabilities"].shape == (0, len(CLASSES))
    result = sig["explain"](images=empty)
    assert result["cam"].shape == (0, SIZE, SIZE) and result["cam_entropy"].shape == (0,)


def _encoded(fmt: str, width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def test_header_size_matches_pillow():
    from kidney_tf.export.image_bytes import header_size

    for fmt in ("PNG", "GIF", "BMP"):
        for width, height in ((37, 5), (300, 1025), (70000 // 100, 3)):
            size = header_size(tf.constant(_encoded(fmt, width, height))).numpy()
            assert size.tolist() == [width, height], fmt
    assert header_size(tf.constant(_encoded("JPEG", 40, 30))).numpy().tolist() == [0, 0]
    assert header_size(tf.constant(b"BM")).numpy().tolist() == [0, 0]


def test_image_bytes_refuses_images_above_the_pixel_cap(model, tmp_path):
    from kidney_tf.data.reading import DEFAULT_MAX_PIXELS

    path = export_saved_model(
        model, tmp_path / "cap" / "1", class_names=CLASSES, include_explain=False, max_pixels=1000
    )
    assert read_export_metadata(path)["max_pixels"] == 1000
    served = tf.saved_model.load(str(path)).signatures["predict_image_bytes"]
    small, big = _encoded("PNG", 30, 30), _encoded("PNG", 50, 21)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        served(image_bytes=tf.constant([small, big]))
    assert "image_bytes[1] is 50x21 pixels, above the max_pixels=1,000 of this export" in (
        info.value.message
    )
    for fmt in ("GIF", "BMP"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels=1,000"):
            served(image_bytes=tf.constant([_encoded(fmt, 40, 40)]))
    # JPEGs are decoded at reduced scale (as the CLI reads them), small images pass
    ok = served(image_bytes=tf.constant([small, _encoded("JPEG", 40, 40)]))
    assert ok["probabilities"].shape == (2, len(CLASSES))
    assert read_export_metadata(_default_export(model, tmp_path))["max_pixels"] == (
        DEFAULT_MAX_PIXELS
    )


def _default_export(model, tmp_path) -> Path:
    return export_saved_model(
        model, tmp_path / "default" / "1", class_names=CLASSES, include_explain=False
    )


WARMUP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    export_dir, out = sys.argv[1], sys.argv[2]
    sig = tf.saved_model.load(export_dir).signatures
    result = {"warmup": []}
    path = export_dir + "/assets.extra/tf_serving_warmup_requests"
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {k: tf.make_tensor_proto(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = sig[request.model_spec.signature_name](
            **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        )
        result["warmup"].append(
            [request.model_spec.signature_name, sorted(inputs), list(outputs["probabilities"].shape)]
        )

    def call(request):
        try:
            name = request.model_spec.signature_name or "serving_default"
            kwargs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            return {k: list(v.shape) for k, v in sig[name](**kwargs).items()}
        except tf.errors.InvalidArgumentError as exc:
            return exc.message

    good = predict_pb2.PredictRequest()
    good.model_spec.name = "tiny"
    good.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 32, 32, 3), np.float32)))
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "tiny"
    bad.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64, 64, 1), np.float32)))
    result["requests"] = [call(good), call(bad), call(good)]
    result["kidney_tf_imported"] = any(m.split(".")[0] == "kidney_tf" for m in sys.modules)
    json.dump(result, open(out, "w"))
    """
)


@pytest.mark.slow
def test_warmup_requests_and_predict_requests_in_a_fresh_process(exported, tmp_path):
    """TF Serving's own protos (tensorflow-serving-api) read the warm-up records and build
    requests that the signatures answer, in a process without kidney_tf."""
    script = tmp_path / "warmup.py"
    script.write_text(WARMUP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(exported), str(tmp_path / "out.json")],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["kidney_tf_imported"] is False
    assert result["warmup"] == [
        ["serving_default", ["images"], [1, len(CLASSES)]],
        ["predict_image_bytes", ["image_bytes"], [1, len(CLASSES)]],
        ["explain", ["images"], [1, len(CLASSES)]],
    ]
    good, bad, again = result["requests"]
    assert good["probabilities"] == [2, len(CLASSES)] and again == good
    assert isinstance(bad, str)
    assert f"images must be float32 [batch, {SIZE}, {SIZE}, 3]" in bad
    assert "got shape [1, 64, 64, 1]" in bad
