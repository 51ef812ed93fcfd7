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


def header_size(data: tf.Tensor) -> tf.Tensor:
    """int64 ``[width, height]`` from a PNG, GIF or BMP header (``[0, 0]`` for JPEG and others),
    read without decoding the pixels."""

    head = tf.strings.join([tf.strings.substr(data, 0, 26), b"\0" * 26])  # short data: zeros

    def unsigned(offset: int, length: int, big_endian: bool) -> tf.Tensor:
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(head, offset, length), tf.uint8), tf.int64)
        weights = [256 ** (length - 1 - k) if big_endian else 256**k for k in range(length)]
        return tf.reduce_sum(raw * tf.constant(weights, tf.int64))

    def bmp_side(offset: int) -> tf.Tensor:  # int32 little-endian; height < 0: top-down rows
        value = unsigned(offset, 4, False)
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    magic = tf.strings.substr(data, 0, 8)
    return tf.case(
        [
            (
                tf.equal(magic, _MAGIC[1]),
                lambda: tf.stack([unsigned(16, 4, True), unsigned(20, 4, True)]),
            ),
            (
                tf.equal(tf.strings.substr(data, 0, 4), _MAGIC[2]),
                lambda: tf.stack([unsigned(6, 2, False), unsigned(8, 2, False)]),
            ),
            (
                tf.equal(tf.strings.substr(data, 0, 2), _MAGIC[3]),
                lambda: tf.stack([bmp_side(18), bmp_side(22)]),
            ),
        ],
        default=lambda: tf.zeros([2], tf.int64),
        exclusive=False,
    )


def decode_one(
    data: tf.Tensor,
    index: tf.Tensor,
    *,
    image_size: tuple[int, int],
    crop: str | None = None,
    crop_margin: int = 0,
    input_name: str = "image_bytes",
    max_pixels: int | None = None,
) -> tf.Tensor:
    """Decode one encoded image to float32 ``[H, W, 3]`` in 0–255, cropped/resized like training.

    ``max_pixels`` refuses a PNG/GIF/BMP whose header declares more pixels, before decoding it
    (JPEGs are decoded at reduced scale instead, as ``reading.read_image`` does).
    """
    item = [f"{input_name}[", tf.strings.as_string(index), "] "]
    message = tf.strings.join(
        [*item, f"{NOT_AN_IMAGE}; got ", tf.strings.as_string(tf.strings.length(data)), " bytes"]
    )
    checks = [tf.debugging.Assert(is_supported_image(data), [message], name="check_image_bytes")]
    if max_pixels is not None:
        with tf.control_dependencies(checks):
            size = header_size(data)
        too_big = tf.strings.join(
            [
                *item,
                "is ",
                tf.strings.as_string(size[0]),
                "x",
                tf.strings.as_string(size[1]),
                f" pixels, above the max_pixels={max_pixels:,} of this export (re-export "
                "with --max-pixels to change it)",
            ]
        )
        checks.append(
            tf.debugging.Assert(size[0] * size[1] <= max_pixels, [too_big], name="check_pixels")
        )
    with tf.control_dependencies(checks):
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
    max_pixels: int | None = None,
) -> tf.Tensor:
    """Decode ``tf.string [B]`` encoded images into a float32 ``[B, H, W, 3]`` 0–255 batch
    (``max_pixels``: see :func:`decode_one`)."""
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
            max_pixels=max_pixels,
        ),
        (image_bytes, indices),
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )


__all__ = [
    "decode_bytes",
    "decode_image_batch",
    "decode_one",
    "header_size",
    "is_supported_image",
    "prepare_image",
]
