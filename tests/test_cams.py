"""CAMs through tf-keras-vis on tiny functional models and a flat ResNet-50."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kidney_tf.explain import cams
from kidney_tf.recipes import EXPLAIN_METHODS

SIZE = 32


def tiny_model(num_classes: int = 3, name: str = "tiny", cls=keras.Model) -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.Activation("relu", name="conv2_relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return cls(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="kidney_tf_tests")
class FunctionalSubclass(keras.Model):
    """Stand-in for CamFosteringModel: a functional subclass with a cam_layer attribute."""

    def __init__(self, *args, cam_layer: str = "conv2_relu", **kwargs):
        super().__init__(*args, **kwargs)
        self.cam_layer = cam_layer

    def get_config(self):
        return {**super().get_config(), "cam_layer": self.cam_layer}


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return tiny_model()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)


def reference_gradcam(model, images, class_index, layer="conv2_relu"):
    """Grad-CAM written out from the paper on pre-softmax logits (native grid, min-max)."""
    view = keras.Model(
        model.input, [model.get_layer(layer).output, model.get_layer("logits").output]
    )
    with tf.GradientTape() as tape:
        acts, logits = view(images)
        score = tf.gather(logits, class_index, batch_dims=1)
    grads = tape.gradient(score, acts)
    cam = tf.nn.relu(tf.reduce_sum(acts * tf.reduce_mean(grads, axis=(1, 2), keepdims=True), -1))
    cam = cam.numpy()
    lo, hi = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
    return (cam - lo) / (hi - lo + 1e-7)


def test_default_layer(model):
    assert cams.default_cam_layer(model) == "conv2_relu"
    resnet_like = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(2, 1, name="conv5_block3_out"),
            keras.layers.Conv2D(2, 1),
        ]
    )
    assert cams.default_cam_layer(resnet_like) == "conv5_block3_out"
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="4-D"):
        cams.default_cam_layer(flat)


def test_gradcam_matches_the_paper_on_logits(model, images):
    result = cams.explain_batch(
        model, images, method="gradcam", class_index=[0, 1, 2], upsample=False
    )
    expected = reference_gradcam(model, images, np.array([0, 1, 2]))
    assert result.native_shape == (16, 16)
    np.testing.assert_allclose(result.maps, expected, atol=1e-4)


@pytest.mark.parametrize("method", EXPLAIN_METHODS)
def test_every_method_gives_unit_range_maps_at_input_size(model, images, method):
    result = cams.explain_batch(model, images, method=method, batch_size=2)
    assert result.maps.shape == (3, SIZE, SIZE) and result.maps.dtype == np.float32
    assert np.isfinite(result.maps).all()
    assert result.maps.min() >= 0.0 and result.maps.max() <= 1.0
    assert result.maps.max() > 0.5  # normalised, not dead
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.class_index, predicted)
    assert result.probabilities.shape == (3, 3)
    assert result.layer == (None if method in ("saliency", "smoothgrad") else "conv2_relu")


def test_gradcam_plus_plus_shape_range_and_no_overflow(images):
    keras.utils.set_random_seed(1)
    big = tiny_model()
    logits = big.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 1e4, bias])  # logits in the thousands: exp() would overflow
    maps = cams.compute_cams(big, images, method="gradcam++", class_index=0)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.max() == pytest.approx(1.0, abs=1e-3)


def test_callers_model_is_not_modified(model, images):
    before = model.predict(images, verbose=0)
    cams.compute_cams(model, images, method="gradcam++")
    assert model.get_layer("probabilities").activation is keras.activations.softmax
    np.testing.assert_allclose(model.predict(images, verbose=0), before, rtol=1e-6)


def test_class_index_validation(model, images):
    with pytest.raises(ValueError, match="out of range"):
        cams.compute_cams(model, images, class_index=7)
    with pytest.raises(ValueError, match="3 images"):
        cams.compute_cams(model, images, class_index=[0, 1])
    with pytest.raises(ValueError, match="unknown method"):
        cams.compute_cams(model, images, method="occlusion")
    with pytest.raises(ValueError, match="no layer"):
        cams.compute_cams(model, images, layer="nope")
    with pytest.raises(ValueError, match="expects 32x32"):
        cams.compute_cams(model, images[:, :16, :16])


def test_reloaded_functional_subclass_uses_its_cam_layer(tmp_path, images):
    keras.utils.set_random_seed(2)
    original = tiny_model(name="fostered", cls=FunctionalSubclass)
    original.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded, FunctionalSubclass)
    a = cams.explain_batch(original, images, class_index=1)
    b = cams.explain_batch(loaded, images, class_index=1)
    assert b.layer == "conv2_relu"
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)


@pytest.mark.slow
def test_flat_resnet50_gradcam_plus_plus():
    inputs = keras.Input((64, 64, 3))
    backbone = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inputs)
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    x = keras.layers.Dense(4, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    result = cams.explain_batch(model, images, method="gradcam++")
    assert result.layer == "conv5_block3_out" and result.native_shape == (2, 2)
    assert result.maps.shape == (2, 64, 64)
    assert np.isfinite(result.maps).all() and 0 <= result.maps.min() <= result.maps.max() <= 1


def test_gradcam_plus_plus_equals_tf_keras_vis_when_logits_are_moderate(model, images):
    """The zero-valued score only removes exp(score), a per-map scale lost in normalisation."""
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    plain = keras.Model(model.inputs, model.outputs)
    direct = GradcamPlusPlus(plain, model_modifier=ReplaceToLinear())(
        CategoricalScore([2, 0, 1]), images, penultimate_layer="conv2_relu",
        seek_penultimate_conv_layer=False,
    )  # fmt: skip
    ours = cams.compute_cams(model, images, method="gradcam++", class_index=[2, 0, 1])
    np.testing.assert_allclose(ours, direct, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_gradient_cams_split_at_the_layer_equal_the_whole_model_computation(model, images, method):
    split = cams.CamExplainer(model, method=method)
    whole = cams.CamExplainer(model, method=method, split=False)
    assert split._trunk is not None and whole._trunk is None
    for class_index in (None, [2, 0, 1]):
        a = split.explain(images, class_index=class_index)
        b = whole.explain(images, class_index=class_index)
        np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_array_equal(a.class_index, b.class_index)
        assert a.native_shape == b.native_shape == (SIZE // 2, SIZE // 2)
    native = split.explain(images, upsample=False).maps
    np.testing.assert_allclose(native, whole.explain(images, upsample=False).maps, atol=1e-5)


def test_a_skip_connection_around_the_cam_layer_falls_back_to_the_whole_model(images):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    cam = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="cam")(x)
    x = keras.layers.Add()([x, cam])  # reads a tensor from below the CAM layer
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    skip = keras.Model(inputs, outputs)
    explainer = cams.CamExplainer(skip, method="gradcam++", layer="cam")
    assert explainer._trunk is None
    result = explainer.explain(images)
    assert result.maps.shape == (3, SIZE, SIZE) and np.isfinite(result.maps).all()
