"""Graph-safe decoding of encoded image bytes for serving signatures.

Everything here is plain TensorFlow so it can be baked into a SavedModel: a batch of JPEG/PNG/GIF/BMP
file contents (``tf.string [B]``) becomes the float32 ``[B, H, W, 3]`` 0–255 batch the model eats,
with the paper's crop (``"brain"`` or ``"body"``) or a resize, exactly as the training pipeline
prepares files.

Bad input never crashes a server: a string that is not an image fails a ``tf.debugging.Assert``
whose message names the item and the likely cause, which TensorFlow Serving returns as an
``INVALID_ARGUMENT`` error for that request only.

Usage::

    images = decode_image_batch(tf.constant([jpeg_bytes]), image_size=(240, 240), crop="brain")
"""

from __future__ import annotations

import tensorflow as tf

from kidney_tf.data.crop_tf import crop_resize
from kidney_tf.data.pipeline import decode_image_bytes

# Magic prefixes of JPEG, PNG, GIF and BMP: the formats tf.io.decode_image understands.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")

NOT_AN_IMAGE = (
    "is not a JPEG, PNG, GIF or BMP file (send the raw file bytes; over REST wrap them "
    'base64-encoded as {"b64": "..."})'
)


def is_supported_image(data: tf.Tensor) -> tf.Tensor:
    """Scalar bool: ``data`` starts with the magic bytes of a format ``decode_image`` reads."""
    checks = [tf.equal(tf.strings.substr(data, 0, len(magic)), magic) for magic in _MAGIC]
    return tf.reduce_any(tf.stack(checks))


def decode_one(
    data: tf.Tensor,
    index: tf.Tensor,
    *,
    image_size: tuple[int, int],
    crop: str | None = None,
    crop_margin: int = 0,
    input_name: str = "image_bytes",
) -> tf.Tensor:
    """Decode one encoded image to float32 ``[H, W, 3]`` in 0–255, cropped/resized like training."""
    message = tf.strings.join(
        [
            f"{input_name}[",
            tf.strings.as_string(index),
            f"] {NOT_AN_IMAGE}; got ",
            tf.strings.as_string(tf.strings.length(data)),
            " bytes",
        ]
    )
    check = tf.debugging.Assert(is_supported_image(data), [message], name="check_image_bytes")
    with tf.control_dependencies([check]):
        image = decode_bytes(data)
    return prepare_image(image, image_size=image_size, crop=crop, crop_margin=crop_margin)


def decode_bytes(data: tf.Tensor) -> tf.Tensor:
    """Encoded image -> uint8 ``[h, w, 3]``, decoded exactly as the training pipeline reads files.

    Delegates to ``kidney_tf.data.pipeline.decode_image_bytes`` (one decoder for training and
    serving: gray tiled to RGB, alpha composited on black, 16-bit PNG scaled, huge JPEGs bounded).
    """
    return decode_image_bytes(data)


def prepare_image(
    image: tf.Tensor, *, image_size: tuple[int, int], crop: str | None = None, crop_margin: int = 0
) -> tf.Tensor:
    """One decoded ``[h, w, 3]`` image -> float32 ``[S, S, 3]`` 0–255, exactly as in training.

    The pipeline's own preparation (``kidney_tf.data.crop_tf.crop_resize``, pure-TF backend),
    then rounding to whole 0..255 values (the pipeline caches uint8 pixels).
    """
    height, width = image_size
    if height != width:
        raise ValueError(f"the image-bytes signature needs a square input, got {height}x{width}")
    out = crop_resize(image, height, crop, margin=crop_margin)
    out = tf.clip_by_value(tf.math.round(tf.cast(out, tf.float32)), 0.0, 255.0)
    out.set_shape([height, width, 3])
    return out


def decode_image_batch(
    image_bytes: tf.Tensor,
    *,
    image_size: tuple[int, int],
    crop: str | None = None,
    crop_margin: int = 0,
    input_name: str = "image_bytes",
) -> tf.Tensor:
    """Decode ``tf.string [B]`` encoded images into a float32 ``[B, H, W, 3]`` 0–255 batch."""
    image_bytes = tf.reshape(tf.convert_to_tensor(image_bytes, tf.string), [-1])
    indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
    height, width = image_size
    return tf.map_fn(
        lambda item: decode_one(
            item[0],
            item[1],
            image_size=image_size,
            crop=crop,
            crop_margin=crop_margin,
            input_name=input_name,
        ),
        (image_bytes, indices),
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )


__all__ = [
    "decode_bytes",
    "decode_image_batch",
    "decode_one",
    "is_supported_image",
    "prepare_image",
]
