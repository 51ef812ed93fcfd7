"""Classifier builders: ResNet-50 (kidney CT) and EfficientNetB1 (brain MRI) as FLAT Keras models.

The backbone is built on the model's input tensor, so every backbone layer (and the last conv
layer, for CAMs) is a direct layer of the returned model: ``model.get_layer("conv5_block3_out")``
works and tf-keras-vis can see inside. The model takes raw 0–255 float32 RGB images; the
per-backbone preprocessing is a layer of the model.

``weights``:
- ``None``: random init (all BatchNorm momenta default to 0.9: from-scratch ResNet-50 with Keras'
  0.99 stayed at chance in inference mode for 10 epochs on phantoms; 0.9 fixes it).
- ``"imagenet"``: Keras' ImageNet weights. Offline, put the official "notop" file (name in
  ``ARCHITECTURES[arch]["imagenet_file"]``) in ``~/.keras/models/`` and Keras uses it.
- a path to a ``.weights.h5`` file written by :func:`save_backbone_weights` (loaded by
  structure), or to a legacy ``.h5``/``.hdf5`` file (loaded by layer name, mismatches skipped).

Usage::

    model = build_classifier("resnet50", num_classes=4, image_size=224, weights=None,
                             class_names=["Cyst", "Normal", "Stone", "Tumor"])
    model.get_layer(last_conv_layer_name(model))
    set_backbone_trainable(model, False)  # head-only training; recompile afterwards
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from kidney_tf import recipes
from kidney_tf.models.heads import LOGITS_LAYER, HeadConfig, build_head
from kidney_tf.models.preprocessing import CaffePreprocessing, PerImageStandardization
from kidney_tf.utils.io import atomic_path
from kidney_tf.utils.logging import get_logger

if TYPE_CHECKING:
    from kidney_tf.data.pipeline import DataBundle

log = get_logger(__name__)

#: Default BatchNorm momentum for models trained from scratch (``weights=None``).
SCRATCH_BN_MOMENTUM = 0.9

#: How each backbone of ``recipes.ARCHITECTURES`` is built. ``stages``: layer-name prefixes of
#: the backbone's stages, bottom to top, used by :func:`unfreeze_top`.
_BACKBONES: dict[str, dict[str, Any]] = {
    "resnet50": {
        "constructor": "ResNet50",
        "last_conv": "conv5_block3_out",
        "preprocessing": "caffe",
        "imagenet_file": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "stages": (("conv1_", "pool1_"), ("conv2_",), ("conv3_",), ("conv4_",), ("conv5_",)),
        "task": "kidney CT",
    },
    "efficientnetb1": {
        "constructor": "EfficientNetB1",
        "last_conv": "top_activation",
        "preprocessing": "efficientnet (Rescaling + Normalization inside the backbone)",
        "imagenet_file": "efficientnetb1_notop.h5",
        "stages": (
            ("rescaling", "normalization", "stem_"),
            ("block1",),
            ("block2",),
            ("block3",),
            ("block4",),
            ("block5",),
            ("block6",),
            ("block7", "top_"),
        ),
        "task": "brain MRI",
    },
}
#: Supported backbones: how to build each and its default input size (``recipes``).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    name: {**_BACKBONES[name], "image_size": size} for name, size in recipes.ARCHITECTURES.items()
}


def _arch_spec(arch: str) -> dict[str, Any]:
    return ARCHITECTURES[recipes.parse_arch(arch)]


@keras.saving.register_keras_serializable(package="kidney_tf")
class Classifier(keras.Model):
    """A functional classifier that remembers its ``class_names`` and ``metadata`` when saved.

    ``metadata`` is a JSON-compatible dict (arch, image_size, crop, preprocessing, head, ...).

    Usage: ``Classifier(inputs, outputs, class_names=["a", "b"], metadata={"arch": "resnet50"})``.
    """

    def __init__(
        self,
        *args,
        class_names: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.class_names = class_names
        self.metadata = metadata

    @property
    def class_names(self) -> list[str] | None:
        """Class names in output order, or None when unknown."""
        return list(self._class_names) if self._class_names is not None else None

    @class_names.setter
    def class_names(self, names: Sequence[str] | None) -> None:
        if names is None:
            self._class_names = None
            return
        if isinstance(names, str):
            raise TypeError("class_names must be a sequence of strings, not one string")
        names = tuple(str(n) for n in names)
        num_outputs = self.outputs[0].shape[-1]
        if num_outputs is not None and len(names) != num_outputs:
            raise ValueError(
                f"{len(names)} class_names given for a model with {num_outputs} outputs"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"class_names must be unique, got {list(names)}")
        self._class_names = names

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the model's metadata dict (arch, image_size, crop, preprocessing, ...)."""
        return json.loads(self._metadata_json)

    @metadata.setter
    def metadata(self, value: dict[str, Any] | None) -> None:
        try:
            self._metadata_json = json.dumps(dict(value or {}), sort_keys=True)
        except TypeError as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["class_names"] = self.class_names
        config["metadata"] = self.metadata
        return config


def _load_backbone_weights(backbone: keras.Model, path: Path, arch: str) -> None:
    """Load a backbone weights file into ``backbone`` with a clear error naming the file."""
    name = path.name.lower()
    if name.endswith(".weights.h5"):
        try:
            backbone.load_weights(path)
        except Exception as exc:
            raise ValueError(
                f"{path}: not a {arch} backbone weights file for this image size: {exc}"
            ) from exc
        return
    if not name.endswith((".h5", ".hdf5")):
        raise ValueError(f"{path}: backbone weights must be a .weights.h5, .h5 or .hdf5 file")
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            group = handle.get("model_weights", handle)
            stored = set(group.keys())
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 weights file: {exc}") from exc
    wanted = {layer.name for layer in backbone.layers if layer.weights}
    matched = stored & wanted
    if not matched:
        raise ValueError(f"{path}: no {arch} backbone layer names found in the file")
    if len(matched) < len(wanted):
        log.warning("%s: %d of %d backbone layers found by name", path, len(matched), len(wanted))
    backbone.load_weights(path, by_name=True, skip_mismatch=True)


def _resolve_weights(weights: str | os.PathLike | None) -> str | Path | None:
    if weights is None or weights == "imagenet":
        return weights
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights file not found")
    return path


def _imagenet_error(arch: str, spec: dict[str, Any], exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not load ImageNet weights for {arch} ({exc}). Without network access, copy "
        f"{spec['imagenet_file']} into ~/.keras/models/, or pass weights=<path to the file> "
        "or weights=None"
    )


def build_classifier(
    arch: str = "resnet50",
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    weights: str | os.PathLike | None = None,
    head: HeadConfig | None = None,
    bn_momentum: float | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    input_norm: str | None = None,
    data: DataBundle | None = None,
) -> Classifier:
    """Build a flat functional classifier taking raw 0–255 float32 RGB images.

    ``data`` (a :func:`~kidney_tf.data.pipeline.build_datasets` bundle) supplies ``class_names``,
    ``image_size`` and the crop recorded in the metadata, so the model fits the data it will see.
    Without it, ``num_classes`` defaults to ``len(class_names)`` or 4 and ``image_size`` to the
    architecture's (224 ResNet-50, 240 EfficientNetB1). ``bn_momentum`` sets the momentum of every
    BatchNorm layer; None means 0.9 when ``weights`` is None and Keras' 0.99 otherwise.
    ``input_norm="per-image"`` first standardises each image's intensities
    (:class:`~kidney_tf.models.preprocessing.PerImageStandardization`; for from-scratch training,
    pretrained weights expect the original intensities).

    Usage: ``build_classifier("efficientnetb1", data=bundle, weights=None)``.
    """
    spec = _arch_spec(arch)
    arch = next(k for k, v in ARCHITECTURES.items() if v is spec)
    if data is not None:
        if image_size is not None and int(image_size) != data.image_size:
            raise ValueError(
                f"image_size={image_size} but the data bundle's images are {data.image_size} px: "
                f"drop image_size (data= sets it) or build the datasets at {image_size}"
            )
        if class_names is not None and list(class_names) != list(data.class_names):
            raise ValueError(
                f"class_names {list(class_names)} differ from the data bundle's "
                f"{list(data.class_names)}: drop class_names (data= sets them)"
            )
        image_size, class_names = data.image_size, data.class_names
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else 4
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names given but num_classes={num_classes}")
    image_size = int(image_size or spec["image_size"])
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    head = head or HeadConfig()
    resolved = _resolve_weights(weights)

    if input_norm not in (None, "per-image"):
        raise ValueError(f"input_norm must be None or 'per-image', got {input_norm!r}")
    inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="image")
    x = PerImageStandardization(name="input_norm")(inputs) if input_norm else inputs
    if spec["preprocessing"] == "caffe":
        x = CaffePreprocessing(name="preprocessing")(x)
    constructor = getattr(keras.applications, spec["constructor"])
    try:
        backbone = constructor(
            include_top=False,
            weights="imagenet" if resolved == "imagenet" else None,
            input_tensor=x,
            input_shape=(image_size, image_size, 3),
        )
    except Exception as exc:
        if resolved == "imagenet":
            raise _imagenet_error(arch, spec, exc) from exc
        raise
    if isinstance(resolved, Path):
        _load_backbone_weights(backbone, resolved, arch)
    features = backbone.get_layer(spec["last_conv"]).output
    outputs = build_head(features, num_classes, head)
    metadata = {
        "arch": arch,
        "image_size": image_size,
        "crop": None if data is None else data.crop,
        "preprocessing": spec["preprocessing"],
        "input_norm": input_norm,
        "head": head.to_dict(),
        "weights": None if resolved is None else str(resolved),
        "input": "float32 RGB in 0..255",
    }
    model = Classifier(
        inputs,
        outputs,
        name=name or f"{arch}_classifier",
        class_names=class_names,
        metadata=metadata,
    )
    if bn_momentum is None and resolved is None:
        bn_momentum = SCRATCH_BN_MOMENTUM
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    return model


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the layer whose output CAMs are computed on (the last conv block).

    Known architectures come from ``model.metadata["arch"]`` or their layer names; for other
    models it is the last layer with a 4-D output.

    Usage: ``model.get_layer(last_conv_layer_name(model))``.
    """
    arch = (getattr(model, "metadata", None) or {}).get("arch")
    names = [layer.name for layer in model.layers]
    if arch in ARCHITECTURES:  # an unknown arch (a user's own model) falls back to the search
        candidate = ARCHITECTURES[arch]["last_conv"]
        if candidate in names:
            return candidate
    for spec in ARCHITECTURES.values():
        if spec["last_conv"] in names:
            return spec["last_conv"]
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):  # layer used more than once / never called
            continue
        if rank == 4:
            return layer.name
    raise ValueError(f"model {model.name!r} has no layer with a 4-D (image-like) output")


def _backbone_and_head(model: keras.Model) -> tuple[list, list]:
    """Split ``model.layers`` at the last conv layer: (backbone layers, head layers)."""
    index = [layer.name for layer in model.layers].index(last_conv_layer_name(model))
    return list(model.layers[: index + 1]), list(model.layers[index + 1 :])


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers from the input up to and including the last conv layer (model order)."""
    return _backbone_and_head(model)[0]


def set_backbone_trainable(model: keras.Model, trainable: bool = False) -> keras.Model:
    """Freeze (``False``: head-only training) or unfreeze the whole backbone; head stays trainable.

    Frozen BatchNorm layers run in inference mode (Keras 3). Recompile afterwards.

    Usage: ``set_backbone_trainable(model, False); model.compile(...)``.
    """
    backbone, head = _backbone_and_head(model)
    for layer in backbone:
        layer.trainable = trainable
    for layer in head:
        layer.trainable = True
    return model


def _stage_prefixes(model: keras.Model) -> tuple[tuple[str, ...], ...]:
    arch = (getattr(model, "metadata", None) or {}).get("arch")
    if arch:
        return _arch_spec(arch)["stages"]
    last = last_conv_layer_name(model)
    for spec in ARCHITECTURES.values():
        if spec["last_conv"] == last:
            return spec["stages"]
    raise ValueError(f"model {model.name!r} is not a known architecture; cannot find its stages")


def unfreeze_top(model: keras.Model, n_blocks: int, *, train_bn: bool = False) -> keras.Model:
    """Freeze the backbone except its top ``n_blocks`` stages (ResNet conv stages, EfficientNet
    blocks 1–7 with the top conv in block 7); the head stays trainable.

    BatchNorm layers stay frozen (inference mode) unless ``train_bn`` — the usual fine-tuning
    recipe for pretrained backbones. Recompile afterwards.

    Usage: ``unfreeze_top(model, 1)  # conv5_* of ResNet-50``.
    """
    if n_blocks == 0:  # head only: any flat classifier, known architecture or not
        return set_backbone_trainable(model, False)
    stages = _stage_prefixes(model)
    if not 0 <= n_blocks <= len(stages):
        raise ValueError(f"n_blocks must be in [0, {len(stages)}], got {n_blocks}")
    prefixes = tuple(p for stage in stages[len(stages) - n_blocks :] for p in stage)
    set_backbone_trainable(model, False)
    for layer in backbone_layers(model):
        if n_blocks and layer.name.startswith(prefixes):
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = train_bn or not is_bn
    return model


def set_bn_momentum(model: keras.Model, momentum: float) -> keras.Model:
    """Set ``momentum`` on every BatchNormalization layer (before compiling/training).

    Usage: ``set_bn_momentum(model, 0.9)``.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {momentum}")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
    return model


def save_backbone_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """Write the backbone's weights (input to last conv layer) to a ``.weights.h5`` file.

    The file loads into a new classifier of the same arch and image size with
    ``build_classifier(arch, weights=path)``.

    Usage: ``save_backbone_weights(model, "runs/brain/backbone.weights.h5")``.
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: backbone weights file name must end with .weights.h5")
    view = keras.Model(model.inputs, model.get_layer(last_conv_layer_name(model)).output)
    with atomic_path(path, suffix=".weights.h5") as tmp:
        view.save_weights(tmp)
    return path


def logits_layer(model: keras.Model) -> keras.layers.Dense:
    """The Dense layer named ``"logits"``; clear error when the model has none."""
    try:
        return model.get_layer(LOGITS_LAYER)
    except ValueError as exc:
        raise ValueError(f"model {model.name!r} has no Dense layer named {LOGITS_LAYER!r}") from exc


__all__ = [
    "ARCHITECTURES",
    "Classifier",
    "SCRATCH_BN_MOMENTUM",
    "backbone_layers",
    "build_classifier",
    "last_conv_layer_name",
    "logits_layer",
    "save_backbone_weights",
    "set_backbone_trainable",
    "set_bn_momentum",
    "unfreeze_top",
]
