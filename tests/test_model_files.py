"""Model files hold weights and compile settings, not optimizer state (issue 15, case 9)."""

from __future__ import annotations

import io
import warnings
import zipfile

import h5py
import keras
import numpy as np

import kidney_tf
from kidney_tf.training.callbacks import save_model_file


def _trained_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="last_conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)  # 100k weights: sizes dominate the config
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    return model


def _groups(path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(data), "r") as weights:
        return set(weights.keys())


def test_model_file_has_no_optimizer_state_and_training_goes_on(tmp_path):
    model = _trained_model()
    model.save(tmp_path / "full.keras")
    save_model_file(model, tmp_path / "model.keras")
    assert "optimizer" in _groups(tmp_path / "full.keras")
    assert "optimizer" not in _groups(tmp_path / "model.keras")
    full, lean = (tmp_path / "full.keras").stat().st_size, (tmp_path / "model.keras").stat().st_size
    assert lean < 0.6 * full  # Adam keeps two slots per weight: about a third is left

    x = np.random.default_rng(1).uniform(0, 1, (3, 16, 16, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading for optimizer"
        loaded = kidney_tf.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.optimizer is not None and int(loaded.optimizer.iterations) == 0  # compiled
    loaded.fit(x, np.array([0, 1, 0]), verbose=0)

    # the saved-from model keeps its optimizer, and its state, to train on
    steps = int(model.optimizer.iterations)
    model.fit(x, np.array([0, 1, 0]), verbose=0)
    assert int(model.optimizer.iterations) == steps + 1
