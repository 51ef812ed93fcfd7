"""WeightedCrossEntropy and balanced_class_weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kidney_tf.training.losses import WeightedCrossEntropy, balanced_class_weights

RNG = np.random.default_rng(0)
LABELS = np.array([0, 1, 2, 3, 1, 1])
Y_TRUE = keras.utils.to_categorical(LABELS, 4).astype("float32")
LOGITS = RNG.normal(size=(6, 4)).astype("float32")
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
WEIGHTS = [1.0, 0.5, 2.0, 3.0]


def test_unit_weights_equal_keras_categorical_crossentropy():
    expected = keras.losses.CategoricalCrossentropy()(Y_TRUE, PROBS)
    assert float(WeightedCrossEntropy()(Y_TRUE, PROBS)) == pytest.approx(float(expected), rel=1e-6)
    ones = WeightedCrossEntropy([1, 1, 1, 1])(Y_TRUE, PROBS)
    assert float(ones) == pytest.approx(float(expected), rel=1e-6)


def test_weighted_loss_matches_per_sample_weights():
    per_sample = -np.log(PROBS[np.arange(6), LABELS])
    expected = np.mean(per_sample * np.array(WEIGHTS)[LABELS])
    assert float(WeightedCrossEntropy(WEIGHTS)(Y_TRUE, PROBS)) == pytest.approx(expected, rel=1e-5)
    as_dict = WeightedCrossEntropy(dict(enumerate(WEIGHTS)))(Y_TRUE, PROBS)
    assert float(as_dict) == pytest.approx(expected, rel=1e-5)
    # Same objective as plain CE with class weights turned into sample weights (fit(class_weight)).
    keras_weighted = keras.losses.CategoricalCrossentropy()(
        Y_TRUE, PROBS, sample_weight=np.array(WEIGHTS)[LABELS]
    )
    assert float(keras_weighted) == pytest.approx(expected, rel=1e-5)


def test_sparse_labels_logits_and_label_smoothing():
    loss = WeightedCrossEntropy(WEIGHTS)
    assert float(loss(LABELS, PROBS)) == pytest.approx(float(loss(Y_TRUE, PROBS)), rel=1e-6)
    logits_loss = WeightedCrossEntropy(WEIGHTS, from_logits=True)(Y_TRUE, LOGITS)
    assert float(logits_loss) == pytest.approx(float(loss(Y_TRUE, PROBS)), rel=1e-5)
    smoothed = WeightedCrossEntropy(WEIGHTS, label_smoothing=0.1)(Y_TRUE, PROBS)
    per_sample = keras.losses.categorical_crossentropy(Y_TRUE, PROBS, label_smoothing=0.1)
    expected = np.mean(np.asarray(per_sample) * np.array(WEIGHTS)[LABELS])
    assert float(smoothed) == pytest.approx(expected, rel=1e-5)


def test_serialisation_round_trip():
    loss = WeightedCrossEntropy({0: 1.0, 1: 0.5, 2: 2.0, 3: 3.0}, label_smoothing=0.05)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, WeightedCrossEntropy)
    assert restored.get_config() == loss.get_config()
    assert restored.class_weights == WEIGHTS


def test_invalid_weights_raise():
    with pytest.raises(ValueError, match="finite"):
        WeightedCrossEntropy([1.0, -1.0])
    with pytest.raises(ValueError, match="0..C-1"):
        WeightedCrossEntropy({0: 1.0, 2: 1.0})
    with pytest.raises(ValueError, match="label_smoothing"):
        WeightedCrossEntropy(label_smoothing=1.0)
    with pytest.raises(ValueError, match="3 class_weights"):
        WeightedCrossEntropy([1, 1, 1])(Y_TRUE, PROBS)


def test_balanced_class_weights():
    weights = balanced_class_weights(LABELS, num_classes=4)
    counts = np.bincount(LABELS, minlength=4)
    expected = {c: len(LABELS) / (4 * counts[c]) for c in range(4)}
    assert weights == pytest.approx(expected)
    assert balanced_class_weights(Y_TRUE, 4) == pytest.approx(expected)
    partial = balanced_class_weights([0, 0, 1], num_classes=3)
    assert partial[2] == 1.0 and partial[0] == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="labels must be in"):
        balanced_class_weights([0, 5], num_classes=4)
