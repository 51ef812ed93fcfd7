"""Classification heads put on top of a convolutional backbone.

Every head is ``GlobalAveragePooling2D -> [Dense -> BatchNorm -> Dropout]* -> [Dropout] ->
Dense(num_classes, name="logits") -> Activation("softmax", dtype="float32", name="probabilities")``.
With no hidden layers (and no batch-norm) the class activation map is exactly
``relu(features @ W_logits[:, c])`` (CAM identity), which CAM fostering uses as its cheap "exact"
method; other heads need Grad-CAM.

Usage::

    head = HeadConfig(hidden_units=(256,), dropout=0.3)
    probabilities = build_head(backbone.output, num_classes=4, config=head)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

POOL_LAYER = "global_pool"
LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"


@dataclass(frozen=True)
class HeadConfig:
    """Shape of the classification head.

    Attributes:
        hidden_units: sizes of hidden Dense layers after pooling (``()``: none, the paper's head).
        dropout: dropout rate after each hidden layer and before the logits (0 disables).
        batch_norm: add BatchNormalization after each hidden Dense layer.
        activation: activation of the hidden Dense layers.

    Usage: ``HeadConfig(hidden_units=(256,), dropout=0.3)``.
    """

    hidden_units: tuple[int, ...] = ()
    dropout: float = 0.0
    batch_norm: bool = False
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))
        if any(u <= 0 for u in self.hidden_units):
            raise ValueError(f"hidden_units must be positive, got {self.hidden_units}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.batch_norm and not self.hidden_units:
            raise ValueError("batch_norm needs at least one hidden layer (hidden_units)")

    @property
    def supports_exact_cam(self) -> bool:
        """True when CAM_c = relu(features @ W[:, c]) holds (no hidden layers)."""
        return not self.hidden_units

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden_units"] = list(self.hidden_units)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown head settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def build_head(features, num_classes: int, config: HeadConfig | None = None):
    """Apply the head layers to a ``[B, H, W, C]`` feature tensor; return the probabilities tensor.

    Usage: ``probs = build_head(backbone.output, 4, HeadConfig())``.
    """
    import keras

    config = config or HeadConfig()
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(features)
    for i, units in enumerate(config.hidden_units, start=1):
        x = keras.layers.Dense(units, name=f"head_dense_{i}")(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization(name=f"head_bn_{i}")(x)
        x = keras.layers.Activation(config.activation, name=f"head_activation_{i}")(x)
        if config.dropout > 0:
            x = keras.layers.Dropout(config.dropout, name=f"head_dropout_{i}")(x)
    if config.dropout > 0 and not config.hidden_units:
        x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.layers.Activation("softmax", dtype="float32", name=PROBABILITIES_LAYER)(logits)


__all__ = ["HeadConfig", "build_head", "LOGITS_LAYER", "POOL_LAYER", "PROBABILITIES_LAYER"]
