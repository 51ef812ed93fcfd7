"""evaluate_model on a tiny model whose predictions are known (the brightest colour channel wins)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from kidney_tf.evaluation.render import SECTIONS
from kidney_tf.evaluation.report import evaluate_model
from kidney_tf.evaluation.schema import load_cam_examples

CLASSES = ["red", "green", "blue"]
SIZE = 32


def toy_model(size: int = SIZE, n_classes: int = 3):
    """Conv 1x1 identity -> GAP -> Dense(20·I) -> softmax: predicts the brightest channel."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    conv = keras.layers.Conv2D(n_classes, 1, activation="relu", name="last_conv")
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    dense = keras.layers.Dense(n_classes, name="logits")
    outputs = keras.layers.Activation("softmax", name="probabilities")(dense(x))
    model = keras.Model(inputs, outputs, name="toy")
    conv.set_weights(
        [np.eye(3, n_classes, dtype="float32")[None, None], np.zeros(n_classes, "float32")]
    )
    dense.set_weights([20 * np.eye(n_classes, dtype="float32"), np.zeros(n_classes, "float32")])
    return model


def toy_data(n: int = 12, size: int = SIZE, seed: int = 0):
    """Gray disc ("body") with a bright blob (the lesion mask) in the class colour.

    Every 5th image's blob has the *next* class's colour, so the model gets it wrong.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    body = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.42) ** 2
    labels = np.arange(n) % 3
    colour = labels.copy()
    colour[::5] = (labels[::5] + 1) % 3
    images = np.zeros((n, size, size, 3), np.float32)
    masks = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        images[i][body] = 60
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 16
        images[i][blob, colour[i]] = 250
        masks[i, ..., 0] = blob
    return images, labels, masks, colour


def _dataset(images, labels, masks=None, batch=8):
    import tensorflow as tf

    onehot = np.eye(3, dtype="float32")[labels]
    parts = (images, onehot) if masks is None else (images, onehot, masks)
    return tf.data.Dataset.from_tensor_slices(parts).batch(batch)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    images, labels, masks, colour = toy_data()
    model = toy_model()
    out = tmp_path_factory.mktemp("report")
    metrics = evaluate_model(
        model,
        _dataset(images, labels, masks),
        out_dir=out,
        class_names=CLASSES,
        batch_size=8,
        examples_per_class=1,
        faithfulness_images=8,
    )
    return {"metrics": metrics, "out": out, "labels": labels, "colour": colour, "model": model}


def test_metrics_agree_with_sklearn(evaluated):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    m, labels, colour = evaluated["metrics"], evaluated["labels"], evaluated["colour"]
    on_disk = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert on_disk == m
    # The toy model predicts the blob colour, so the predictions are known in advance.
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, colour))
    assert m["accuracy"] == pytest.approx(9 / 12)
    assert m["macro_f1"] == pytest.approx(f1_score(labels, colour, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(labels, colour, average="weighted"))
    assert m["confusion_matrix"] == confusion_matrix(labels, colour).tolist()
    assert m["class_names"] == CLASSES and m["n_images"] == 12
    assert set(m["per_class"]["red"]) == {"precision", "recall", "f1", "support"}
    assert sum(v["support"] for v in m["per_class"].values()) == 12
    assert 0 < m["calibration"]["ece"] <= 1 and m["calibration"]["temperature"] is None


def test_cam_block(evaluated):
    cam = evaluated["metrics"]["cam"]
    assert cam["method"] == "gradcam++" and cam["layer"] == "last_conv"
    assert cam["native_grid"] == [SIZE, SIZE] and cam["input_size"] == [SIZE, SIZE]
    assert cam["n_images"] == 12 and cam["foreground"] == "body"
    for stat in ("entropy", "radius", "snr", "snr_db", "outside_fraction"):
        assert set(cam[stat]) >= {"mean", "std", "median", "n"}
    assert 0 < cam["entropy"]["mean"] < 1
    # Maps light up the blob inside the body: nothing outside, pointing game far above chance.
    assert cam["outside_fraction"]["mean"] < 0.05
    for stat in ("pointing_game", "energy_in_mask", "iou"):
        assert cam[stat]["mean"] > cam[stat]["chance"] > 0
    assert cam["pointing_game"]["mean"] == 1.0
    assert set(cam["per_class"]) == set(CLASSES)
    assert cam["per_class"]["red"]["n"] == 4 and "chance" in cam["per_class"]["red"]
    assert cam["shortcut_warnings"] == []
    for key in ("deletion_auc", "insertion_auc"):
        assert {"mean", "random", "n"} <= set(cam[key]) and cam[key]["n"] == 8


def test_files_written(evaluated):
    out = evaluated["out"]
    expected = [
        "metrics.json",
        "classification_report.txt",
        "predictions.csv",
        "cam_examples.npz",
        "confusion_matrix.png",
        "samples.png",
        "cam_overlays_gradcam.png",
        "cam_overlays_gradcam++.png",
        "cam_statistics.png",
        "reliability_diagram.png",
        "report.html",
        "report.md",
    ]
    for name in expected:
        assert (out / name).stat().st_size > 100, name
    assert not list(out.glob(".*"))  # no temporary files left
    assert "0.7500" in (out / "classification_report.txt").read_text()  # digits=4
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    assert {
        "file",
        "true",
        "pred",
        "p_red",
        "cam_entropy",
        "cam_outside_fraction",
        "cam_iou",
    } <= set(rows[0])
    assert rows[0]["true"] == "red" and rows[0]["pred"] == "green"
    examples = load_cam_examples(out / "cam_examples.npz")
    assert examples["method"] == "gradcam++" and len(examples["files"]) == 3  # 1 per class
    assert examples["images"].dtype == np.uint8 and examples["maps"].shape[1:] == (SIZE, SIZE)


def test_report_has_every_section(evaluated):
    html = (evaluated["out"] / "report.html").read_text()
    md = (evaluated["out"] / "report.md").read_text()
    for section in SECTIONS:
        assert f">{section}</h2>" in html and f"## {section}" in md
    assert html.count("data:image/png;base64,") == 6  # all figures embedded
    # CAM statistics sit next to outside-body fraction and localisation with chance.
    assert "outside body" in md and "pointing game" in md and "| chance |" in md


def test_temperature_is_applied_and_keeps_accuracy(tmp_path, evaluated):
    images, labels, _, _ = toy_data()
    metrics = evaluate_model(
        evaluated["model"],
        _dataset(images, labels),
        out_dir=tmp_path,
        class_names=CLASSES,
        max_cam_images=0,
        temperature=0.5,
    )
    assert metrics["accuracy"] == evaluated["metrics"]["accuracy"]
    cal = metrics["calibration"]
    assert cal["temperature"] == 0.5 and cal["ece_uncalibrated"] is not None
    assert metrics["cam"]["n_images"] == 0 and not (tmp_path / "cam_statistics.png").exists()
    assert (tmp_path / "report.html").is_file()


def test_bad_inputs_raise_clear_errors(tmp_path, evaluated):
    images, labels, _, _ = toy_data(n=6)
    ds = _dataset(images, labels)
    with pytest.raises(ValueError, match="class_names"):
        evaluate_model(evaluated["model"], ds, out_dir=tmp_path, max_cam_images=0)
    with pytest.raises(ValueError, match="2 class names"):
        evaluate_model(
            evaluated["model"], ds, out_dir=tmp_path, class_names=["a", "b"], max_cam_images=0
        )
    with pytest.raises(ValueError, match="validation split"):
        evaluate_model(
            evaluated["model"], ds, out_dir=tmp_path, class_names=CLASSES, temperature="fit"
        )
    with pytest.raises(FileNotFoundError, match="not found"):
        evaluate_model(evaluated["model"], tmp_path / "missing", out_dir=tmp_path)


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory):
    """Kidney-CT phantoms (with lesion masks) and a saved 4-class toy model in a run folder."""
    from kidney_tf.data.phantoms import generate_phantoms

    root = tmp_path_factory.mktemp("phantom_run")
    manifest = generate_phantoms("kidney-ct", root / "data", per_class=6, image_size=64)
    run = root / "run"
    run.mkdir()
    toy_model(size=48, n_classes=4).save(run / "model.keras")
    return manifest, run


@pytest.mark.slow
def test_evaluate_bundle_with_masks_and_fitted_temperature(phantom_run, tmp_path):
    from kidney_tf.data.pipeline import build_datasets

    manifest, run = phantom_run
    bundle = build_datasets(
        manifest,
        image_size=48,
        batch_size=8,
        split="stratified",
        test_fraction=0.5,
        with_masks=True,
        augment=False,
    )
    import kidney_tf

    model = kidney_tf.load_model(run / "model.keras", compile=False)
    metrics = evaluate_model(
        model, bundle, out_dir=tmp_path, temperature="fit", max_cam_images=6, extra_methods=()
    )
    test_files = [r.path for r in bundle.records["test"]]
    with (tmp_path / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == test_files  # predictions map back to files
    assert sum(1 for r in rows if r["cam_entropy"]) == 6  # CAMs capped at 6 images
    cal = metrics["calibration"]
    assert cal["temperature"] > 0 and cal["temperature_fitted_on"] == "val"
    cam = metrics["cam"]
    assert cam["n_images"] == 6 and cam["native_grid"] == [48, 48]
    # "Normal" phantoms have empty lesion masks: localisation is not applicable to them.
    assert "pointing_game" in cam and cam["pointing_game"]["n"] <= 6
    assert not (tmp_path / "cam_overlays_gradcam.png").exists()


@pytest.mark.slow
def test_evaluate_cli_uses_the_runs_split(phantom_run, tmp_path, capsys):
    from kidney_tf.cli.main import main
    from kidney_tf.data.pipeline import build_datasets
    from kidney_tf.data.splits import write_split_csv

    manifest, run = phantom_run
    bundle = build_datasets(manifest, image_size=48, batch_size=8, split="stratified", seed=7)
    write_split_csv(bundle.records, run / "split.csv")  # absolute paths: data is elsewhere
    (run / "config.json").write_text(json.dumps({"train": {"data": str(manifest), "seed": 7}}))
    out = tmp_path / "report"
    args = ["evaluate", "--model", str(run / "model.keras"), "--out", str(out)]
    assert main([*args, "--max-cam-images", "4", "--extra-methods", ""]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == len(bundle.records["test"])  # RUN/split.csv found and used
    assert metrics["class_names"] == ["Cyst", "Normal", "Stone", "Tumor"]
    assert "accuracy" in capsys.readouterr().out
    # Wrong expected size and unknown classes fail with one clear line.
    assert main([*args, "--image-size", "64"]) == 2
    assert "takes 48x48 px images but --image-size is 64" in capsys.readouterr().err
    import kidney_tf

    model = kidney_tf.models.builders.Classifier(
        *(lambda m: (m.inputs, m.outputs))(toy_model(size=48, n_classes=4)),
        class_names=["a", "b", "c", "d"],
    )
    model.save(tmp_path / "named.keras")
    code = main(["evaluate", "--model", str(tmp_path / "named.keras"), "--manifest", str(manifest),
                 "--out", str(tmp_path / "r2"), "--max-cam-images", "0"])  # fmt: skip
    assert code == 2
    assert "classes the model does not know" in capsys.readouterr().err


def test_fit_model_temperature_stores_it_in_metadata(evaluated):
    from kidney_tf.evaluation.calibration import apply_temperature, negative_log_likelihood
    from kidney_tf.evaluation.report import fit_model_temperature, predict_dataset
    from kidney_tf.models.builders import Classifier

    images, labels, _, _ = toy_data()
    ds = _dataset(images, labels)
    toy = evaluated["model"]
    with pytest.raises(ValueError, match="no metadata"):
        fit_model_temperature(toy, ds, store=True)
    model = Classifier(toy.inputs, toy.outputs, class_names=CLASSES, metadata={"arch": "toy"})
    t = fit_model_temperature(model, ds, store=True)
    assert model.metadata == {"arch": "toy", "temperature": t}
    probs, y = predict_dataset(model, ds)
    assert negative_log_likelihood(apply_temperature(probs, t), y) <= negative_log_likelihood(
        probs, y
    )


def test_report_measures_the_fostered_map_next_to_the_evaluated_one(tmp_path):
    """A CamFosteringModel's own map (true class, native grid) is reported; examples keep masks."""
    from kidney_tf.evaluation.schema import load_cam_examples
    from kidney_tf.training import CamFosteringModel

    images, labels, masks, _ = toy_data()
    model = CamFosteringModel.from_classifier(
        toy_model(), cam_weight=0.0, cam_method="gradcam++", class_names=CLASSES
    )
    metrics = evaluate_model(
        model,
        _dataset(images, labels, masks),
        out_dir=tmp_path / "r",
        batch_size=8,
        examples_per_class=1,
        faithfulness_images=0,
        extra_methods=(),
    )
    own = metrics["cam"]["fostering_entropy"]
    assert own["method"] == "gradcam++" and own["target"] == "true" and own["n"] == 12
    # independent: the toy's features are relu(image / 255) and W = 20·I, so the Grad-CAM++
    # closed form of class c is 20 · channel c, shifted to a minimum of 0
    maps = 20 * images[..., labels].transpose(3, 0, 1, 2)[np.arange(12), np.arange(12)] / 255
    maps = maps - maps.min(axis=(1, 2), keepdims=True)
    p = maps.reshape(12, -1) / maps.reshape(12, -1).sum(1, keepdims=True)
    entropy = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(1) / np.log(SIZE**2)
    assert own["mean"] == pytest.approx(entropy.mean(), abs=1e-4)
    examples = load_cam_examples(tmp_path / "r" / "cam_examples.npz")
    assert examples["masks"] is not None and examples["masks"].any()
