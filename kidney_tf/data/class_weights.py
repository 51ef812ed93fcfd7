"""Balanced class weights (scikit-learn's "balanced"): the one definition used by the data
pipeline (``DataBundle.class_weights``) and the training loss.

Usage::

    from kidney_tf.data.class_weights import balanced_class_weights
    weights = balanced_class_weights([0, 0, 1, 2, 3], num_classes=4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


def balanced_class_weights(
    labels, num_classes: int, *, class_names: Sequence[str] | None = None
) -> dict[int, float]:
    """``n_samples / (n_classes_present * count_c)`` per class (scikit-learn's "balanced").

    ``labels``: int class indices ``[N]`` or one-hot ``[N, C]``. Classes absent from ``labels``
    get weight 1.0 (with a warning naming them by ``class_names`` when given).

    Usage: ``balanced_class_weights([0, 0, 1, 2, 3], num_classes=4)``.
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=-1)
    labels = labels.astype(int).reshape(-1)
    if labels.size == 0:
        raise ValueError("no labels given")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    present = np.unique(labels)
    weights = dict.fromkeys(range(num_classes), 1.0)
    values = compute_class_weight("balanced", classes=present, y=labels)
    weights.update({int(c): float(w) for c, w in zip(present, values)})
    missing = sorted(set(range(num_classes)) - {int(c) for c in present})
    if missing:
        named = [class_names[i] for i in missing] if class_names else missing
        log.warning("classes %s have no samples; their class weight is 1.0", named)
    return weights


__all__ = ["balanced_class_weights"]
