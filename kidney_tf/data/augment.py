"""Training-time augmentation from Keras 3 preprocessing layers, keeping masks aligned.

Geometric ops (flip, rotation, zoom, translation) run on the image with its mask stacked as an
extra channel, so the mask follows the image pixel for pixel; photometric ops (brightness,
contrast, optional RandAugment) touch the image only. Inputs are raw 0..255 pixels.

Usage::

    from kidney_tf.data.augment import AugmentConfig, build_augmenter
    augmenter = build_augmenter(AugmentConfig(rotation=10, zoom=0.1, seed=0))
    images = augmenter(images, training=True)
    images, masks = augmenter(images, masks=masks, training=True)
    mixer = build_mixer(AugmentConfig(mixup=0.2, seed=0))  # batch mixing, soft labels
    images, labels = mixer(images, labels)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import keras
from keras import layers, ops

_FILL_MODES = ("constant", "reflect", "wrap", "nearest")
_NON_NEGATIVE = (
    "rotation",
    "zoom",
    "translation",
    "brightness",
    "contrast",
    "gamma",
    "mixup",
    "cutmix",
)


@dataclasses.dataclass
class AugmentConfig:
    """Augmentation settings; the defaults reproduce the brain-MRI paper's recipe.

    ``rotation`` is in degrees (±), ``zoom``/``translation`` are fractions of the image size (±),
    ``brightness``/``contrast`` are factors of the value range (±, Keras semantics);
    ``gamma`` draws a gamma per image with ``log(gamma)`` uniform in ±``gamma`` (a window-like
    change of the intensity curve that brightness and contrast cannot make). A factor of 0
    disables that op. ``randaugment`` adds Keras ``RandAugment`` (``randaugment_ops`` ops at
    ``randaugment_magnitude``) to the image only; it includes geometric ops, so it cannot be used
    together with masks. ``fill_mode="constant"`` fills exposed corners with ``fill_value``
    (black, like the scanner background) instead of mirroring anatomy. ``mixup``/``cutmix``
    (the Beta parameter of Keras ``MixUp``/``CutMix``; 0 = off, one of the two at most) blend
    pairs of images of a training batch and their one-hot labels (:func:`build_mixer`); a mixed
    image has no single class or mask, so they do not combine with the CAM terms.

    Usage: ``AugmentConfig(vertical_flip=True, randaugment=True, seed=1)``.
    """

    horizontal_flip: bool = True
    vertical_flip: bool = False
    rotation: float = 10.0
    zoom: float = 0.1
    translation: float = 0.0
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.0
    randaugment: bool = False
    randaugment_ops: int = 2
    randaugment_magnitude: float = 0.5
    fill_mode: str = "constant"
    fill_value: float = 0.0
    interpolation: str = "bilinear"
    value_range: tuple[float, float] = (0.0, 255.0)
    mixup: float = 0.0
    cutmix: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.fill_mode not in _FILL_MODES:
            raise ValueError(f"fill_mode must be one of {_FILL_MODES}, got {self.fill_mode!r}")
        if self.mixup and self.cutmix:
            raise ValueError("AugmentConfig: choose mixup or cutmix, not both")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.zoom < 1:
            raise ValueError(f"AugmentConfig.zoom must be in [0, 1), got {self.zoom}")
        self.value_range = tuple(float(v) for v in self.value_range)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (round-trips through :meth:`from_dict`)."""
        data = dataclasses.asdict(self)
        data["value_range"] = list(self.value_range)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """Build from a dict, rejecting unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AugmentConfig keys: {unknown} (known: {sorted(known)})")
        return cls(**dict(data))

    @property
    def mixes(self) -> bool:
        """True if batches are mixed (``mixup`` or ``cutmix``)."""
        return bool(self.mixup or self.cutmix)

    @property
    def is_identity(self) -> bool:
        """True if no per-image op is enabled (batch mixing is :attr:`mixes`)."""
        return not (
            self.horizontal_flip
            or self.vertical_flip
            or self.rotation
            or self.zoom
            or self.translation
            or self.brightness
            or self.contrast
            or self.gamma
            or self.randaugment
        )


@keras.saving.register_keras_serializable(package="kidney_tf")
class RandomGamma(layers.Layer):
    """Per-image gamma curve ``low + range * ((x - low) / range) ** g``, ``log g ~ U(±factor)``.

    Usage: ``RandomGamma(0.3, value_range=(0, 255), seed=1)(images, training=True)``.
    """

    def __init__(
        self,
        factor: float,
        value_range: tuple[float, float] = (0.0, 255.0),
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if factor < 0:
            raise ValueError(f"RandomGamma factor must be >= 0, got {factor}")
        self.factor = float(factor)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool | None = True) -> Any:
        if not training or not self.factor:
            return images
        low, high = self.value_range
        batch = ops.shape(images)[0]
        log_gamma = keras.random.uniform(
            (batch, 1, 1, 1), -self.factor, self.factor, seed=self.generator
        )
        unit = ops.clip((images - low) / (high - low), 0.0, 1.0)
        return low + (high - low) * ops.power(unit, ops.exp(log_gamma))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "factor": self.factor,
            "value_range": list(self.value_range),
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="kidney_tf")
class ScanAugmenter(layers.Layer):
    """Keras layer applying :class:`AugmentConfig` to image batches (and aligned masks).

    Call with ``training=True`` to augment (identity otherwise, so it can sit inside a model).
    ``masks`` (``[B, H, W, 1]`` in {0, 1}) receive exactly the image's geometric transform and
    come back binarised.

    Usage: ``images, masks = ScanAugmenter(AugmentConfig(seed=0))(x, masks=m, training=True)``.
    """

    def __init__(self, config: AugmentConfig | Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if config is None:
            config = AugmentConfig()
        elif isinstance(config, Mapping):
            config = AugmentConfig.from_dict(config)
        self.config = config
        self.geometric = self._geometric_layers(config)
        self.photometric = self._photometric_layers(config)

    @staticmethod
    def _seed(config: AugmentConfig, offset: int) -> int | None:
        return None if config.seed is None else int(config.seed) + offset

    def _geometric_layers(self, c: AugmentConfig) -> list[layers.Layer]:
        out: list[layers.Layer] = []
        flip = {
            (True, True): "horizontal_and_vertical",
            (True, False): "horizontal",
            (False, True): "vertical",
        }.get((c.horizontal_flip, c.vertical_flip))
        if flip:
            out.append(layers.RandomFlip(flip, seed=self._seed(c, 1), name="flip"))
        fill = {"fill_mode": c.fill_mode, "fill_value": c.fill_value}
        if c.rotation:
            out.append(
                layers.RandomRotation(
                    c.rotation / 360.0,
                    interpolation=c.interpolation,
                    seed=self._seed(c, 2),
                    name="rotation",
                    **fill,
                )
            )
        if c.zoom:
            out.append(
                layers.RandomZoom(
                    c.zoom,
                    interpolation=c.interpolation,
                    seed=self._seed(c, 3),
                    name="zoom",
                    **fill,
                )
            )
        if c.translation:
            out.append(
                layers.RandomTranslation(
                    c.translation,
                    c.translation,
                    interpolation=c.interpolation,
                    seed=self._seed(c, 4),
                    name="translation",
                    **fill,
                )
            )
        return out

    def _photometric_layers(self, c: AugmentConfig) -> list[layers.Layer]:
        out: list[layers.Layer] = []
        if c.brightness:
            out.append(
                layers.RandomBrightness(
                    c.brightness,
                    value_range=c.value_range,
                    seed=self._seed(c, 5),
                    name="brightness",
                )
            )
        if c.contrast:
            out.append(
                layers.RandomContrast(
                    c.contrast, value_range=c.value_range, seed=self._seed(c, 6), name="contrast"
                )
            )
        if c.gamma:
            out.append(
                RandomGamma(c.gamma, value_range=c.value_range, seed=self._seed(c, 8), name="gamma")
            )
        if c.randaugment:
            out.append(
                layers.RandAugment(
                    value_range=c.value_range,
                    num_ops=c.randaugment_ops,
                    factor=c.randaugment_magnitude,
                    interpolation=c.interpolation,
                    seed=self._seed(c, 7),
                    name="randaugment",
                )
            )
        return out

    def build(self, images_shape: Any, masks_shape: Any = None) -> None:
        # Sub-layers are stateless (seed generators only); nothing to create here.
        self.built = True

    def call(self, images: Any, masks: Any = None, training: bool | None = None) -> Any:
        images = ops.cast(images, "float32")
        if not training:
            return images if masks is None else (images, ops.cast(masks, "float32"))
        if masks is not None and self.config.randaugment:
            raise ValueError(
                "RandAugment includes geometric ops that cannot follow a mask; "
                "disable randaugment when augmenting with masks"
            )
        channels = images.shape[-1]
        x = images if masks is None else ops.concatenate([images, ops.cast(masks, "float32")], -1)
        for layer in self.geometric:
            x = layer(x, training=True)
        if masks is not None:
            images, masks = x[..., :channels], x[..., channels:]
            masks = ops.cast(masks > 0.5, "float32")
        else:
            images = x
        for layer in self.photometric:
            images = layer(images, training=True)
        low, high = self.config.value_range
        images = ops.clip(images, low, high)
        return images if masks is None else (images, masks)

    def compute_output_shape(self, images_shape: Any, masks_shape: Any = None) -> Any:
        return images_shape if masks_shape is None else (images_shape, masks_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "config": self.config.to_dict()}


def build_augmenter(
    config: AugmentConfig | Mapping[str, Any] | None = None, *, name: str = "augment"
) -> ScanAugmenter:
    """Build the augmentation layer for ``config`` (defaults: brain-MRI paper recipe).

    Usage: ``aug = build_augmenter(); x = aug(x, training=True)``.
    """
    return ScanAugmenter(config, name=name)


class Mixer(Protocol):
    """``(images, one-hot labels) -> (mixed images, soft labels)`` over a training batch."""

    def __call__(self, images: Any, labels: Any) -> tuple[Any, Any]: ...


class BatchMixer:
    """Keras ``MixUp`` or ``CutMix`` on a batch of images and one-hot labels.

    Usage: ``images, labels = BatchMixer(keras.layers.MixUp(0.2, seed=0))(images, labels)``.
    """

    def __init__(self, layer: layers.Layer):
        self.layer = layer

    def __call__(self, images: Any, labels: Any) -> tuple[Any, Any]:
        out = self.layer({"images": images, "labels": labels}, training=True)
        return out["images"], out["labels"]


def build_mixer(config: AugmentConfig) -> Mixer | None:
    """The batch mixer of ``config`` (``mixup`` or ``cutmix``), or None when both are 0.

    Usage: ``mixer = build_mixer(AugmentConfig(cutmix=1.0, seed=0))``.
    """
    seed = ScanAugmenter._seed(config, 9)
    if config.mixup:
        return BatchMixer(layers.MixUp(alpha=config.mixup, seed=seed, name="mixup"))
    if config.cutmix:
        return BatchMixer(layers.CutMix(factor=config.cutmix, seed=seed, name="cutmix"))
    return None
