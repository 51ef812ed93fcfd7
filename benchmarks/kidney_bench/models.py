"""Models the benchmarks train and explain, built and compiled exactly like ``kidney-tf train``.

``"resnet50"`` and ``"efficientnetb1"`` come from :func:`kidney_tf.build_classifier`
(``weights=None``: no download); ``"tiny"`` is a small flat CNN of the same shape (named last
conv, GAP, ``logits``, softmax) for smoke tests. Each architecture is paired with the data it is
used on in the papers: ResNet-50 with kidney CT (body crop), EfficientNetB1 with brain MRI (brain
crop).

Usage::

    pool = ModelPool(num_classes=4)
    model = pool.trainable("resnet50", 224, cam_weight=0.0)   # compiled CamFosteringModel
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kidney_tf.recipes import ARCHITECTURES


@dataclasses.dataclass(frozen=True)
class ArchSetup:
    """Which phantoms, crop and input size an architecture is benchmarked with."""

    kind: str
    crop: str | None
    image_size: int


ARCH_SETUPS: dict[str, ArchSetup] = {
    "resnet50": ArchSetup("kidney-ct", "body", ARCHITECTURES["resnet50"]),
    "efficientnetb1": ArchSetup("brain-mri", "brain", ARCHITECTURES["efficientnetb1"]),
    "tiny": ArchSetup("kidney-ct", "body", 64),
}


def arch_setup(arch: str) -> ArchSetup:
    try:
        return ARCH_SETUPS[arch]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}; choose one of {sorted(ARCH_SETUPS)}"
        ) from None


def build_model(arch: str, image_size: int, num_classes: int = 4, seed: int = 0):
    """An untrained flat ``Classifier`` (``weights=None``) taking raw 0..255 pixels.

    Usage: ``model = build_model("efficientnetb1", 240)``
    """
    import keras

    from kidney_tf import build_classifier
    from kidney_tf.models.builders import Classifier

    arch_setup(arch)
    keras.utils.set_random_seed(seed)
    if arch != "tiny":
        return build_classifier(arch, num_classes=num_classes, image_size=image_size, weights=None)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocessing")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv_1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    # No "arch" in the metadata: builders.last_conv_layer_name only accepts its own archs there.
    return Classifier(inputs, outputs, name="tiny_classifier", metadata={"image_size": image_size})


def compile_like_trainer(model, num_classes: int, *, jit_compile: bool = False) -> None:
    """Compile with the trainer's own step (``kidney_tf.training.trainer.compile_model``): Adam at
    ``TrainConfig``'s default learning rate, class-weighted cross-entropy with equal weights,
    accuracy.

    Usage: ``compile_like_trainer(model, num_classes=4)``
    """
    from kidney_tf import TrainConfig
    from kidney_tf.training.trainer import compile_model

    config = TrainConfig(out="", jit_compile=jit_compile)  # out: not used by compiling
    compile_model(model, config, dict.fromkeys(range(num_classes), 1.0))


def synthetic_batch(
    batch_size: int, image_size: int, num_classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random batch: float32 images in 0..255 and one-hot labels covering every class."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32)
    labels = np.eye(num_classes, dtype=np.float32)[np.arange(batch_size) % num_classes]
    return images, labels


def cached_batches(batch_size: int, image_size: int, num_classes: int = 4, seed: int = 0):
    """An endless ``tf.data`` of ONE in-memory batch: ``fit`` then measures compute only."""
    import tensorflow as tf

    images, labels = synthetic_batch(batch_size, image_size, num_classes, seed)
    return tf.data.Dataset.from_tensors((images, labels)).cache().repeat()


class ModelPool:
    """Builds each architecture once and hands out compiled trainable views of it.

    ``trainable(arch, size, cam_weight, cam_method=...)`` returns a ``CamFosteringModel`` (what
    ``kidney-tf train`` trains, λ = 0 included) over the SAME layers for every λ and CAM method,
    so the fostering benchmark compares λ > 0 and λ = 0 on one set of weights, and traced train
    steps are reused across sections.
    """

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        self.num_classes = num_classes
        self.seed = seed
        self._base: dict[tuple[str, int], Any] = {}
        self._trainable: dict[tuple, Any] = {}

    def classifier(self, arch: str, image_size: int):
        key = (arch, int(image_size))
        if key not in self._base:
            self._base[key] = build_model(arch, image_size, self.num_classes, self.seed)
        return self._base[key]

    def trainable(
        self,
        arch: str,
        image_size: int,
        cam_weight: float = 0.0,
        *,
        cam_method: str = "exact",
        cam_layer: str | None = None,
        jit_compile: bool = False,
    ):
        from kidney_tf import CamFosteringModel

        key = (arch, int(image_size), float(cam_weight), cam_method, cam_layer, bool(jit_compile))
        if key not in self._trainable:
            model = CamFosteringModel.from_classifier(
                self.classifier(arch, image_size),
                cam_weight=cam_weight,
                cam_method=cam_method,
                cam_layer=cam_layer,
            )
            compile_like_trainer(model, self.num_classes, jit_compile=jit_compile)
            self._trainable[key] = model
        return self._trainable[key]

    def clear(self) -> None:
        import keras

        self._base.clear()
        self._trainable.clear()
        keras.backend.clear_session()


__all__ = [
    "ARCH_SETUPS",
    "ArchSetup",
    "ModelPool",
    "arch_setup",
    "build_model",
    "cached_batches",
    "compile_like_trainer",
    "synthetic_batch",
]
