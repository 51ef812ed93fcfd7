"""kidney_tf: Keras-native CAM fostering (kidney CT) and brain-MRI EfficientNetB1 classification.

Importing the package is cheap: TensorFlow and Keras are only imported when a name that needs them
is first used (PEP 562 lazy attributes).

Usage::

    import kidney_tf as ktf
    bundle = ktf.build_datasets("phantoms/", image_size=128, batch_size=16)
    model = ktf.build_classifier("resnet50", num_classes=4, image_size=128, weights=None)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"

# Keep TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature hints) out of user output
# unless the user asked for it explicitly.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Public name -> module that defines it. One table, so `dir(kidney_tf)` and the docs stay honest.
_LAZY_ATTRS: dict[str, str] = {
    # data
    "ImageRecord": "kidney_tf.data.records",
    "ImageReadError": "kidney_tf.data.pixels",
    "read_image": "kidney_tf.data.decode",
    "scan_folder": "kidney_tf.data.sources",
    "read_manifest": "kidney_tf.data.sources",
    "read_mask": "kidney_tf.data.decode",
    "load_source": "kidney_tf.data.sources",
    "find_duplicates": "kidney_tf.data.duplicates",
    "load_manifest": "kidney_tf.data.manifests",
    "generate_phantoms": "kidney_tf.data.phantoms",
    "render_phantom": "kidney_tf.data.phantoms",
    "render_phantom_sample": "kidney_tf.data.phantoms",
    "PHANTOM_CLASSES": "kidney_tf.data.phantoms",
    "crop_brain": "kidney_tf.data.crop",
    "crop_body": "kidney_tf.data.crop",
    "tf_crop_brain": "kidney_tf.data.crop_tf",
    "tf_crop_body": "kidney_tf.data.crop_tf",
    "crop_folder": "kidney_tf.data.crop",
    "brain_mask": "kidney_tf.data.crop",
    "body_mask": "kidney_tf.data.crop",
    "build_datasets": "kidney_tf.data.pipeline",
    "DataBundle": "kidney_tf.data.pipeline",
    "split_records": "kidney_tf.data.splits",
    "write_split_csv": "kidney_tf.data.splits",
    "AugmentConfig": "kidney_tf.data.augment",
    "build_augmenter": "kidney_tf.data.augment",
    "verify_dataset": "kidney_tf.data.verify",
    # models
    "build_classifier": "kidney_tf.models.builders",
    "HeadConfig": "kidney_tf.models.heads",
    "last_conv_layer_name": "kidney_tf.models.builders",
    "set_backbone_trainable": "kidney_tf.models.builders",
    "unfreeze_top": "kidney_tf.models.builders",
    "save_backbone_weights": "kidney_tf.models.builders",
    "balanced_class_weights": "kidney_tf.data.class_weights",
    # training
    "WeightedCrossEntropy": "kidney_tf.training.losses",
    "CamFosteringModel": "kidney_tf.training.fostering",
    "TrainConfig": "kidney_tf.training.trainer",
    "TrainResult": "kidney_tf.training.trainer",
    "train": "kidney_tf.training.trainer",
    "ResumableBackup": "kidney_tf.training.callbacks",
    "make_strategy": "kidney_tf.training.distribute",
    # explain
    "compute_cams": "kidney_tf.explain.cams",
    "normalized_entropy": "kidney_tf.explain.statistics",
    "cam_radius": "kidney_tf.explain.statistics",
    "cam_snr": "kidney_tf.explain.statistics",
    "explain_batch": "kidney_tf.explain.cams",
    "CamExplainer": "kidney_tf.explain.cams",
    "CamResult": "kidney_tf.explain.cams",
    "summarize_maps": "kidney_tf.explain.statistics",
    "pointing_game": "kidney_tf.explain.statistics",
    "energy_in_mask": "kidney_tf.explain.statistics",
    "cam_iou": "kidney_tf.explain.statistics",
    "outside_fraction": "kidney_tf.explain.statistics",
    "shortcut_warnings": "kidney_tf.explain.statistics",
    "deletion_insertion": "kidney_tf.explain.faithfulness",
    # evaluation / export
    "evaluate_model": "kidney_tf.evaluation.report",
    "fit_model_temperature": "kidney_tf.evaluation.report",
    "compare_reports": "kidney_tf.evaluation.compare",
    "plot_history": "kidney_tf.utils.plots",
    "dataset_figures": "kidney_tf.evaluation.dataset_figures",
    "fit_temperature": "kidney_tf.evaluation.calibration",
    "apply_temperature": "kidney_tf.evaluation.calibration",
    "expected_calibration_error": "kidney_tf.evaluation.calibration",
    "export_saved_model": "kidney_tf.export.saved_model",
    "load_model": "kidney_tf._loading",
    "custom_objects": "kidney_tf._loading",
}

__all__ = ["__version__", *sorted(_LAZY_ATTRS)]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_ATTRS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'kidney_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRS))


# Keras finds kidney_tf's classes by name when it loads a .keras file (keras.models.load_model):
# they are registered the moment Keras is imported, so this import stays TensorFlow-free.
from kidney_tf._loading import install_keras_hook  # noqa: E402

install_keras_hook()
