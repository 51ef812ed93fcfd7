"""kidney_tf.export: TensorFlow Serving SavedModels with image-bytes and explain signatures.

Usage::

    from kidney_tf.export import export_saved_model
    export_saved_model(model, "serving/kidney/1")

``read_export_metadata`` and ``resolve_version_dir`` need no TensorFlow (``export/layout.py``);
``export_saved_model`` imports it on first use.
"""

from __future__ import annotations

from typing import Any

from kidney_tf.export.layout import read_export_metadata, resolve_version_dir


def __getattr__(name: str) -> Any:
    if name == "export_saved_model":
        from kidney_tf.export.saved_model import export_saved_model

        return export_saved_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["export_saved_model", "read_export_metadata", "resolve_version_dir"]
