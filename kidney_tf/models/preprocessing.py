"""Serialisable input-preprocessing layers that live inside the saved models.

A saved kidney_tf model takes raw 0–255 float RGB images; the per-backbone preprocessing is a
layer of the model, so ``keras.models.load_model(..., safe_mode=True)``, TF Serving and
tf-keras-vis all see the same function. ``keras.applications.resnet50.preprocess_input`` in a
``Lambda`` layer would not load in safe mode, hence this small registered layer.

Usage::

    x = CaffePreprocessing(name="preprocessing")(inputs)  # RGB 0..255 -> BGR minus ImageNet mean
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

# ImageNet channel means in BGR order, as used by the original Caffe ResNet weights.
IMAGENET_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="kidney_tf")
class CaffePreprocessing(keras.layers.Layer):
    """'caffe'-style preprocessing: RGB -> BGR, then subtract the per-channel ImageNet mean.

    Same numbers as ``keras.applications.resnet50.preprocess_input`` for channels-last input.

    Usage: ``x = CaffePreprocessing()(keras.Input((224, 224, 3)))``.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != 3:
            raise ValueError(f"mean must have 3 values (B, G, R), got {list(mean)}")
        self.mean = tuple(float(m) for m in mean)

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.cast(ops.convert_to_tensor(self.mean), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": list(self.mean)}


@keras.saving.register_keras_serializable(package="kidney_tf")
class PerImageStandardization(keras.layers.Layer):
    """Give every image the same intensity mean and spread: ``(x - mean) / std * scale + centre``.

    Statistics are over each image's pixels and channels (``tf.image.per_image_standardization``
    semantics, std floored at ``1/sqrt(N)``), then mapped back into the 0–255 range the next
    preprocessing expects (mean ``centre``, std ``scale``). A from-scratch model then cannot
    tell classes apart by global brightness or contrast (scanner window, export settings).

    Usage: ``x = PerImageStandardization(name="input_norm")(keras.Input((128, 128, 3)))``.
    """

    def __init__(self, centre: float = 127.5, scale: float = 64.0, **kwargs):
        super().__init__(**kwargs)
        self.centre = float(centre)
        self.scale = float(scale)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.std(x, axis=(1, 2, 3), keepdims=True)
        count = ops.cast(ops.prod(ops.shape(x)[1:]), self.compute_dtype)
        std = ops.maximum(std, 1.0 / ops.sqrt(count))
        return (x - mean) / std * self.scale + self.centre

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "centre": self.centre, "scale": self.scale}
