"""Probability calibration: expected calibration error, reliability diagrams, temperature scaling.

Definitions (Guo et al., 2017, "On Calibration of Modern Neural Networks"):

- *confidence* of a prediction = its top-class probability; it is *correct* when the top class is
  the true class.
- **ECE** with ``n_bins`` equal-width confidence bins over [0, 1] (default 15, as in Guo et al.):
  ``ECE = sum_b |B_b|/N * |accuracy(B_b) - mean_confidence(B_b)|``. Bin ``b`` holds confidences in
  ``(b/n, (b+1)/n]``; the first bin also holds exactly 0 (scikit-learn's ``calibration_curve``
  with ``strategy="uniform"`` gives the per-bin accuracy and confidence). **MCE** is the largest
  per-bin gap.
- **Temperature scaling**: a single scalar ``T > 0`` divides the logits, ``softmax(z / T)``; it is
  fitted by minimising the negative log-likelihood on the *validation* split (never the test
  split) and leaves the arg-max, hence accuracy, unchanged. kidney_tf models output probabilities;
  ``log(p)`` equals the logits up to a per-row constant, so ``softmax(log(p) / T)`` is exact.

Store the fitted ``T`` in the model metadata (``metadata["temperature"]``); ``apply_temperature``
works on NumPy arrays and, graph-safe, on TensorFlow tensors, so exported serving functions apply
the same rescaling.

Usage::

    from kidney_tf.evaluation.calibration import fit_temperature, apply_temperature
    T = fit_temperature(val_probs, val_labels)
    test_probs_calibrated = apply_temperature(test_probs, T)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 15
_EPS = 1e-12
TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass
class ReliabilityData:
    """Per-bin data of a reliability diagram (empty bins have count 0 and NaN accuracy/confidence)."""

    bin_edges: np.ndarray  # [n_bins + 1]
    bin_accuracy: np.ndarray  # [n_bins]
    bin_confidence: np.ndarray  # [n_bins]
    bin_counts: np.ndarray  # [n_bins] int
    ece: float
    mce: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN for empty bins becomes ``None``)."""
        out = asdict(self)
        for key in ("bin_edges", "bin_accuracy", "bin_confidence"):
            out[key] = [None if not np.isfinite(v) else float(v) for v in out[key]]
        out["bin_counts"] = [int(v) for v in self.bin_counts]
        return out


def _as_label_indices(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2:  # one-hot (or soft) labels
        if labels.shape[1] != num_classes:
            raise ValueError(
                f"labels have {labels.shape[1]} columns but probabilities have {num_classes}"
            )
        return labels.argmax(axis=1).astype(np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [N] indices or [N, C] one-hot, got shape {labels.shape}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label indices must lie in [0, {num_classes - 1}]")
    return labels


def _as_probabilities(probabilities) -> np.ndarray:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must be [N, C] with C >= 2, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probabilities contain NaN or infinite values")
    return probs


def reliability_data(probabilities, labels, *, n_bins: int = DEFAULT_BINS) -> ReliabilityData:
    """Bin predictions by confidence; return per-bin accuracy/confidence/count, ECE and MCE.

    Usage: ``rel = reliability_data(probs, y); rel.ece``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = _as_probabilities(probabilities)
    y = _as_label_indices(labels, probs.shape[1])
    if len(y) != len(probs):
        raise ValueError(f"{len(probs)} probability rows but {len(y)} labels")
    from sklearn.calibration import calibration_curve

    confidence = np.clip(probs.max(axis=1), 0.0, 1.0)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    n = int(len(y))
    # scikit-learn's uniform bins are right-closed, (b/n, (b+1)/n], with 0 in bin 0; it returns only
    # the non-empty bins, so the counts (for ECE weights and the diagram) use its same bin rule.
    counts = np.bincount(np.searchsorted(edges[1:-1], confidence), minlength=n_bins)
    acc = np.full(n_bins, np.nan)
    conf = np.full(n_bins, np.nan)
    if n:
        filled = counts > 0
        acc[filled], conf[filled] = calibration_curve(
            correct, confidence, n_bins=n_bins, strategy="uniform"
        )
    gaps = np.where(counts > 0, np.abs(acc - conf), 0.0)
    ece = float(np.sum(counts * gaps) / n) if n else 0.0
    mce = float(gaps.max()) if n else 0.0
    return ReliabilityData(edges, acc, conf, counts.astype(np.int64), ece, mce, n)


def expected_calibration_error(probabilities, labels, *, n_bins: int = DEFAULT_BINS) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (see the module docstring).

    Usage: ``ece = expected_calibration_error(probs, y)``.
    """
    return reliability_data(probabilities, labels, n_bins=n_bins).ece


def negative_log_likelihood(probabilities, labels) -> float:
    """Mean ``-log p[true class]`` (probabilities clipped at 1e-12).

    Usage: ``nll = negative_log_likelihood(probs, y)``.
    """
    probs = _as_probabilities(probabilities)
    y = _as_label_indices(labels, probs.shape[1])
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0))))


def _softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def apply_temperature(probabilities, temperature: float | None):
    """Rescale probabilities by temperature: ``softmax(log(p) / T)``.

    ``T > 1`` softens (less confident), ``T < 1`` sharpens, ``None`` or 1 returns the input
    unchanged. Accepts NumPy arrays (returns float32 NumPy) or TensorFlow tensors (returns a
    tensor, graph-safe, for serving functions).

    Usage: ``calibrated = apply_temperature(model.predict(x), metadata["temperature"])``.
    """
    if temperature is None or float(temperature) == 1.0:
        return probabilities
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if type(probabilities).__module__.startswith("tensorflow"):
        import tensorflow as tf

        p = tf.cast(probabilities, tf.float32)
        return tf.nn.softmax(tf.math.log(tf.maximum(p, _EPS)) / temperature, axis=-1)
    p = np.asarray(probabilities, dtype=np.float64)
    return _softmax_np(np.log(np.clip(p, _EPS, 1.0)) / temperature).astype(np.float32)


def fit_temperature(
    probabilities, labels, *, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """Fit the scalar temperature minimising validation NLL (bounded 1-D search over ``log T``).

    Fit it on the validation split and store it with the model (``metadata["temperature"]``).

    Usage: ``T = fit_temperature(val_probs, val_labels)``.
    """
    from scipy.optimize import minimize_scalar

    probs = _as_probabilities(probabilities)
    y = _as_label_indices(labels, probs.shape[1])
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on an empty set")
    log_p = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        z = log_p / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_softmax[rows, y].mean())

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    best = float(result.x)
    # The bounded search can stop near T = 1 without improving on it; never return a worse T.
    return float(np.exp(best)) if nll(best) <= nll(0.0) else 1.0


def calibration_summary(
    probabilities,
    labels,
    *,
    temperature: float | None = None,
    n_bins: int = DEFAULT_BINS,
    raw_probabilities=None,
) -> dict[str, Any]:
    """JSON-ready calibration block for ``metrics.json``.

    ``probabilities`` are the reported (possibly temperature-scaled) predictions; pass the
    unscaled ones as ``raw_probabilities`` to also record the ECE/NLL before scaling.
    """
    rel = reliability_data(probabilities, labels, n_bins=n_bins)
    out: dict[str, Any] = {
        "ece": rel.ece,
        "mce": rel.mce,
        "nll": negative_log_likelihood(probabilities, labels),
        "n_bins": n_bins,
        "binning": "equal-width confidence bins over [0, 1] (Guo et al. 2017)",
        "temperature": None if temperature is None else float(temperature),
        "reliability": rel.to_dict(),
    }
    if raw_probabilities is not None and temperature is not None:
        out["ece_uncalibrated"] = expected_calibration_error(
            raw_probabilities, labels, n_bins=n_bins
        )
        out["nll_uncalibrated"] = negative_log_likelihood(raw_probabilities, labels)
    return out


__all__ = [
    "DEFAULT_BINS",
    "ReliabilityData",
    "apply_temperature",
    "calibration_summary",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "reliability_data",
]
