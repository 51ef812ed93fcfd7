"""kidney_tf.models: classifier builders, heads and in-model preprocessing (no training code).

Importing this package registers the serialisable model classes with Keras.

Usage::

    from kidney_tf.models import build_classifier, HeadConfig
    model = build_classifier("resnet50", num_classes=4, image_size=224, weights=None)
"""

from kidney_tf.models.builders import (
    ARCHITECTURES,
    Classifier,
    build_classifier,
    last_conv_layer_name,
    save_backbone_weights,
    set_backbone_trainable,
    set_bn_momentum,
    unfreeze_top,
)
from kidney_tf.models.heads import HeadConfig, build_head
from kidney_tf.models.preprocessing import CaffePreprocessing

__all__ = [
    "ARCHITECTURES",
    "CaffePreprocessing",
    "Classifier",
    "HeadConfig",
    "build_classifier",
    "build_head",
    "last_conv_layer_name",
    "save_backbone_weights",
    "set_backbone_trainable",
    "set_bn_momentum",
    "unfreeze_top",
]
