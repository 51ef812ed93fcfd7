"""The layout of ``metrics.json`` and how to read a headline number out of it.

``metrics.json`` (written by ``evaluate_model``)::

    accuracy, macro_f1, weighted_f1, balanced_accuracy      floats
    per_class: {class: {precision, recall, f1, support}}
    confusion_matrix: [[int]]  (rows = true, columns = predicted), class_names, n_images
    calibration: {ece, mce, nll, n_bins, temperature, reliability: {...}}
    cam: {method, layer, native_grid, input_size, target, n_images, foreground, ...
          <statistic>: {mean, std, median, n[, chance]}   for each of CAM_STATISTICS present
          per_class: {class: {n, <statistic>: mean, ...}}
          shortcut_warnings: [str], faithfulness: {...}}

Usage: ``metric_value(json.load(open("report/metrics.json")), "entropy")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Per-image CAM statistics, in the order reports show them. Localisation ones need lesion masks.
CAM_STATISTICS = ("entropy", "radius", "snr", "snr_db", "outside_fraction")
LOCALISATION_STATISTICS = ("pointing_game", "energy_in_mask", "iou")
FAITHFULNESS_STATISTICS = ("deletion_auc", "insertion_auc")


@dataclass(frozen=True)
class MetricSpec:
    """One headline metric: where it lives in metrics.json and which direction is better."""

    key: str
    label: str
    higher_is_better: bool
    section: str  # "classification" | "calibration" | "cam"


HEADLINE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("accuracy", "accuracy", True, "classification"),
    MetricSpec("macro_f1", "macro-F1", True, "classification"),
    MetricSpec("weighted_f1", "weighted-F1", True, "classification"),
    MetricSpec("ece", "ECE (15 bins)", False, "calibration"),
    MetricSpec("entropy", "CAM normalised entropy", False, "cam"),
    MetricSpec(
        "fostering_entropy", "entropy of the fostered map (native, true class)", False, "cam"
    ),
    MetricSpec("radius", "CAM radius", False, "cam"),
    MetricSpec("snr", "CAM SNR", True, "cam"),
    MetricSpec("snr_db", "CAM SNR [dB]", True, "cam"),
    MetricSpec("outside_fraction", "CAM mass outside body", False, "cam"),
    MetricSpec("pointing_game", "pointing game", True, "cam"),
    MetricSpec("energy_in_mask", "energy in lesion mask", True, "cam"),
    MetricSpec("iou", "IoU with lesion mask", True, "cam"),
    MetricSpec("deletion_auc", "deletion AUC", False, "cam"),
    MetricSpec("insertion_auc", "insertion AUC", True, "cam"),
)
SPECS = {spec.key: spec for spec in HEADLINE_METRICS}


def _as_float(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("mean")
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def metric_value(metrics: dict[str, Any], key: str) -> float | None:
    """The headline number for ``key`` (see ``HEADLINE_METRICS``) or ``None`` when absent."""
    if key in ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy"):
        return _as_float(metrics.get(key))
    if key in ("ece", "nll", "mce"):
        return _as_float((metrics.get("calibration") or {}).get(key))
    return _as_float((metrics.get("cam") or {}).get(key))


def chance_value(metrics: dict[str, Any], key: str) -> float | None:
    """The chance (localisation) or random (faithfulness) baseline recorded next to ``key``."""
    entry = (metrics.get("cam") or {}).get(key)
    if not isinstance(entry, dict):
        return None
    return _as_float(entry.get("chance", entry.get("random")))


# ------------------------------------------------------------------------------ cam_examples.npz
CAM_EXAMPLES_FILE = "cam_examples.npz"
_EXAMPLE_ARRAYS = ("files", "images", "maps", "labels", "predictions", "entropy", "radius", "snr")


def save_cam_examples(
    path,
    *,
    files,
    images,
    maps,
    labels,
    predictions,
    class_names,
    method: str,
    entropy,
    radius,
    snr,
    masks=None,
) -> None:
    """Write the few CAM examples a report keeps so ``compare`` can pair them without models.

    ``images`` uint8 ``[N, s, s, 3]`` (small), ``maps`` ``[N, s, s]`` in [0, 1] stored as
    float16, ``files`` the image ids (relative paths), labels/predictions class indices, and
    the per-image entropy/radius/SNR of the report's main CAM method; ``masks`` (optional,
    ``[N, s, s]`` 0/1) the lesion masks, outlined in the paired overlays.
    """
    import numpy as np

    from kidney_tf.utils.io import atomic_path

    with atomic_path(path, suffix=".npz") as tmp, tmp.open("wb") as fh:
        np.savez_compressed(
            fh,
            files=np.asarray(files, dtype=str),
            images=np.asarray(images, dtype=np.uint8),
            maps=np.asarray(maps, dtype=np.float16),
            labels=np.asarray(labels, dtype=np.int32),
            predictions=np.asarray(predictions, dtype=np.int32),
            class_names=np.asarray(class_names, dtype=str),
            method=np.asarray(method),
            entropy=np.asarray(entropy, dtype=np.float32),
            radius=np.asarray(radius, dtype=np.float32),
            snr=np.asarray(snr, dtype=np.float32),
            **({} if masks is None else {"masks": np.asarray(masks, dtype=np.uint8)}),
        )


def load_cam_examples(path) -> dict[str, Any]:
    """Read ``cam_examples.npz`` into a dict (``class_names`` as a list, ``method`` as str)."""
    from pathlib import Path

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CAM examples not found (re-run kidney-tf evaluate)")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in (*_EXAMPLE_ARRAYS, "class_names", "method") if k not in data]
        if missing:
            raise ValueError(f"{path}: not a kidney_tf CAM examples file (missing {missing})")
        out: dict[str, Any] = {k: data[k] for k in _EXAMPLE_ARRAYS}
        out["class_names"] = [str(c) for c in data["class_names"]]
        out["method"] = str(data["method"])
        out["masks"] = data.get("masks")
    out["maps"] = out["maps"].astype(np.float32)
    return out


__all__ = [
    "CAM_EXAMPLES_FILE",
    "CAM_STATISTICS",
    "FAITHFULNESS_STATISTICS",
    "HEADLINE_METRICS",
    "LOCALISATION_STATISTICS",
    "MetricSpec",
    "SPECS",
    "chance_value",
    "load_cam_examples",
    "metric_value",
    "save_cam_examples",
]
