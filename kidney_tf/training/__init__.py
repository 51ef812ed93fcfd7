"""kidney_tf.training: losses, the CAM-fostering model and the trainer.

Importing this package is cheap (no TensorFlow): the names below are loaded on first use, so
``kidney-tf train`` checks its arguments and its output folder before TensorFlow is imported.
Loading a model registers the package's Keras classes itself (``kidney_tf.load_model``).

Usage::

    from kidney_tf.training import CamFosteringModel, WeightedCrossEntropy
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_ATTRS: dict[str, str] = {
    "CamFosteringModel": "kidney_tf.training.fostering",
    "WeightedCrossEntropy": "kidney_tf.training.losses",
    "balanced_class_weights": "kidney_tf.training.losses",
}

__all__ = sorted(_LAZY_ATTRS)


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_ATTRS})
