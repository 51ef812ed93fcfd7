"""kidney_tf.export: TensorFlow Serving SavedModels with image-bytes and explain signatures.

Usage::

    from kidney_tf.export import export_saved_model
    export_saved_model(model, "serving/kidney/1")
"""

from kidney_tf.export.saved_model import (
    export_saved_model,
    read_export_metadata,
    resolve_version_dir,
)

__all__ = ["export_saved_model", "read_export_metadata", "resolve_version_dir"]
