"""benchmarks/fostering_localisation.py: the cached-feature path is the full model's CAM path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("fostering_localisation")


@pytest.fixture(scope="module")
def resnet():
    from kidney_tf.models.builders import build_classifier
    from kidney_tf.training import CamFosteringModel

    # what `kidney-tf train` saves (and the benchmark loads): the trainer's CamFosteringModel
    base = build_classifier("resnet50", num_classes=3, image_size=64, class_names=list("abc"))
    return CamFosteringModel.from_classifier(base)


@pytest.mark.slow  # builds ResNet-50 (64 px)
@pytest.mark.parametrize("unfreeze", [0, 1])
def test_an_8x8_grid_on_cached_features_is_the_full_models_grad_cam(bench, resnet, unfreeze):
    import keras

    from kidney_tf.models.builders import unfreeze_top
    from kidney_tf.training import CamFosteringModel

    stage4 = "conv4_block6_out"
    unfreeze_top(resnet, unfreeze)
    cut = bench.cut_layer(resnet, unfreeze, stage4)
    assert cut == stage4
    assert bench.cut_layer(resnet, 0) == resnet.cam_layer
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    features = keras.Model(resnet.inputs, resnet.get_layer(cut).output)(x, training=False)
    head, cam = bench.head_model(resnet, cut, stage4)
    assert cam == "features"  # the CAM layer is the cached input itself
    np.testing.assert_allclose(
        head.predict(features, verbose=0), resnet.predict(x, verbose=0), atol=1e-5
    )
    classes = np.array([0, 1, 2])
    on_features = CamFosteringModel.from_classifier(head, cam_method="gradcam", cam_layer=cam)
    full = CamFosteringModel.from_classifier(resnet, cam_method="gradcam", cam_layer=stage4)
    maps = on_features.class_activation_maps(features, classes).numpy()
    assert maps.shape == (3, 4, 4)
    np.testing.assert_allclose(
        maps, full.class_activation_maps(x, classes).numpy(), atol=1e-5 * np.abs(maps).max()
    )
    # the copied top stage keeps the frozen flags of unfreeze_top: only what it opened trains
    trains = {layer.name for layer in head.layers if layer.trainable and layer.weights}
    opened = {layer.name for layer in resnet.layers if layer.trainable and layer.weights}
    assert trains == opened & {layer.name for layer in head.layers}
    assert any(name.startswith("conv5_") for name in trains) == bool(unfreeze)


@pytest.mark.slow
def test_arm_statistics_count_single_cell_classes_on_the_native_grid(bench, resnet):
    import keras

    head, cam = bench.head_model(resnet)
    n = 12
    features = keras.Model(resnet.inputs, resnet.get_layer(resnet.cam_layer).output)(
        np.random.default_rng(1).uniform(0, 255, (n, 64, 64, 3)).astype("float32")
    )
    data = {
        "features": features.numpy(),
        "labels": np.eye(3, dtype="float32")[np.arange(n) % 3],
        "foreground": np.ones((n, 64, 64, 1), np.uint8),
        "lesion_mask": np.zeros((n, 64, 64, 1), np.uint8),
    }
    stats = bench.arm_statistics((head, cam), data, 1.0, class_names=list("abc"))
    assert stats["grid"] == (2, 2)
    assert set(stats["single_cell"]) <= set("abc")
    assert all(0.5 < share <= 1 for share in stats["single_cell"].values())
    assert len(stats["warnings"]) >= len(stats["single_cell"])
    assert stats["per_image"]["accuracy"].shape == (n,)


def test_the_baseline_is_read_with_the_crop_it_was_trained_with(bench, tmp_path):
    # A demo folder as `kidney-tf demo` writes it today: the crop lives in the baseline's
    # config.json (reproduce.json nests it under "train"); reading a top-level "crop" of
    # reproduce.json gave "none" and features of uncropped images.
    demo = tmp_path / "demo"
    (demo / "baseline").mkdir(parents=True)
    (demo / "stages").mkdir()
    (demo / "baseline" / "split.csv").write_text("path,label,split,mask_path\n")
    (demo / "baseline" / "config.json").write_text(json.dumps({"train": {"crop": "body"}}))
    (demo / "stages" / "data.json").write_text(json.dumps({"result": {"root": "/data"}}))
    (demo / "reproduce.json").write_text(json.dumps({"train": {"crop": "body"}}))
    args = SimpleNamespace(run=None, demo_run=str(demo), baseline=None, data=None)
    model, split, root, crop = bench.baseline_source(args)
    assert (model, split, root, crop) == (
        demo / "baseline" / "model.keras",
        demo / "baseline" / "split.csv",
        "/data",
        "body",
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"crop": None}}))
    args = SimpleNamespace(run=str(run), demo_run=None, baseline=None, data="/pool")
    assert bench.baseline_source(args) == (run / "best.keras", run / "split.csv", "/pool", "none")


def test_accuracy_change_has_a_paired_interval_over_the_test_images(bench):
    baseline = {"per_image": {"accuracy": np.array([1.0, 1.0, 0.0, 0.0] * 25)}}
    same = bench.accuracy_change(baseline, baseline)
    assert same == "+0.0 pt [+0.0, +0.0]"  # the same images right: no doubt at all
    better = {"per_image": {"accuracy": np.array([1.0, 1.0, 1.0, 0.0] * 25)}}
    text = bench.accuracy_change(better, baseline)
    assert text.startswith("+25.0 pt [+")
    low = float(text.split("[")[1].split(",")[0])
    assert 10 < low < 25
