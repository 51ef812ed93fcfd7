"""Classification metrics from labels and predictions (scikit-learn underneath).

Usage::

    from kidney_tf.evaluation.metrics import classification_metrics
    block, text = classification_metrics(y_true, y_pred, class_names)
    block["accuracy"], block["macro_f1"], block["per_class"]["Cyst"]["recall"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]
) -> tuple[dict[str, Any], str]:
    """Accuracy, macro/weighted F1, balanced accuracy, per-class P/R/F1/support, confusion matrix.

    Returns ``(metrics_block, classification_report_text)``; the text is scikit-learn's
    ``classification_report`` with ``digits=4``. Classes absent from the data get support 0 and
    scores 0 (``zero_division=0``), never NaN.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal [N] shapes"
        )
    if len(y_true) == 0:
        raise ValueError("no predictions to evaluate (empty split)")
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = np.unique(y_true)
    block: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        # balanced accuracy over the classes present (sklearn warns about absent ones otherwise)
        "balanced_accuracy": float(
            np.mean([np.mean(y_pred[y_true == c] == c) for c in present])
            if len(present) < len(labels)
            else balanced_accuracy_score(y_true, y_pred)
        ),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "n_images": int(len(y_true)),
    }
    text = classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), digits=4, zero_division=0
    )
    return block, text


__all__ = ["classification_metrics"]
