"""Loading saved kidney_tf models with every custom object registered."""

from __future__ import annotations

import os
from pathlib import Path


def load_model(path: str | os.PathLike, *, compile: bool = True):  # noqa: A002 - mirrors Keras
    """Load a ``.keras`` model written by kidney_tf, in Keras' ``safe_mode``.

    Usage: ``model = kidney_tf.load_model("runs/kidney/model.keras")``.

    Raises ``ValueError`` naming the file when it is missing or is not a Keras model archive.
    """
    import zipfile

    import keras

    # Importing these modules registers the package's serialisable classes with Keras.
    import kidney_tf.training  # noqa: F401

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: model file not found")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a Keras model file (a .keras file is a zip archive)")
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for bad archives; name the file once.
        raise ValueError(f"{path}: could not load model: {exc}") from exc
