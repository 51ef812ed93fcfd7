"""Classifier builders: flat graphs, in-model preprocessing, weights files, freezing, BN, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kidney_tf.models import (
    ARCHITECTURES,
    Classifier,
    HeadConfig,
    build_classifier,
    last_conv_layer_name,
    save_backbone_weights,
    set_backbone_trainable,
    unfreeze_top,
)
from kidney_tf.models.builders import backbone_layers

KIDNEY = ["Cyst", "Normal", "Stone", "Tumor"]


@pytest.fixture(scope="module")
def resnet():
    return build_classifier("resnet50", image_size=32, class_names=KIDNEY)


@pytest.fixture(scope="module")
def effnet():
    return build_classifier("efficientnetb1", num_classes=3, image_size=32)


def images(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_resnet_is_flat_with_named_last_conv_and_head(resnet):
    assert isinstance(resnet, Classifier)
    assert not any(isinstance(layer, keras.Model) for layer in resnet.layers)
    assert last_conv_layer_name(resnet) == "conv5_block3_out"
    assert resnet.get_layer("conv5_block3_out").output.shape[1:] == (1, 1, 2048)
    assert [layer.name for layer in resnet.layers[-3:]] == [
        "global_pool",
        "logits",
        "probabilities",
    ]
    assert resnet.get_layer("probabilities").dtype_policy.compute_dtype == "float32"
    assert resnet.input_shape == (None, 32, 32, 3)
    assert resnet.class_names == KIDNEY and len(resnet.metadata) > 0
    probabilities = resnet.predict(images(), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_resnet_preprocessing_is_inside_the_model(resnet):
    x = images()
    view = keras.Model(resnet.inputs, resnet.get_layer("preprocessing").output)
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(view.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-3)
    assert resnet.metadata["preprocessing"] == "caffe"


def test_efficientnet_is_flat_and_rescales_inside(effnet):
    assert not any(isinstance(layer, keras.Model) for layer in effnet.layers)
    assert last_conv_layer_name(effnet) == "top_activation"
    assert isinstance(effnet.layers[1], keras.layers.Rescaling)
    assert effnet.output_shape == (None, 3) and effnet.class_names is None
    assert ARCHITECTURES["efficientnetb1"]["image_size"] == 240
    assert ARCHITECTURES["resnet50"]["image_size"] == 224


def test_default_image_size_comes_from_the_architecture():
    model = build_classifier("ResNet-50", num_classes=2)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.metadata["arch"] == "resnet50" and model.metadata["image_size"] == 224


def test_data_bundle_gives_size_classes_and_crop(tmp_path):
    from kidney_tf.data.phantoms import generate_phantoms
    from kidney_tf.data.pipeline import build_datasets

    manifest = generate_phantoms("kidney-ct", tmp_path, per_class=3, image_size=48)
    bundle = build_datasets(manifest, image_size=40, batch_size=4, split="stratified", crop="body")
    model = build_classifier("efficientnetb1", data=bundle)
    assert model.input_shape == (None, 40, 40, 3)
    assert model.class_names == bundle.class_names == KIDNEY
    assert (model.metadata["image_size"], model.metadata["crop"]) == (40, "body")
    images, _ = next(iter(bundle.train))
    assert model.predict(images, verbose=0).shape == (images.shape[0], 4)
    with pytest.raises(ValueError, match="image_size=64 but the data bundle's images are 40 px"):
        build_classifier("resnet50", data=bundle, image_size=64)
    with pytest.raises(ValueError, match="drop class_names"):
        build_classifier("resnet50", data=bundle, class_names=["a", "b", "c", "d"])


def bn_momenta(model) -> set[float]:
    return {
        layer.momentum
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def test_bn_momentum_defaults_to_0_9_from_scratch(resnet):
    assert bn_momenta(resnet) == {0.9}
    assert bn_momenta(build_classifier("resnet50", image_size=32, bn_momentum=0.99)) == {0.99}


def test_head_config_layers_and_validation():
    model = build_classifier(
        "resnet50",
        num_classes=2,
        image_size=32,
        head=HeadConfig((8,), dropout=0.2, batch_norm=True),
    )
    names = [layer.name for layer in model.layers]
    assert names[-6:] == [
        "head_dense_1",
        "head_bn_1",
        "head_activation_1",
        "head_dropout_1",
        "logits",
        "probabilities",
    ]
    assert not HeadConfig((8,)).supports_exact_cam and HeadConfig().supports_exact_cam
    assert HeadConfig.from_dict(HeadConfig((8,), 0.5).to_dict()) == HeadConfig((8,), 0.5)
    for bad in ({"dropout": 1.0}, {"hidden_units": (0,)}, {"batch_norm": True}):
        with pytest.raises(ValueError):
            HeadConfig(**bad)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        build_classifier("vgg16")
    with pytest.raises(ValueError, match="class_names"):
        build_classifier("resnet50", num_classes=3, class_names=KIDNEY)
    with pytest.raises(ValueError, match="at least 32"):
        build_classifier("resnet50", image_size=16)
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        build_classifier("resnet50", image_size=32, weights=missing)
    garbage = tmp_path / "garbage.h5"
    garbage.write_text("not hdf5")
    with pytest.raises(ValueError, match="garbage.h5"):
        build_classifier("resnet50", image_size=32, weights=garbage)


def test_imagenet_download_failure_explains_the_offline_fix(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_classifier("resnet50", image_size=32, weights="imagenet")


def test_backbone_weights_file_round_trip(resnet, tmp_path):
    path = save_backbone_weights(resnet, tmp_path / "backbone.weights.h5")
    loaded = build_classifier("resnet50", image_size=32, weights=path, class_names=KIDNEY)
    for name in ("conv1_conv", "conv5_block3_3_conv", "conv5_block3_3_bn"):
        for a, b in zip(resnet.get_layer(name).get_weights(), loaded.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert loaded.metadata["weights"] == str(path)

    # A legacy full-model .h5 file loads by layer name (head layers of the file are ignored).
    legacy = tmp_path / "legacy_backbone.h5"
    keras.Model(resnet.inputs, resnet.get_layer("conv5_block3_out").output).save(legacy)
    by_name = build_classifier("resnet50", num_classes=2, image_size=32, weights=legacy)
    np.testing.assert_array_equal(
        resnet.get_layer("conv1_conv").get_weights()[0],
        by_name.get_layer("conv1_conv").get_weights()[0],
    )
    with pytest.raises(ValueError, match="weights.h5"):
        save_backbone_weights(resnet, tmp_path / "backbone.h5")


def test_frozen_backbone_runs_batchnorm_in_inference_mode():
    model = build_classifier("resnet50", num_classes=2, image_size=32)
    set_backbone_trainable(model, False)
    trainable = {v.path.split("/")[0] for v in model.trainable_variables}
    assert trainable == {"logits"}
    bn = model.get_layer("conv1_bn")
    before = [w.copy() for w in bn.get_weights()]
    x = images(4)
    train_out = model(x, training=True).numpy()
    np.testing.assert_allclose(train_out, model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)  # moving statistics untouched

    set_backbone_trainable(model, True)
    model(x, training=True)
    assert not np.allclose(before[2], bn.get_weights()[2])  # moving mean updates when trainable


def test_unfreeze_top_stages_keeps_bn_frozen(effnet):
    model = build_classifier("resnet50", num_classes=2, image_size=32)
    unfreeze_top(model, 1)
    assert model.get_layer("conv5_block1_1_conv").trainable
    assert not model.get_layer("conv5_block1_1_bn").trainable
    assert not model.get_layer("conv4_block6_3_conv").trainable
    assert model.get_layer("logits").trainable
    unfreeze_top(model, 2, train_bn=True)
    assert model.get_layer("conv4_block6_3_bn").trainable
    assert not model.get_layer("conv3_block1_1_conv").trainable
    unfreeze_top(model, 0)
    assert not any(layer.trainable_weights for layer in backbone_layers(model))

    unfreeze_top(effnet, 1)
    assert (
        effnet.get_layer("top_conv").trainable and effnet.get_layer("block7a_expand_conv").trainable
    )
    assert not effnet.get_layer("block6a_expand_conv").trainable
    with pytest.raises(ValueError, match="n_blocks"):
        unfreeze_top(effnet, 99)
    set_backbone_trainable(effnet, True)


def test_classifier_saves_and_loads_in_safe_mode(resnet, tmp_path):
    path = tmp_path / "classifier.keras"
    resnet.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, Classifier)
    assert loaded.class_names == KIDNEY and loaded.metadata == resnet.metadata
    x = images()
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), resnet.predict(x, verbose=0), atol=1e-6
    )
    with pytest.raises(ValueError, match="class_names"):
        loaded.class_names = ["only", "three", "names"]
