"""Class-weighted categorical cross-entropy (serialisable) and balanced class weights.

``WeightedCrossEntropy`` multiplies each sample's cross-entropy by the weight of its true class
and averages over the batch (Keras' ``sum_over_batch_size``), i.e. the same objective as passing
``class_weight`` to ``fit`` with plain cross-entropy, but stored with the model.

Usage::

    weights = balanced_class_weights(train_labels, num_classes=4)   # {0: 0.8, 1: 0.6, ...}
    model.compile(optimizer="adam", loss=WeightedCrossEntropy(weights), metrics=["accuracy"])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras
from keras import ops

from kidney_tf.data.class_weights import balanced_class_weights
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


def _as_weight_list(class_weights: Mapping[int, float] | Sequence[float]) -> list[float]:
    if isinstance(class_weights, Mapping):
        keys = sorted(int(k) for k in class_weights)
        if keys != list(range(len(keys))):
            raise ValueError(f"class_weights keys must be 0..C-1, got {keys}")
        values = [class_weights[k] if k in class_weights else class_weights[str(k)] for k in keys]
    else:
        values = list(class_weights)
    weights = [float(w) for w in values]
    if not weights:
        raise ValueError("class_weights is empty")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"class_weights must be finite and >= 0, got {weights}")
    return weights


@keras.saving.register_keras_serializable(package="kidney_tf")
class WeightedCrossEntropy(keras.losses.Loss):
    """Categorical cross-entropy with a weight per true class, for one-hot (or sparse) labels.

    Args:
        class_weights: ``{class_index: weight}`` or a sequence indexed by class; None = all 1.
        from_logits: ``y_pred`` are logits rather than probabilities.
        label_smoothing: as in ``keras.losses.CategoricalCrossentropy`` (weights still follow
            the unsmoothed true class).

    Usage: ``loss = WeightedCrossEntropy({0: 1.0, 1: 0.5, 2: 2.0, 3: 1.0})``.
    """

    def __init__(
        self,
        class_weights: Mapping[int, float] | Sequence[float] | None = None,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_cross_entropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = None if class_weights is None else _as_weight_list(class_weights)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        num_classes = y_pred.shape[-1]
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) - 1 or (
            len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1 and num_classes != 1
        ):
            y_true = ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (-1,)), num_classes)
        y_true = ops.cast(y_true, y_pred.dtype)
        per_sample = keras.losses.categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )
        if self.class_weights is None:
            return per_sample
        if num_classes is not None and num_classes != len(self.class_weights):
            raise ValueError(
                f"{len(self.class_weights)} class_weights for predictions with {num_classes} classes"
            )
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return per_sample * ops.sum(y_true * weights, axis=-1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "class_weights": self.class_weights,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


__all__ = ["WeightedCrossEntropy", "balanced_class_weights"]
