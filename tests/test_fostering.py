"""CamFosteringModel: training behaviour, CAM methods, metrics, precision, saving, distribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kidney_tf.explain.statistics import normalized_entropy
from kidney_tf.models.builders import Classifier
from kidney_tf.training import CamFosteringModel, WeightedCrossEntropy

SIZE = 16
CLASSES = ["a", "b", "c"]


def tiny_classifier(
    seed: int = 0, hidden: int = 0, dropout: float = 0.0, batch_norm: bool = True
) -> Classifier:
    """A small functional stand-in: conv -> conv("last_conv") -> GAP -> [dense] -> logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_1")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="bn_1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="head_dense_1")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(len(CLASSES), name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return Classifier(inputs, outputs, class_names=CLASSES, metadata={"image_size": SIZE})


def toy_data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(n) % len(CLASSES), len(CLASSES)).astype("float32")
    return x, y


def compile_sgd(model, lr: float = 0.05, **kwargs):
    model.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss=WeightedCrossEntropy([1.0, 2.0, 0.5]),
        metrics=["accuracy"],
        **kwargs,
    )
    return model


def weights_equal(a, b, atol=1e-6) -> bool:
    return all(np.allclose(u, v, atol=atol) for u, v in zip(a.get_weights(), b.get_weights()))


def test_lambda_zero_matches_plain_functional_model():
    x, y = toy_data()
    plain = tiny_classifier(seed=1)
    fostering = CamFosteringModel.from_classifier(tiny_classifier(seed=2), cam_weight=0.0)
    fostering.set_weights(plain.get_weights())
    compile_sgd(plain)
    compile_sgd(fostering)
    plain.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    history = fostering.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert weights_equal(plain, fostering, atol=1e-6)
    assert "cam_entropy" not in history.history  # no CAM ops when λ = 0
    assert np.allclose(history.history["loss"], history.history["ce_loss"])


def test_entropy_penalty_changes_the_update_and_its_gradient_reaches_the_backbone():
    x, y = toy_data()
    base = tiny_classifier(seed=3)
    model = CamFosteringModel.from_classifier(base, cam_weight=1.0)
    variables = [model.get_layer("conv_1").kernel, model.get_layer("logits").kernel]
    with tf.GradientTape() as tape:
        cams = model.class_activation_maps(x, class_index=np.argmax(y, axis=-1))
        entropy = tf.reduce_mean(normalized_entropy(cams))
    grads = tape.gradient(entropy, variables)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)

    runs = {}
    for weight in (0.0, 1.0):
        clone = CamFosteringModel.from_classifier(tiny_classifier(seed=4), cam_weight=weight)
        compile_sgd(clone)
        clone.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        runs[weight] = clone
    assert not weights_equal(runs[0.0], runs[1.0], atol=1e-7)


@pytest.mark.parametrize("method", ["exact", "gradcam++"])
def test_one_step_is_the_hand_computed_ce_plus_lambda_entropy_step(method):
    """One SGD step of fit with λ > 0 equals w - lr * d(weighted CE + λ * H(CAM))/dw, with the
    CAM, its entropy and the loss written out here by hand (no kidney_tf code on the tape)."""
    lam, lr, class_weights = 0.7, 0.05, [1.0, 2.0, 0.5]
    x, y = toy_data(n=6, seed=5)
    model = CamFosteringModel.from_classifier(tiny_classifier(seed=6), cam_weight=lam,
                                              cam_method=method)  # fmt: skip
    reference = tiny_classifier(seed=6)
    reference.set_weights(model.get_weights())
    compile_sgd(model, lr=lr)
    model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)

    views = keras.Model(reference.input, [reference.get_layer("last_conv").output,
                                           reference.output])  # fmt: skip
    labels = np.argmax(y, axis=-1)
    variables = reference.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        features, probabilities = views(x, training=True)
        p_true = tf.clip_by_value(tf.reduce_sum(probabilities * y, axis=-1), 1e-7, 1 - 1e-7)
        ce = tf.reduce_mean(-tf.math.log(p_true) * tf.gather(class_weights, labels))
        class_kernel = tf.transpose(tf.gather(reference.get_layer("logits").kernel, labels, axis=1))
        cams = tf.einsum("bhwk,bk->bhw", features, tf.nn.relu(class_kernel) if method ==
                         "gradcam++" else class_kernel)  # fmt: skip
        if method == "gradcam++":
            cams -= tf.reduce_min(cams, axis=[1, 2], keepdims=True)
        else:
            cams = tf.nn.relu(cams)
        mass = tf.reshape(cams, [6, -1])
        total = tf.reduce_sum(mass, axis=1, keepdims=True)
        assert float(tf.reduce_min(total)) > 0  # no empty map: the plain formula applies
        q = mass / total
        plogq = tf.where(q > 0, q * tf.math.log(tf.where(q > 0, q, 1.0)), 0.0)
        entropy = -tf.reduce_sum(plogq, axis=1) / np.log(SIZE * SIZE)
        loss = ce + lam * tf.reduce_mean(entropy)
    gradients, ce_gradients = tape.gradient(loss, variables), tape.gradient(ce, variables)
    trained = {v.path: v.numpy() for v in model.trainable_variables}
    assert sorted(trained) == sorted(v.path for v in variables)
    penalty_shift = 0.0
    for variable, gradient, ce_gradient in zip(variables, gradients, ce_gradients, strict=True):
        expected = variable.numpy() - lr * gradient.numpy()
        np.testing.assert_allclose(trained[variable.path], expected, rtol=1e-4, atol=1e-6)
        penalty_shift = max(penalty_shift, float(np.abs(gradient - ce_gradient).max()) * lr)
    assert penalty_shift > 1e-4  # the λ term moved the weights well beyond the tolerance


def test_exact_and_gradcam_agree_up_to_scale_for_gap_dense_head():
    x, _ = toy_data(4)
    base = tiny_classifier(seed=5)
    exact = CamFosteringModel.from_classifier(base, cam_method="exact")
    gradcam = CamFosteringModel.from_classifier(base, cam_method="gradcam")
    a = exact.class_activation_maps(x, class_index=1).numpy()
    b = gradcam.class_activation_maps(x, class_index=1).numpy()
    assert a.shape == b.shape == (4, SIZE, SIZE) and a.dtype == np.float32
    # Grad-CAM weights of a GAP -> Dense head are W[:, c] / (H * W).
    np.testing.assert_allclose(b * SIZE * SIZE, a, rtol=1e-4, atol=1e-5)


def test_gradcam_plus_plus_closed_form_matches_tf_keras_vis():
    from kidney_tf.explain.cams import compute_cams

    x, _ = toy_data(4)
    base = tiny_classifier(seed=5)
    model = CamFosteringModel.from_classifier(base, cam_method="gradcam++")
    cams = model.class_activation_maps(x, class_index=1).numpy()
    assert (cams >= 0).all() and np.allclose(cams.min(axis=(1, 2)), 0.0)
    ours = cams / cams.max(axis=(1, 2), keepdims=True)  # tf-keras-vis min-max normalises
    theirs = compute_cams(
        base, x, method="gradcam++", layer="last_conv", class_index=1, upsample=False
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # ... and it differs from the exact CAM, which keeps the negative class weights.
    exact = CamFosteringModel.from_classifier(base, cam_method="exact")
    e = exact.class_activation_maps(x, class_index=1).numpy()
    assert not np.allclose(e / np.maximum(e.max(axis=(1, 2), keepdims=True), 1e-9), ours, atol=1e-2)


def test_class_activation_maps_class_index_forms():
    x, _ = toy_data(3)
    model = CamFosteringModel.from_classifier(tiny_classifier(seed=6))
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    default = model.class_activation_maps(x).numpy()
    explicit = model.class_activation_maps(x, class_index=predicted).numpy()
    np.testing.assert_allclose(default, explicit)
    assert (default >= 0).all()
    fixed = model.class_activation_maps(x, class_index=2).numpy()
    np.testing.assert_allclose(fixed, model.class_activation_maps(x, class_index=[2, 2, 2]).numpy())


def test_exact_method_rejects_hidden_head_and_gradcam_trains_it():
    with pytest.raises(ValueError, match="gradcam"):
        CamFosteringModel.from_classifier(tiny_classifier(hidden=4), cam_method="gradcam++")
    with pytest.raises(ValueError, match="gradcam"):
        CamFosteringModel.from_classifier(tiny_classifier(hidden=4), cam_method="exact")
    model = CamFosteringModel.from_classifier(
        tiny_classifier(seed=7, hidden=4, dropout=0.2), cam_weight=0.5, cam_method="gradcam"
    )
    compile_sgd(model)
    x, y = toy_data()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0.0 <= history["cam_entropy"][0] <= 1.0
    assert history["loss"][0] > history["ce_loss"][0]


def test_metrics_reported_in_fit_and_evaluate():
    x, y = toy_data()
    model = CamFosteringModel.from_classifier(tiny_classifier(seed=8), cam_weight=0.3)
    compile_sgd(model, steps_per_execution=2)
    history = model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), verbose=0).history
    for key in ("loss", "ce_loss", "cam_entropy", "accuracy"):
        assert key in history and f"val_{key}" in history
    result = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(
        result["ce_loss"] + 0.3 * result["cam_entropy"], rel=1e-5
    )

    baseline = compile_sgd(CamFosteringModel.from_classifier(tiny_classifier(seed=8), 0.0))
    result = baseline.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(result["ce_loss"])
    assert 0.0 < result["cam_entropy"] <= 1.0  # evaluate always measures the CAM entropy


def test_class_weight_and_sample_weight_change_the_loss():
    x, y = toy_data()
    losses = []
    for kwargs in (
        {},
        {"class_weight": {0: 5.0, 1: 1.0, 2: 1.0}},
        {"sample_weight": np.ones(12) * 3},
    ):
        model = compile_sgd(CamFosteringModel.from_classifier(tiny_classifier(seed=9), 0.1))
        history = model.fit(x, y, batch_size=12, epochs=1, verbose=0, **kwargs).history
        losses.append(history["ce_loss"][0])
    assert losses[1] != pytest.approx(losses[0])
    assert losses[2] == pytest.approx(3 * losses[0], rel=1e-5)


def test_dead_relu_all_zero_cam_gives_finite_loss_and_weights():
    model = CamFosteringModel.from_classifier(tiny_classifier(seed=10), cam_weight=1.0)
    last = model.get_layer("last_conv")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    compile_sgd(model)
    x, y = toy_data()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert history["cam_entropy"][0] == pytest.approx(1.0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("method", ["exact", "gradcam++", "gradcam"])
def test_mixed_float16_training_is_finite(method):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = CamFosteringModel.from_classifier(
            tiny_classifier(seed=11), cam_weight=0.5, cam_method=method
        )
        compile_sgd(model)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        x, y = toy_data()
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
        cams = model.class_activation_maps(x[:2])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert all(np.isfinite(v[0]) for v in history.values())
    assert cams.dtype == tf.float32
    assert model.get_layer("last_conv").compute_dtype == "float16"


def test_save_load_round_trip(tmp_path):
    import kidney_tf

    x, y = toy_data()
    model = CamFosteringModel.from_classifier(
        tiny_classifier(seed=12), cam_weight=0.25, cam_method="gradcam", metadata={"crop": "body"}
    )
    compile_sgd(model).fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    for loaded in (
        keras.models.load_model(path, safe_mode=True),
        kidney_tf.load_model(path),
    ):
        assert isinstance(loaded, CamFosteringModel)
        assert (loaded.cam_layer, loaded.cam_weight, loaded.cam_method) == (
            "last_conv",
            0.25,
            "gradcam",
        )
        assert loaded.class_names == CLASSES
        assert loaded.metadata == {"image_size": SIZE, "crop": "body"}
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
        )
        np.testing.assert_allclose(
            loaded.class_activation_maps(x[:2]), model.class_activation_maps(x[:2]), atol=1e-5
        )
        config = loaded.get_config()
        assert json.dumps(config)  # JSON-serialisable
        history = loaded.fit(
            x, y, batch_size=4, epochs=1, verbose=0
        ).history  # compiled state loads
        assert np.isfinite(history["loss"][0])


def test_cam_weight_setter_and_argument_validation():
    model = CamFosteringModel.from_classifier(tiny_classifier(seed=13), cam_weight=0.0)
    compile_sgd(model)
    x, y = toy_data()
    assert "cam_entropy" not in model.fit(x, y, epochs=1, verbose=0).history
    model.cam_weight = 0.5  # takes effect at the next fit: the step function is re-traced
    assert "cam_entropy" in model.fit(x, y, epochs=1, verbose=0).history
    with pytest.raises(ValueError, match="cam_weight"):
        model.cam_weight = -1
    with pytest.raises(ValueError, match="cam_method"):
        CamFosteringModel.from_classifier(tiny_classifier(), cam_method="score-cam")
    with pytest.raises(ValueError, match="4-D"):
        CamFosteringModel.from_classifier(tiny_classifier(), cam_layer="global_pool")
    with pytest.raises(ValueError, match="labels"):
        model.evaluate(x, verbose=0)


def test_shares_layers_with_the_classifier():
    base = tiny_classifier(seed=14)
    model = CamFosteringModel.from_classifier(base)
    assert model.get_layer("last_conv") is base.get_layer("last_conv")
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    plain = model.as_classifier()
    assert type(plain) is Classifier and plain.get_layer("logits") is base.get_layer("logits")
    assert model.class_names == CLASSES


def test_wraps_a_built_efficientnet():
    from kidney_tf.models import build_classifier

    base = build_classifier("efficientnetb1", num_classes=3, image_size=32, class_names=CLASSES)
    model = CamFosteringModel.from_classifier(base, cam_weight=0.1)
    assert model.cam_layer == "top_activation" and model.metadata["arch"] == "efficientnetb1"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert model.class_activation_maps(x).shape == (2, 1, 1)


@pytest.mark.slow
def test_fostering_lowers_cam_entropy():
    # Too large a step (e.g. Adam 1e-2 with λ = 5 here) can push every true-class CAM below
    # zero: a dead map counts as uniform (entropy 1) and has no gradient, so it stays dead.
    x, y = toy_data(24)
    model = CamFosteringModel.from_classifier(
        tiny_classifier(seed=15, batch_norm=False), cam_weight=1.0
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedCrossEntropy())
    before = model.evaluate(x, y, verbose=0, return_dict=True)["cam_entropy"]
    model.fit(x, y, batch_size=8, epochs=15, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["cam_entropy"]
    assert after < before - 0.2


@pytest.mark.slow
def test_jit_compile_training():
    x, y = toy_data()
    model = CamFosteringModel.from_classifier(tiny_classifier(seed=16), cam_weight=0.5)
    compile_sgd(model, jit_compile=True)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and "cam_entropy" in history


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_fostering import compile_sgd, tiny_classifier, toy_data
    from kidney_tf.training import CamFosteringModel

    x, y = toy_data(8)
    results = {}
    for name, strategy in (
        ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
        ("default", tf.distribute.get_strategy()),
    ):
        with strategy.scope():
            model = CamFosteringModel.from_classifier(
                tiny_classifier(seed=0, batch_norm=False), cam_weight=0.5
            )
            compile_sgd(model)
        evaluated = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        results[name] = {
            "replicas": strategy.num_replicas_in_sync,
            "evaluate": evaluated,
            "weights": [w.tolist() for w in model.get_weights()],
        }
    print("RESULT" + json.dumps(results))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, str(script), here], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(row for row in proc.stdout.splitlines() if row.startswith("RESULT"))
    results = json.loads(line[len("RESULT") :])
    mirrored, default = results["mirrored"], results["default"]
    assert mirrored["replicas"] == 2 and default["replicas"] == 1
    for key in ("loss", "ce_loss", "cam_entropy", "accuracy"):
        assert mirrored["evaluate"][key] == pytest.approx(default["evaluate"][key], rel=1e-4)
    # One SGD step on the same global batch: gradients summed over replicas == single device.
    for a, b in zip(mirrored["weights"], default["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------- spatial (mask) terms


def masked_data(n: int = 12, seed: int = 0):
    """Toy images with a foreground (left half) and a lesion (top-left quarter, every 2nd image)."""
    x, y = toy_data(n, seed)
    foreground = np.zeros((n, SIZE, SIZE, 1), np.float32)
    foreground[:, :, : SIZE // 2] = 1.0
    lesion = np.zeros_like(foreground)
    lesion[::2, : SIZE // 4, : SIZE // 4] = 1.0
    return {"image": x, "foreground": foreground, "lesion_mask": lesion}, y


def _independent_terms(model, inputs, labels, dilation: int):
    """Outside / off-lesion mass by NumPy + scipy (tf-keras-vis' zoom), not the model's code."""
    from scipy.ndimage import grey_dilation, zoom

    from kidney_tf.explain.statistics import outside_fraction

    cams = model.class_activation_maps(inputs["image"], labels.argmax(1)).numpy()
    factor = SIZE / cams.shape[1]
    up = np.stack([zoom(c, factor, order=1) for c in cams])
    outside = outside_fraction(up, inputs["foreground"][..., 0] > 0.5)
    lesion = inputs["lesion_mask"][..., 0] > 0.5
    grown = np.stack([grey_dilation(m, size=2 * dilation + 1) for m in lesion])
    valid = lesion.any(axis=(1, 2))
    off = outside_fraction(up[valid], grown[valid])
    return float(outside.mean()), float(off.mean())


def test_spatial_terms_match_an_independent_computation_and_are_reported():
    model = compile_sgd(
        CamFosteringModel.from_classifier(
            tiny_classifier(), cam_weight=0.0, outside_weight=1.0, mask_weight=1.0, mask_dilation=1
        )
    )
    inputs, labels = masked_data()
    logs = model.evaluate(inputs, labels, batch_size=12, verbose=0, return_dict=True)
    outside, off = _independent_terms(model, inputs, labels, dilation=1)
    assert logs["cam_outside"] == pytest.approx(outside, abs=1e-4)
    assert logs["cam_off_lesion"] == pytest.approx(off, abs=1e-4)
    # the loss is CE + both terms (entropy weight 0)
    assert logs["loss"] == pytest.approx(logs["ce_loss"] + outside + off, abs=1e-4)
    history = model.fit(inputs, labels, batch_size=6, epochs=1, verbose=0).history
    assert {"cam_outside", "cam_off_lesion", "cam_entropy"} <= set(history)
    # predict accepts the same dict input and returns the plain classifier's output
    np.testing.assert_allclose(
        model.predict(inputs, verbose=0), model(inputs["image"]).numpy(), atol=1e-6
    )


def test_images_without_a_lesion_mask_contribute_nothing():
    model = compile_sgd(
        CamFosteringModel.from_classifier(tiny_classifier(), cam_weight=0.0, mask_weight=1.0)
    )
    inputs, labels = masked_data()
    inputs.pop("foreground")
    with_mask = model.evaluate(
        {k: v[::2] for k, v in inputs.items()}, labels[::2], verbose=0, return_dict=True
    )
    everything = model.evaluate(inputs, labels, batch_size=12, verbose=0, return_dict=True)
    assert everything["cam_off_lesion"] == pytest.approx(with_mask["cam_off_lesion"], abs=1e-5)
    assert "cam_outside" not in everything


def test_anatomy_term_moves_mass_into_the_foreground():
    inputs, labels = masked_data(n=24)
    results = {}
    for weight in (0.0, 5.0):
        model = compile_sgd(
            CamFosteringModel.from_classifier(
                tiny_classifier(seed=3), cam_weight=1e-6, outside_weight=weight
            ),
            lr=0.05,
        )
        model.fit(inputs, labels, batch_size=8, epochs=15, verbose=0)
        results[weight] = model.evaluate(inputs, labels, verbose=0, return_dict=True)
    assert results[5.0]["cam_outside"] < results[0.0]["cam_outside"] - 0.05


def test_spatial_terms_need_their_masks_and_round_trip_in_the_config(tmp_path):
    model = compile_sgd(
        CamFosteringModel.from_classifier(
            tiny_classifier(), outside_weight=0.5, mask_weight=2.0, mask_dilation=3
        )
    )
    x, y = toy_data()
    with pytest.raises(ValueError, match="with_foreground"):
        model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert (loaded.outside_weight, loaded.mask_weight, loaded.mask_dilation) == (0.5, 2.0, 3)
    assert loaded.cam_method == "gradcam++"
    with pytest.raises(ValueError, match="outside_weight"):
        model.outside_weight = -1
    with pytest.raises(ValueError, match="mask_dilation"):
        CamFosteringModel.from_classifier(tiny_classifier(), mask_dilation=-1)


def test_cam_empty_reports_maps_with_no_positive_mass(caplog):
    # exact CAM = relu(features · W[:, c]); ReLU features and a negative kernel: every map is 0,
    # which reads as uniform (entropy 1) and gives the penalty no gradient: cam_empty says so.
    model = CamFosteringModel.from_classifier(tiny_classifier(), cam_weight=1.0, cam_method="exact")
    compile_sgd(model)
    x, y = toy_data()
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0.0 <= logs["cam_empty"] < 1.0
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([-np.abs(kernel) - 0.1, bias])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["cam_empty"] == 1.0 and logs["cam_entropy"] == pytest.approx(1.0)
    from kidney_tf.training.callbacks import EmptyMapsWarning

    warning = EmptyMapsWarning()
    with caplog.at_level("WARNING", logger="kidney_tf"):
        history = model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[warning]).history
    assert history["cam_empty"] == [1.0, 1.0]  # stuck: the penalty cannot bring the maps back
    assert warning.warned_at == 0 and caplog.text.count("alive_weight") == 1  # warned once


def test_alive_term_brings_empty_maps_back_and_is_zero_while_they_live(tmp_path):
    # Dead exact maps (negative kernel, ReLU features) and the CE switched off (sample weight 0):
    # the entropy term alone leaves them dead; with the alive hinge the penalty revives them.
    x, y = toy_data()
    empty = {}
    for alive in (0.0, 1.0):
        model = CamFosteringModel.from_classifier(
            tiny_classifier(), cam_weight=1.0, cam_method="exact", alive_weight=alive
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.05), loss=WeightedCrossEntropy([1.0, 1.0, 1.0])
        )
        kernel, bias = model.get_layer("logits").get_weights()
        model.get_layer("logits").set_weights([-np.abs(kernel) - 0.1, bias])
        history = model.fit(
            x, y, sample_weight=np.zeros(len(x)), epochs=8, batch_size=4, verbose=0
        ).history
        empty[alive] = history["cam_empty"]
    assert empty[0.0] == [1.0] * 8
    assert empty[1.0][0] == 1.0 and empty[1.0][-1] <= 0.5
    from kidney_tf.training.fostering import _peak_shortfall

    living = tf.constant([[[2.0, -1.0], [0.5, -0.2]]])
    dead = tf.constant([[[-0.1, -1.0], [-0.5, -0.2]]])
    assert float(_peak_shortfall(living)[0]) == 0.0  # peak >= half the largest magnitude
    assert float(_peak_shortfall(dead)[0]) == pytest.approx(0.5 + 0.1)
    with tf.GradientTape() as tape:
        tape.watch(dead)
        shortfall = _peak_shortfall(dead)
    gradient = tape.gradient(shortfall, dead).numpy()
    assert gradient[0, 0, 0] < 0 and np.count_nonzero(gradient) == 1  # raises the peak only
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").alive_weight == 1.0
    with pytest.raises(ValueError, match="alive_weight"):
        model.alive_weight = -1.0
