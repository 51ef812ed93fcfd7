"""Calibration: ECE, reliability data, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from kidney_tf.evaluation.calibration import (
    apply_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_data,
)


def _binary(confidence: float, n: int, n_correct: int) -> tuple[np.ndarray, np.ndarray]:
    """n predictions of class 0 at ``confidence``, the first ``n_correct`` of them correct."""
    probs = np.tile([confidence, 1.0 - confidence], (n, 1))
    labels = np.array([0] * n_correct + [1] * (n - n_correct))
    return probs, labels


def test_perfectly_calibrated_toy_has_zero_ece():
    # Each confidence level is right exactly as often as it claims.
    p1, y1 = _binary(0.75, 100, 75)
    p2, y2 = _binary(0.9, 50, 45)
    p3, y3 = _binary(0.6, 20, 12)
    probs, labels = np.concatenate([p1, p2, p3]), np.concatenate([y1, y2, y3])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-9)


def test_sampled_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(size=n) < conf
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(correct, 0, 1)
    assert expected_calibration_error(probs, labels) < 0.02


def test_overconfident_predictions_have_large_ece():
    probs, labels = _binary(0.99, 100, 60)  # claims 99 %, right 60 %
    ece = expected_calibration_error(probs, labels)
    assert ece == pytest.approx(0.39, abs=1e-6)
    rel = reliability_data(probs, labels)
    assert rel.bin_counts.sum() == 100 and len(rel.bin_counts) == 15
    assert rel.mce == pytest.approx(0.39, abs=1e-6)
    d = rel.to_dict()
    assert d["bin_accuracy"].count(None) == 14  # empty bins are null in JSON


def test_one_hot_and_index_labels_agree():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, 50)
    assert expected_calibration_error(probs, y) == expected_calibration_error(probs, np.eye(4)[y])


def test_temperature_scaling_lowers_nll_and_keeps_argmax():
    rng = np.random.default_rng(2)
    n, c = 400, 4
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0  # informative but noisy
    overconfident = np.exp(4 * logits) / np.exp(4 * logits).sum(1, keepdims=True)
    t = fit_temperature(overconfident, y)
    assert t > 1.5  # softening an over-confident model
    scaled = apply_temperature(overconfident, t)
    assert negative_log_likelihood(scaled, y) < negative_log_likelihood(overconfident, y)
    assert expected_calibration_error(scaled, y) < expected_calibration_error(overconfident, y)
    np.testing.assert_array_equal(scaled.argmax(1), overconfident.argmax(1))
    np.testing.assert_allclose(scaled.sum(1), 1.0, atol=1e-5)


def test_apply_temperature_tensor_matches_numpy():
    import tensorflow as tf

    probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]], np.float32)
    expected = apply_temperature(probs, 2.0)
    got = apply_temperature(tf.constant(probs), 2.0)
    assert tf.is_tensor(got)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    assert apply_temperature(probs, None) is probs
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(probs, 0.0)


def test_calibration_summary_is_json_ready():
    import json

    probs, labels = _binary(0.99, 10, 6)
    summary = calibration_summary(
        apply_temperature(probs, 3.0), labels, temperature=3.0, raw_probabilities=probs
    )
    json.dumps(summary)
    assert summary["n_bins"] == 15 and summary["temperature"] == 3.0
    assert summary["ece_uncalibrated"] > summary["ece"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        expected_calibration_error(np.ones(3), [0, 1, 0])
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(np.full((2, 2), 0.5), [0, 1, 1])
    with pytest.raises(ValueError, match="lie in"):
        expected_calibration_error(np.full((2, 2), 0.5), [0, 5])


def test_reliability_bins_equal_sklearn_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(3, 0.4), size=400)
    # a few confidences exactly on bin edges (right-closed bins) and at 1
    probs[:3] = [[2 / 15, 0.5, 1 - 2 / 15 - 0.5], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]
    y = rng.integers(0, 3, len(probs))
    rel = reliability_data(probs, y)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=15, strategy="uniform")
    filled = rel.bin_counts > 0
    np.testing.assert_allclose(rel.bin_accuracy[filled], prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rel.bin_confidence[filled], prob_pred, rtol=0, atol=1e-12)
    # an independent loop over the bins (b/15, (b+1)/15], 0 in the first
    ece, counts = 0.0, []
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        member = (confidence > lo) & (confidence <= hi) if b else confidence <= hi
        counts.append(int(member.sum()))
        if member.any():
            ece += member.sum() / len(y) * abs(correct[member].mean() - confidence[member].mean())
    assert rel.bin_counts.tolist() == counts
    assert rel.ece == pytest.approx(ece, abs=1e-12)


def test_reliability_data_of_no_predictions_is_empty():
    rel = reliability_data(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert rel.n == 0 and rel.ece == 0.0 and rel.bin_counts.sum() == 0
