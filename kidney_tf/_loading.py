"""Loading saved kidney_tf models, and registering the package's Keras classes with Keras.

``import kidney_tf`` stays TensorFlow-free, yet ``keras.models.load_model("model.keras")`` finds
``CamFosteringModel`` and the other custom classes: :func:`install_keras_hook` (run by the package
import) registers them the moment Keras itself is imported (or at once, if it already is), the
way keras-cv and keras-hub register theirs on import. Without ``import kidney_tf``, pass them to
Keras: ``keras.models.load_model(path, custom_objects=kidney_tf.custom_objects())``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any

# The modules that define (and register) kidney_tf's serialisable Keras classes.
SERIALIZABLE_MODULES = (
    "kidney_tf.models.preprocessing",
    "kidney_tf.models.builders",
    "kidney_tf.data.augment",
    "kidney_tf.training.losses",
    "kidney_tf.training.fostering",
)


def register_serializables() -> None:
    """Import the modules that register kidney_tf's classes with Keras (imports TensorFlow)."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


def custom_objects() -> dict[str, Any]:
    """``{"kidney_tf>Name": class}`` for ``keras.models.load_model(..., custom_objects=...)``."""
    import keras

    register_serializables()
    return {
        name: obj
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith("kidney_tf>")
    }


def _initializing(module) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _register_after_keras() -> None:
    # A kidney_tf module still being imported (its own ``import keras`` brought us here)
    # registers its classes itself when it finishes; importing the others now could meet it
    # half-initialised, so leave them to kidney_tf.load_model / the next attribute access.
    if any(
        name.startswith("kidney_tf.") and _initializing(module)
        for name, module in list(sys.modules.items())
    ):
        return
    register_serializables()


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`_register_after_keras` once the ``keras`` package has been executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # find the real spec with the other finders, once
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _register_after_keras()

        loader.exec_module = exec_and_register
        return spec


def install_keras_hook() -> None:
    """Register kidney_tf's Keras classes when Keras is imported (now, if it already is)."""
    if "keras" in sys.modules:
        if not _initializing(sys.modules["keras"]):
            _register_after_keras()
        return
    if not any(isinstance(finder, _KerasImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


def check_model_file(path: str | os.PathLike) -> Path:
    """Refuse a path that is not a Keras model file, without importing TensorFlow.

    Usage: ``check_model_file(args.model)`` before a command starts TensorFlow.

    Raises ``ValueError`` naming the file and the problem.
    """
    import zipfile

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a model file (give the .keras file)")
    if not path.is_file():
        raise ValueError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ValueError(f"{path}: not a Keras model file (expected a .keras file)")
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a Keras model file (a .keras file is a zip archive)")
    with open(path, "rb") as fh:
        if suffix != ".keras" and fh.read(8) != b"\x89HDF\r\n\x1a\n":
            raise ValueError(f"{path}: not a Keras model file (not an HDF5 file)")
    return path


def load_model(path: str | os.PathLike, *, compile: bool = True):  # noqa: A002 - mirrors Keras
    """Load a ``.keras`` model written by kidney_tf, in Keras' ``safe_mode``.

    Usage: ``model = kidney_tf.load_model("runs/kidney/model.keras")``.

    Raises ``ValueError`` naming the file when it is missing or is not a Keras model archive.
    """
    path = check_model_file(path)

    import keras  # after the checks: a wrong path fails in a second, not after TensorFlow's start

    register_serializables()
    try:
        with warnings.catch_warnings():
            # kidney_tf saves models without optimizer state (training.callbacks.save_model_file)
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for bad archives; name the file once.
        raise ValueError(f"{path}: could not load model: {exc}") from exc
