"""Export a classifier as a TensorFlow Serving SavedModel with image-bytes and explain signatures.

The export is self-contained: loading it needs TensorFlow only (no kidney_tf, no Keras custom
objects). Signatures:

- ``serving_default``: ``images`` float32 ``[B, H, W, 3]`` raw 0–255 RGB ->
  ``probabilities`` float32 ``[B, C]``, ``class_id`` int64 ``[B]``, ``class_name`` string ``[B]``.
- ``predict_image_bytes``: ``image_bytes`` string ``[B]`` (JPEG/PNG/GIF/BMP file contents) -> the
  same outputs; decoding, the paper's crop (when the model was trained with one) and the resize run
  inside the graph.
- ``explain`` (unless ``include_explain=False``): ``images`` -> ``probabilities``, ``class_id``,
  ``class_name``, ``cam`` float32 ``[B, H, W]`` (the predicted class's Grad-CAM++ map, upsampled
  to the input and scaled to [0, 1], as ``kidney-tf evaluate``/``explain`` compute it with
  tf-keras-vis) and its statistics as ``evaluate`` reports them, float32 ``[B]`` each:
  ``cam_entropy`` (normalised entropy), ``cam_radius`` and ``cam_snr``
  (:mod:`kidney_tf.explain.statistics`).

Temperature scaling (``temperature=`` or ``model.metadata["temperature"]``) divides the logits
before the softmax in every signature. ``DIR/<version>/assets.extra/kidney_tf_export.json``
records class names, input size, crop, temperature, source model, versions and the signatures.

Usage::

    from kidney_tf.export.saved_model import export_saved_model
    export_saved_model(model, "serving/kidney/1", class_names=["Cyst", "Normal", "Stone", "Tumor"])
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kidney_tf import __version__
from kidney_tf.data.reading import DEFAULT_MAX_PIXELS
from kidney_tf.explain.maps import expand_cams, gradcam_plus_plus
from kidney_tf.explain.statistics import cam_radius, cam_snr, normalized_entropy
from kidney_tf.export.image_bytes import decode_image_batch
from kidney_tf.export.layout import (
    METADATA_DIR,
    METADATA_FILE,
    check_export_target,
    read_export_metadata,
    resolve_version_dir,
)
from kidney_tf.models.builders import last_conv_layer_name
from kidney_tf.models.heads import LOGITS_LAYER
from kidney_tf.recipes import parse_crop
from kidney_tf.utils.io import atomic_dir, write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

FORMAT = "kidney_tf.saved_model/1"
SIGNATURES = ("serving_default", "predict_image_bytes", "explain")
WARMUP_FILE = "tf_serving_warmup_requests"  # TF Serving replays it before serving (assets.extra)


@dataclass(frozen=True)
class ExportSettings:
    """Everything the serving graph bakes in, resolved from arguments and model metadata."""

    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    crop: str | None
    crop_margin: int
    temperature: float | None
    cam_layer: str | None
    include_explain: bool
    max_pixels: int | None = DEFAULT_MAX_PIXELS


def export_saved_model(
    model,
    out_dir: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    crop: str | None = None,
    image_size: int | Sequence[int] | None = None,
    temperature: float | None = None,
    include_explain: bool = True,
    overwrite: bool = False,
    version: int | str | None = None,
    source: str | os.PathLike | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Path:
    """Write ``model`` as a TF Serving SavedModel at ``out_dir`` and return the version folder.

    Usage: ``export_saved_model(model, "serving/kidney/1", crop="brain")``.

    ``out_dir`` is the version folder ``BASE/<integer>`` TF Serving expects. Alternatively pass the
    base folder and ``version=N`` (writes ``BASE/N``) or ``version="auto"`` (next free integer,
    starting at 1). Arguments override the model's own ``class_names``/``metadata``:
    ``crop`` is ``"brain"``, ``"body"`` or ``"none"`` (``None``: the model's training crop);
    ``temperature`` rescales logits (``None``: ``metadata["temperature"]`` if any).
    ``max_pixels`` caps the pixels of a PNG/GIF/BMP sent to ``predict_image_bytes`` (read from
    its header before decoding; None: no cap). Every signature checks its input per request.
    The folder is written beside the target and renamed into place; an existing version is only
    replaced with ``overwrite=True``. ``assets.extra/tf_serving_warmup_requests`` holds one
    request per signature, so TF Serving's first real request is not slow.
    """
    target = resolve_version_dir(out_dir, version)
    check_export_target(target, overwrite=overwrite, source=source)
    settings = resolve_settings(
        model,
        class_names=class_names,
        crop=crop,
        image_size=image_size,
        temperature=temperature,
        include_explain=include_explain,
        max_pixels=max_pixels,
    )
    archive, signatures = _build_archive(model, settings)
    metadata = _metadata(model, settings, signatures, source)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        archive.write_out(str(tmp), verbose=False)
        write_json_atomic(tmp / METADATA_DIR / METADATA_FILE, metadata)
        write_warmup_requests(tmp / METADATA_DIR / WARMUP_FILE, settings)
        _make_readable(tmp)
    log.info("SavedModel written to %s (signatures: %s)", target, ", ".join(signatures))
    return target


def _make_readable(root: Path) -> None:
    """Give the export the umask's usual modes: temp folders/files are created 0700/0600, but a
    model server often runs as another user."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


# --------------------------------------------------------------------------- settings


def resolve_settings(
    model,
    *,
    class_names: Sequence[str] | None = None,
    crop: str | None = None,
    image_size: int | Sequence[int] | None = None,
    temperature: float | None = None,
    include_explain: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ExportSettings:
    """Merge explicit arguments with ``model.class_names`` / ``model.metadata``; validate them."""
    meta = dict(getattr(model, "metadata", None) or {})
    num_classes = _num_classes(model)

    names = class_names if class_names is not None else getattr(model, "class_names", None)
    if names is None:
        names = meta.get("class_names")
    if names is None:
        names = [f"class_{i}" for i in range(num_classes)]
        log.warning("no class names given or stored in the model; using %s", ", ".join(names))
    names = tuple(str(n) for n in names)
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} class names ({', '.join(names)}) for a model with {num_classes} outputs"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {', '.join(names)}")

    crop = meta.get("crop") if crop is None else crop
    crop = parse_crop(crop)
    crop_margin = int(meta.get("crop_margin", 0) or 0)

    size = _resolve_image_size(model, image_size, meta.get("image_size"))
    if size[0] != size[1]:
        raise ValueError(f"only square inputs can be exported, got {size[0]}x{size[1]}")

    if temperature is None:
        temperature = meta.get("temperature")
    if temperature is not None:
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if temperature == 1.0:
            temperature = None

    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    cam_layer = _cam_layer_name(model) if include_explain else None
    return ExportSettings(
        class_names=names,
        image_size=size,
        crop=crop,
        crop_margin=crop_margin,
        temperature=temperature,
        cam_layer=cam_layer,
        include_explain=include_explain,
        max_pixels=None if max_pixels is None else int(max_pixels),
    )


def _num_classes(model) -> int:
    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else ()
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"expected a classifier with one [batch, classes] output, got output shape {shape}"
        )
    return int(shape[-1])


def _resolve_image_size(model, image_size, meta_size) -> tuple[int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"expected a model input of shape [batch, H, W, 3], got {shape}")
    model_size = None if None in shape[1:3] else (int(shape[1]), int(shape[2]))
    requested = image_size if image_size is not None else (model_size or meta_size)
    if requested is None:
        raise ValueError(
            "the model accepts any input size; pass image_size= (the size it was trained at)"
        )
    size = (
        (int(requested), int(requested))
        if isinstance(requested, (int, float))
        else tuple(int(v) for v in requested)
    )
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be N or (H, W) with positive values, got {requested!r}")
    if model_size is not None and size != model_size:
        raise ValueError(f"image_size {size} does not match the model's input size {model_size}")
    return size  # type: ignore[return-value]


def _cam_layer_name(model) -> str:
    """The layer whose feature maps the ``explain`` signature turns into a CAM."""
    layer = getattr(model, "cam_layer", None) or (getattr(model, "metadata", None) or {}).get(
        "cam_layer"
    )
    if layer is not None:
        return layer if isinstance(layer, str) else layer.name
    try:
        return last_conv_layer_name(model)
    except ValueError as exc:
        raise ValueError(
            f"{exc}: the explain signature needs a convolutional feature map; "
            "pass include_explain=False (--no-explain)"
        ) from exc


# --------------------------------------------------------------------------- serving graph


class _ServingGraph:
    """The TensorFlow computations behind the signatures, closed over one model and settings."""

    def __init__(self, model, settings: ExportSettings):
        self.model = model
        self.settings = settings
        self.names = tf.constant(list(settings.class_names), dtype=tf.string)
        logits = _find_logits(model)
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.logits_model = (
            keras.Model(inputs, logits, name="export_logits")
            if logits is not None and settings.temperature is not None
            else None
        )
        self.cam_model = None
        if settings.include_explain:
            features = model.get_layer(settings.cam_layer).output
            score = logits if logits is not None else _probability_output(model)
            self.cam_model = keras.Model(
                inputs, [features, score, _probability_output(model)], name="export_cam"
            )
        self.has_logits = logits is not None

    # -- probabilities -------------------------------------------------------------------------
    def _calibrate(self, probabilities, logits=None):
        temperature = self.settings.temperature
        if temperature is None:
            return tf.cast(probabilities, tf.float32)
        if logits is None:  # softmax(log p / T) == softmax(z / T): the normaliser cancels.
            logits = tf.math.log(tf.maximum(tf.cast(probabilities, tf.float32), 1e-30))
        return tf.nn.softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)

    def probabilities(self, images):
        if self.logits_model is not None:
            return self._calibrate(None, self.logits_model(images, training=False))
        return self._calibrate(_first_output(self.model(images, training=False)))

    def outputs(self, probabilities) -> dict[str, Any]:
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.names, class_id),
        }

    # -- signatures ----------------------------------------------------------------------------
    def predict(self, images):
        images = tf.cast(images, tf.float32)
        return self.outputs(self.probabilities(images))

    def predict_image_bytes(self, image_bytes):
        images = decode_image_batch(
            image_bytes,
            image_size=self.settings.image_size,
            crop=self.settings.crop,
            crop_margin=self.settings.crop_margin,
            max_pixels=self.settings.max_pixels,
        )
        return self.predict(images)

    # -- what the signatures run: input checks, empty batches ---------------------------------
    def check_images(self, images, name: str = "images"):
        """Fail this request (``InvalidArgumentError``) unless ``images`` is ``[B, H, W, 3]``."""
        height, width = self.settings.image_size
        shape = tf.shape(images)
        good = tf.cond(
            tf.equal(tf.size(shape), 4),
            lambda: tf.reduce_all(tf.equal(shape[1:], [height, width, 3])),
            lambda: tf.constant(False),
        )
        message = tf.strings.join(
            [
                f"{name} must be float32 [batch, {height}, {width}, 3] (RGB 0-255); got shape [",
                tf.strings.reduce_join(tf.strings.as_string(shape), separator=", "),
                "]",
            ]
        )
        with tf.control_dependencies([tf.debugging.Assert(good, [message], name="check_shape")]):
            return tf.identity(images)

    def nonempty(self, fn, images):
        """``fn(images)``; an empty batch runs one blank image and returns empty outputs."""
        height, width = self.settings.image_size
        count = tf.shape(images)[0]
        blank = tf.zeros([1, height, width, 3], images.dtype)
        batch = tf.cond(count > 0, lambda: images, lambda: blank)
        return {key: value[:count] for key, value in fn(batch).items()}

    def serve_images(self, images):
        return self.nonempty(self.predict, self.check_images(images))

    def serve_image_bytes(self, image_bytes):
        height, width = self.settings.image_size
        flat = tf.reshape(image_bytes, [-1])
        images = tf.cond(
            tf.size(flat) > 0,
            lambda: decode_image_batch(
                flat,
                image_size=self.settings.image_size,
                crop=self.settings.crop,
                crop_margin=self.settings.crop_margin,
                max_pixels=self.settings.max_pixels,
            ),
            lambda: tf.zeros([0, height, width, 3], tf.float32),
        )
        return self.nonempty(self.predict, images)

    def serve_explain(self, images):
        return self.nonempty(self.explain, self.check_images(images))

    def explain(self, images):
        images = tf.cast(images, tf.float32)
        with tf.GradientTape() as tape:
            features, score, probs = self.cam_model(images, training=False)
            probabilities = self._calibrate(probs, score if self.has_logits else None)
            result = self.outputs(probabilities)
            # tf-keras-vis explains the pre-softmax score of the predicted (calibrated) class.
            selected = tf.gather(score, result["class_id"], axis=1, batch_dims=1)
        gradients = tape.gradient(selected, features)
        cam = expand_cams(gradcam_plus_plus(features, gradients), self.settings.image_size)
        return {
            **result,
            "cam": cam,
            "cam_entropy": normalized_entropy(cam),
            "cam_radius": cam_radius(cam),
            "cam_snr": cam_snr(cam),
        }


def _find_logits(model):
    """The pre-softmax ``logits`` tensor of the package's heads, or None for other models."""
    try:
        return model.get_layer(LOGITS_LAYER).output
    except ValueError:
        return None


def _probability_output(model):
    return _first_output(model.outputs)


def _first_output(outputs):
    if isinstance(outputs, dict):
        return outputs.get("probabilities", next(iter(outputs.values())))
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def _build_archive(model, settings: ExportSettings):
    """A ``keras.export.ExportArchive`` holding the model and the traced signatures."""
    graph = _ServingGraph(model, settings)
    height, width = settings.image_size
    image_spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")
    bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

    functions = {
        "serving_default": tf.function(graph.serve_images, input_signature=[image_spec]),
        "predict_image_bytes": tf.function(graph.serve_image_bytes, input_signature=[bytes_spec]),
    }
    if settings.include_explain:
        functions["explain"] = tf.function(graph.serve_explain, input_signature=[image_spec])

    archive = keras.export.ExportArchive()
    archive.track(model)
    described = {}
    for name, fn in functions.items():
        concrete = fn.get_concrete_function()
        described[name] = _describe(concrete)
        archive.add_endpoint(name, fn)
    return archive, described


def _describe(concrete) -> dict[str, dict[str, str]]:
    """``{"inputs": {name: "float32 [-1, 64, 64, 3]"}, "outputs": {...}}`` for one signature."""

    def fmt(spec) -> str:
        dims = ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list())
        return f"{spec.dtype.name} [{dims}]"

    args, kwargs = concrete.structured_input_signature
    inputs = {spec.name: fmt(spec) for spec in [*args, *kwargs.values()]}
    outputs = {key: fmt(t) for key, t in sorted(concrete.structured_outputs.items())}
    return {"inputs": inputs, "outputs": outputs}


def _metadata(model, settings: ExportSettings, signatures, source) -> dict[str, Any]:
    meta = dict(getattr(model, "metadata", None) or {})
    return {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_model": None if source is None else str(Path(source).resolve()),
        "model_name": model.name,
        "arch": meta.get("arch"),
        **{k: v for k, v in asdict(settings).items() if k != "include_explain"},
        "input": "RGB float32 0-255, model preprocessing inside the graph",
        "signatures": signatures,
        "versions": {
            "kidney_tf": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


# --------------------------------------------------------------------------- TF Serving warm-up


def warmup_requests(settings: ExportSettings) -> list[bytes]:
    """One serialized ``tensorflow.serving.PredictionLog`` per signature (a mid-grey image).

    The protobuf is encoded here (a few fields of ``prediction_log.proto``) so exporting does not
    need ``tensorflow-serving-api``, which pins one TensorFlow version; the tests parse the
    records with that package's own classes.
    """
    height, width = settings.image_size
    grey = np.full([1, height, width, 3], 128.0, np.float32)
    png = tf.io.encode_png(tf.constant(grey[0], tf.uint8)).numpy()
    inputs = {
        "serving_default": ("images", tf.make_tensor_proto(grey)),
        "predict_image_bytes": ("image_bytes", tf.make_tensor_proto([png], dtype=tf.string)),
    }
    if settings.include_explain:
        inputs["explain"] = ("images", tf.make_tensor_proto(grey))
    records = []
    for signature, (name, tensor) in inputs.items():
        model_spec = _proto_field(3, signature.encode())  # ModelSpec.signature_name
        entry = _proto_field(1, name.encode()) + _proto_field(2, tensor.SerializeToString())
        request = _proto_field(1, model_spec) + _proto_field(2, entry)  # PredictRequest
        records.append(_proto_field(6, _proto_field(1, request)))  # PredictionLog.predict_log
    return records


def write_warmup_requests(path: str | os.PathLike, settings: ExportSettings) -> Path:
    """Write :func:`warmup_requests` as the TFRecord file TF Serving replays at load time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in warmup_requests(settings):
            writer.write(record)
    return path


def _proto_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): tag, varint length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def signature_summary(signatures: dict[str, dict[str, dict[str, str]]]) -> str:
    """Readable multi-line listing of the ``signatures`` entry of the export metadata."""
    lines = []
    for name, spec in signatures.items():
        inputs = ", ".join(f"{k}: {v}" for k, v in spec["inputs"].items())
        outputs = ", ".join(f"{k}: {v}" for k, v in spec["outputs"].items())
        lines.append(f"  {name}({inputs})\n      -> {outputs}")
    return "\n".join(lines)


__all__ = [
    "METADATA_DIR",
    "METADATA_FILE",
    "SIGNATURES",
    "WARMUP_FILE",
    "ExportSettings",
    "check_export_target",
    "export_saved_model",
    "read_export_metadata",
    "resolve_settings",
    "resolve_version_dir",
    "signature_summary",
    "warmup_requests",
    "write_warmup_requests",
]
