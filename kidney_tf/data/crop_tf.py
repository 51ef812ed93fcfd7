"""Pure-TensorFlow brain and body crops that run inside ``tf.data`` graphs (no ``py_function``).

They reproduce :mod:`kidney_tf.data.crop` (OpenCV) step by step: the same grayscale weights,
the same 5x5 Gaussian (OpenCV's fixed ``[1, 4, 6, 4, 1] / 16`` kernel, reflect-101 border), the
same threshold, erosion/dilation as min/max pooling (padding ignored, like OpenCV's default
border). TensorFlow has no ``findContours``: the largest external contour is the largest
8-connected component of the mask, whose pixel extremes are the contour's extreme points.
Components are labelled by max-label propagation: along whole horizontal and vertical runs at
once (``segment_max``), plus a 3x3 max-pool for diagonal neighbours, in a ``tf.while_loop`` until
nothing changes, so it converges in a few dozen steps on real images. Holes are filled the same
way (4-connected background reachable from the border).

Every function takes one image ``[H, W, C]`` or a batch ``[B, H, W, C]`` (``C`` = 1, 3 or 4;
uint8 or float 0..255) and returns float32 pixels in 0..255. Fallbacks match OpenCV: an empty
image, no component, or a largest one under 1 % of the image gives the whole image.

``backend="opencv"`` (``tf_crop_brain``/``tf_crop_body``/``*_box``) finds the same box and body
mask with :mod:`kidney_tf.data.crop` inside a ``tf.numpy_function`` (OpenCV releases the GIL, so
``tf.data``'s parallel map still runs them side by side) and cuts and resizes with the same TF ops:
same pixels, 10-100x faster on a CPU, but the graph then holds Python and cannot be exported.
Training pipelines use it; SavedModels use the default pure-TF backend.

Usage::

    ds = ds.map(lambda x, y: (tf_crop_brain(x, 240), y), num_parallel_calls=tf.data.AUTOTUNE)
"""

from __future__ import annotations

import tensorflow as tf

from kidney_tf.data.crop import (
    BODY_CLOSE_KERNEL,
    BODY_OPEN_KERNEL,
    BODY_REFERENCE_SIZE,
    BODY_THRESHOLD,
    BRAIN_THRESHOLD,
    MIN_AREA_FRACTION,
)
from kidney_tf.recipes import CROP_BACKENDS, CROP_MODES, check_choice

_GAUSS5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _check_backend(backend: str) -> None:
    check_choice(backend, CROP_BACKENDS, "backend")


def _gray_np(images: tf.Tensor) -> tf.Tensor:
    """uint8 ``[B, H, W]`` as OpenCV's grayscale conversion gives it (for numpy_function)."""
    return tf.cast(tf.clip_by_value(tf.round(tf_gray_uint8(images)), 0.0, 255.0), tf.uint8)


def _cv_per_image(images: tf.Tensor, find, value_shape: tuple, dtype):
    """Run ``find(gray HxW uint8) -> (value, ok)`` on each image in one ``tf.numpy_function``.

    Returns ``(values [B, *value_shape], ok [B])``; ``value_shape`` may use ``None`` for the
    image height/width (filled in from the batch).
    """
    import numpy as np

    def run(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = tuple(gray.shape[1 + i] if d is None else d for i, d in enumerate(value_shape))
        values = np.zeros((len(gray), *shape), dtype)
        ok = np.zeros(len(gray), bool)
        for i, g in enumerate(gray):
            values[i], ok[i] = find(g)
        return values, ok

    out_types = [tf.as_dtype(dtype), tf.bool]
    values, ok = tf.numpy_function(run, [_gray_np(images)], out_types, stateful=False)
    static = [images.shape[1 + i] if d is None else d for i, d in enumerate(value_shape)]
    values.set_shape([images.shape[0], *static])
    ok.set_shape([images.shape[0]])
    return values, ok


def _cv_brain_boxes(images: tf.Tensor, threshold: float, min_area_fraction: float):
    """:func:`_brain_boxes` computed by OpenCV (``kidney_tf.data.crop.find_brain_box``)."""
    from kidney_tf.data.crop import find_brain_box

    def find(gray):
        box, _ = find_brain_box(gray, threshold=threshold, min_area_fraction=min_area_fraction)
        return (box, True) if box is not None else ((0, 0, gray.shape[1], gray.shape[0]), False)

    return _cv_per_image(images, find, (4,), "int32")


def _cv_body_masks(images: tf.Tensor, threshold: float, min_area_fraction: float):
    """:func:`_body_masks` computed by OpenCV (``kidney_tf.data.crop.find_body``)."""
    from kidney_tf.data.crop import find_body

    def find(gray):
        mask, reason = find_body(gray, threshold=threshold, min_area_fraction=min_area_fraction)
        return mask, reason is None

    return _cv_per_image(images, find, (None, None), "bool")


# ------------------------------------------------------------------------------- image handling
def _as_batch(image: tf.Tensor) -> tuple[tf.Tensor, bool]:
    """``(float32 [B, H, W, C], was_batched)``."""
    image = tf.convert_to_tensor(image)
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"expected an image [H, W, C] or a batch [B, H, W, C], got {image.shape}")
    image = tf.cast(image, tf.float32)
    return (image, True) if rank == 4 else (image[tf.newaxis], False)


def _by_channels(images: tf.Tensor, gray_fn, color_fn) -> tf.Tensor:
    channels = images.shape[-1]
    if channels is not None:
        return gray_fn(images) if channels == 1 else color_fn(images)
    return tf.cond(tf.shape(images)[-1] >= 3, lambda: color_fn(images), lambda: gray_fn(images))


def _to_rgb(images: tf.Tensor) -> tf.Tensor:
    """Float images with exactly 3 channels (gray tiled, alpha dropped)."""
    return _by_channels(images, lambda x: tf.tile(x[..., :1], [1, 1, 1, 3]), lambda x: x[..., :3])


def tf_gray_uint8(images: tf.Tensor) -> tf.Tensor:
    """Grayscale ``[B, H, W]`` float32 with OpenCV's integer RGB->gray rounding (0..255)."""
    images = tf.clip_by_value(tf.round(images), 0.0, 255.0)

    def color(x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x[..., :3], tf.int32)
        weighted = x[..., 0] * 4899 + x[..., 1] * 9617 + x[..., 2] * 1868 + 8192
        return tf.cast(tf.bitwise.right_shift(weighted, 14), tf.float32)

    return _by_channels(images, lambda x: x[..., 0], color)


def _gaussian5(gray: tf.Tensor) -> tf.Tensor:
    """OpenCV ``GaussianBlur(gray, (5, 5), 0)`` before rounding (exact in float32)."""
    kernel = tf.constant(_GAUSS5, tf.float32) / 16.0
    x = tf.pad(gray[..., tf.newaxis], [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    x = tf.nn.conv2d(x, tf.reshape(kernel, [5, 1, 1, 1]), 1, "VALID")
    x = tf.nn.conv2d(x, tf.reshape(kernel, [1, 5, 1, 1]), 1, "VALID")
    return x[..., 0]


def _pool(mask: tf.Tensor, size: int, erode: bool) -> tf.Tensor:
    """Erosion/dilation of a {0,1} float ``[B, H, W]`` with a size x size square (border ignored)."""
    x = mask[..., tf.newaxis]
    if erode:
        x = -x
    x = tf.nn.max_pool2d(x, [1, size], 1, "SAME")
    x = tf.nn.max_pool2d(x, [size, 1], 1, "SAME")
    return (-x if erode else x)[..., 0]


def _working_size(height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Run-time :func:`kidney_tf.data.crop.working_size` (shorter side -> 512 px)."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = BODY_REFERENCE_SIZE / tf.minimum(h, w)
    # Python's round() (half to even) as in the OpenCV module.
    size = tf.cast(tf.math.round(tf.stack([h * scale, w * scale])), tf.int32)
    return tf.maximum(size, 1)


# ---------------------------------------------------------------------------------- propagation
def _run_ids(mask: tf.Tensor) -> tf.Tensor:
    """Non-decreasing segment ids ``[B*H*W]`` with one id per horizontal run of ``mask``."""
    previous = tf.pad(mask[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    starts = tf.logical_and(mask, tf.logical_not(previous))
    return tf.cumsum(tf.reshape(tf.cast(starts, tf.int32), [-1]))


def _along_runs(values: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    flat = tf.reshape(values, [-1])
    return tf.reshape(tf.gather(tf.math.segment_max(flat, ids), ids), tf.shape(values))


def _propagate_max(values: tf.Tensor, mask: tf.Tensor, *, diagonal: bool) -> tf.Tensor:
    """Spread the maximum of ``values`` over each connected region of ``mask`` (``[B, H, W]``).

    4-connected regions (runs along rows and columns), 8-connected with ``diagonal``.
    """
    maskf = tf.cast(mask, tf.float32)
    row_ids = _run_ids(mask)
    col_ids = _run_ids(tf.transpose(mask, [0, 2, 1]))
    height, width = tf.shape(mask)[1], tf.shape(mask)[2]

    def step(x: tf.Tensor) -> tf.Tensor:
        x = _along_runs(x, row_ids) * maskf
        x = tf.transpose(_along_runs(tf.transpose(x, [0, 2, 1]), col_ids), [0, 2, 1]) * maskf
        if diagonal:
            x = tf.nn.max_pool2d(x[..., tf.newaxis], 3, 1, "SAME")[..., 0] * maskf
        return x

    def body(i, x, _):
        new = step(x)
        return i + 1, new, tf.reduce_any(tf.not_equal(new, x))

    _, out, _ = tf.while_loop(
        lambda i, x, changed: tf.logical_and(changed, i < height * width),
        body,
        (tf.constant(0), values * maskf, tf.constant(True)),
    )
    return out


def _label_components(mask: tf.Tensor) -> tf.Tensor:
    """8-connected component labels ``[B, H, W]`` (float32; 0 = background; per-image ids)."""
    shape = tf.shape(mask)
    ids = tf.reshape(tf.range(1, shape[1] * shape[2] + 1, dtype=tf.int32), shape[1:])
    ids = tf.broadcast_to(tf.cast(ids, tf.float32), shape)
    return _propagate_max(ids, mask, diagonal=True)


def _fill_holes(mask: tf.Tensor) -> tf.Tensor:
    """Add the background not 4-connected to the image border to ``mask`` (``[B, H, W]`` bool)."""
    background = tf.logical_not(mask)
    height, width = tf.shape(mask)[1], tf.shape(mask)[2]
    rows, cols = tf.range(height)[:, tf.newaxis], tf.range(width)[tf.newaxis, :]
    border = (rows == 0) | (rows == height - 1) | (cols == 0) | (cols == width - 1)
    seeds = tf.cast(tf.logical_and(background, border), tf.float32)
    outside = _propagate_max(seeds, background, diagonal=False) > 0
    return tf.logical_not(outside)


def _best_component(
    labels: tf.Tensor, weights: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(mask of the best component [B,H,W], its weight [B], its area [B])`` per image."""
    shape = tf.shape(labels)
    per_image = shape[1] * shape[2] + 1
    offsets = tf.range(shape[0])[:, tf.newaxis, tf.newaxis] * per_image
    segments = tf.reshape(tf.cast(labels, tf.int32) + offsets, [-1])
    count = shape[0] * per_image
    scores = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), segments, count)
    areas = tf.math.unsorted_segment_sum(tf.ones_like(segments, tf.float32), segments, count)
    scores = tf.reshape(scores, [shape[0], per_image])
    areas = tf.reshape(areas, [shape[0], per_image])
    scores = tf.concat([tf.fill([shape[0], 1], -1.0), scores[:, 1:]], axis=1)
    best = tf.argmax(scores, axis=1, output_type=tf.int32)
    mask = tf.equal(labels, tf.cast(best, tf.float32)[:, tf.newaxis, tf.newaxis])
    mask = tf.logical_and(mask, labels > 0)
    return mask, tf.gather(scores, best, batch_dims=1), tf.gather(areas, best, batch_dims=1)


def _extremes(mask: tf.Tensor) -> tf.Tensor:
    """``[B, 4]`` int32 ``(x_min, y_min, x_max, y_max)`` of each (non-empty) mask."""
    rows = tf.reduce_any(mask, axis=2)
    cols = tf.reduce_any(mask, axis=1)
    height, width = tf.shape(mask)[1], tf.shape(mask)[2]
    y0 = tf.argmax(tf.cast(rows, tf.int32), axis=1, output_type=tf.int32)
    y1 = height - 1 - tf.argmax(tf.cast(rows[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
    x0 = tf.argmax(tf.cast(cols, tf.int32), axis=1, output_type=tf.int32)
    x1 = width - 1 - tf.argmax(tf.cast(cols[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
    return tf.stack([x0, y0, x1, y1], axis=1)


def _with_fallback(boxes: tf.Tensor, ok: tf.Tensor, height: tf.Tensor, width: tf.Tensor):
    full = tf.stack([0, 0, width, height])
    ok = tf.logical_and(ok, boxes[:, 2] > boxes[:, 0])
    ok = tf.logical_and(ok, boxes[:, 3] > boxes[:, 1])
    return tf.where(ok[:, tf.newaxis], boxes, full[tf.newaxis]), ok


def _unbatch(value: tf.Tensor, batched: bool) -> tf.Tensor:
    return value if batched else value[0]


# ------------------------------------------------------------------------------------ brain crop
def _brain_boxes(
    images: tf.Tensor, threshold: float, min_area_fraction: float
) -> tuple[tf.Tensor, tf.Tensor]:
    gray = tf_gray_uint8(images)
    height, width = tf.shape(gray)[1], tf.shape(gray)[2]
    # OpenCV rounds the blurred uint8 value, then keeps > threshold: value >= threshold + 0.5.
    mask = tf.cast(_gaussian5(gray) >= threshold + 0.5, tf.float32)
    mask = _pool(_pool(mask, 5, erode=True), 5, erode=False) > 0
    # External contours enclose their holes (and whatever lies in them): label the filled mask,
    # so a component's area is its contour's area and the largest one is OpenCV's choice.
    filled = _fill_holes(mask)
    component, _, area = _best_component(_label_components(filled), tf.cast(filled, tf.float32))
    total = tf.cast(height * width, tf.float32)
    ok = tf.logical_and(area >= min_area_fraction * total, tf.reduce_any(gray > 0, axis=[1, 2]))
    return _with_fallback(_extremes(component), ok, height, width)


def tf_find_brain_box(
    image: tf.Tensor,
    *,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
    backend: str = "tf",
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(box int32 [4], found bool [])`` (batched: ``[B, 4]``, ``[B]``); box is the whole image
    when not found. Usage: ``box, found = tf_find_brain_box(image)``
    """
    images, batched = _as_batch(image)
    boxes, ok = _find_brain_boxes(images, threshold, min_area_fraction, backend)
    return _unbatch(boxes, batched), _unbatch(ok, batched)


def _find_brain_boxes(images, threshold: float, min_area_fraction: float, backend: str):
    _check_backend(backend)
    if backend == "opencv":
        return _cv_brain_boxes(images, threshold, min_area_fraction)
    return _brain_boxes(images, threshold, min_area_fraction)


def tf_brain_box(
    image: tf.Tensor,
    *,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
    backend: str = "tf",
) -> tf.Tensor:
    """The paper's brain box ``(left, top, right, bottom)`` int32 ``[4]`` (``[B, 4]``).

    Same as :func:`kidney_tf.data.crop.brain_box`, but the whole image ``(0, 0, W, H)`` instead
    of ``None`` on fallback. Usage: ``box = tf_brain_box(image)``
    """
    return tf_find_brain_box(
        image, threshold=threshold, min_area_fraction=min_area_fraction, backend=backend
    )[0]


def tf_crop_box(
    image: tf.Tensor,
    box: tf.Tensor,
    size: int | tuple[int, int],
    *,
    margin: int = 0,
    method: str = "bilinear",
) -> tf.Tensor:
    """Cut ``box`` (+ ``margin`` px, clipped) out of ``image`` and resize it to ``size``.

    Works for ``[H, W, C]`` with box ``[4]`` and for batches ``[B, H, W, C]`` with ``[B, 4]``;
    use ``method="nearest"`` for masks. Returns float32 with the input's channels.
    Usage: ``mask = tf_crop_box(mask, tf_brain_box(image), 240, method="nearest")``
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    box = tf.cast(box, tf.int32)

    def one(args):
        img, b = args
        height, width = tf.shape(img)[0], tf.shape(img)[1]
        x0, y0 = tf.maximum(b[0] - margin, 0), tf.maximum(b[1] - margin, 0)
        x1, y1 = tf.minimum(b[2] + margin, width), tf.minimum(b[3] + margin, height)
        crop = img[y0:y1, x0:x1]
        return tf.image.resize(crop, hw, method=method, antialias=False)

    if image.shape.rank == 4:
        return tf.map_fn(
            one,
            (image, box),
            fn_output_signature=tf.TensorSpec([*hw, image.shape[-1]], tf.float32),
        )
    return one((image, box))


def tf_crop_brain(
    image: tf.Tensor,
    size: int | tuple[int, int],
    margin: int = 0,
    *,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
    backend: str = "tf",
    with_box: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """Brain-contour crop resized to ``size``: float32 ``[size, size, 3]`` (or batched) in 0..255.

    ``with_box=True`` also returns the box (to cut a lesion mask the same way).
    Usage: ``ds.map(lambda x, y: (tf_crop_brain(x, 240), y))``
    """
    images, batched = _as_batch(image)
    boxes, _ = _find_brain_boxes(images, threshold, min_area_fraction, backend)
    out = _unbatch(tf_crop_box(_to_rgb(images), boxes, size, margin=margin), batched)
    return (out, _unbatch(boxes, batched)) if with_box else out


# ------------------------------------------------------------------------------------- body crop
def _body_masks(
    images: tf.Tensor,
    threshold: float,
    close_kernel: int,
    open_kernel: int,
    min_area_fraction: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    gray = tf_gray_uint8(images)
    height, width = tf.shape(gray)[1], tf.shape(gray)[2]
    # Work at the 512-px size the kernels are tuned for (identity for 512-px slices), nearest
    # as crop.resize_nearest does (same source pixels): no interpolation smears a thin table into
    # the body.
    work = tf.image.resize(gray[..., tf.newaxis], _working_size(height, width), method="nearest")
    work = work[..., 0]
    tissue = tf.cast(_gaussian5(work) >= threshold + 0.5, tf.float32)
    closed = _pool(_pool(tissue, close_kernel, erode=False), close_kernel, erode=True) > 0
    filled = tf.cast(_fill_holes(closed), tf.float32)
    opened = _pool(_pool(filled, open_kernel, erode=True), open_kernel, erode=False) > 0
    body, _, _ = _best_component(_label_components(opened), tissue)
    body = tf.image.resize(
        tf.cast(body, tf.float32)[..., tf.newaxis], tf.stack([height, width]), method="nearest"
    )
    body = body[..., 0] > 0.5
    area = tf.reduce_sum(tf.cast(body, tf.float32), axis=[1, 2])
    total = tf.cast(height * width, tf.float32)
    ok = tf.logical_and(area >= min_area_fraction * total, tf.reduce_any(gray > 0, axis=[1, 2]))
    return body, ok


def tf_body_mask(
    image: tf.Tensor,
    *,
    threshold: float = BODY_THRESHOLD,
    close_kernel: int = BODY_CLOSE_KERNEL,
    open_kernel: int = BODY_OPEN_KERNEL,
) -> tf.Tensor:
    """The body in a CT slice without the scanner table: bool ``[H, W]`` (``[B, H, W]``).

    Same as :func:`kidney_tf.data.crop.body_mask`. Usage: ``fg = tf_body_mask(image)``
    """
    images, batched = _as_batch(image)
    masks, _ = _body_masks(images, threshold, close_kernel, open_kernel, 0.0)
    return _unbatch(masks, batched)


def _body_boxes(masks: tf.Tensor, ok: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    height, width = tf.shape(masks)[1], tf.shape(masks)[2]
    boxes = _extremes(masks) + tf.constant([0, 0, 1, 1], tf.int32)
    return _with_fallback(boxes, ok, height, width)


def tf_body_box(
    image: tf.Tensor,
    *,
    threshold: float = BODY_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
    backend: str = "tf",
) -> tf.Tensor:
    """Box of :func:`tf_body_mask` ``(x0, y0, x1, y1)`` end exclusive; whole image on fallback."""
    images, batched = _as_batch(image)
    masks, ok = _find_body_masks(images, threshold, min_area_fraction, backend)
    return _unbatch(_body_boxes(masks, ok)[0], batched)


def _find_body_masks(images, threshold: float, min_area_fraction: float, backend: str):
    _check_backend(backend)
    if backend == "opencv":
        return _cv_body_masks(images, threshold, min_area_fraction)
    return _body_masks(images, threshold, BODY_CLOSE_KERNEL, BODY_OPEN_KERNEL, min_area_fraction)


def tf_crop_body(
    image: tf.Tensor,
    size: int | tuple[int, int],
    margin: int = 0,
    *,
    blank: bool = True,
    threshold: float = BODY_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
    backend: str = "tf",
    with_box: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """Blank everything outside the body (the table too), crop to it, resize to ``size``.

    Returns float32 ``[size, size, 3]`` (or batched) in 0..255; the whole image on fallback.
    ``with_box=True`` also returns the box (to cut a lesion mask the same way).
    Usage: ``ds.map(lambda x, y: (tf_crop_body(x, 224), y))``
    """
    images, batched = _as_batch(image)
    masks, ok = _find_body_masks(images, threshold, min_area_fraction, backend)
    rgb = _to_rgb(images)
    if blank:
        keep = tf.logical_or(masks, tf.logical_not(ok)[:, tf.newaxis, tf.newaxis])
        rgb = rgb * tf.cast(keep, tf.float32)[..., tf.newaxis]
    boxes, _ = _body_boxes(masks, ok)
    out = _unbatch(tf_crop_box(rgb, boxes, size, margin=margin), batched)
    return (out, _unbatch(boxes, batched)) if with_box else out


# ------------------------------------------------------------------------- one preparation
#: Crop mode -> its TF crop (the keys are ``recipes.CROP_MODES``).
TF_CROPS = {"brain": tf_crop_brain, "body": tf_crop_body}


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear (antialiased) resize to ``size`` x ``size`` float32 (no crop)."""
    return tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)


def crop_resize(
    image: tf.Tensor,
    size: int,
    crop: str | None = None,
    *,
    margin: int = 0,
    backend: str = "tf",
    mask: tf.Tensor | None = None,
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """THE preparation of a decoded image for a model: crop ``crop`` (which resizes) or resize.

    Training, evaluation and the SavedModel's bytes signature all call this, so one file gives
    the same pixels everywhere. ``mask`` (``[H, W, 1]``) is cut with the image's box and
    nearest-resized; then ``(image, mask)`` is returned. Float32 0..255.
    Usage: ``x = crop_resize(decode_image_bytes(data), 224, "body")``
    """
    if crop is None:
        out = resize(image, size)
        if mask is None:
            return out
        return out, tf.image.resize(mask, (size, size), method="nearest")
    check_choice(crop, CROP_MODES, "crop")
    if mask is None:
        return TF_CROPS[crop](image, size, margin, backend=backend)
    out, box = TF_CROPS[crop](image, size, margin, backend=backend, with_box=True)
    return out, tf_crop_box(mask, box, size, margin=margin, method="nearest")
