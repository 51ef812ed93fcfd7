"""Class activation maps as TensorFlow graph ops: the training penalty and the SavedModel use these.

tf-keras-vis (``explain/cams.py``) computes the evaluation's maps eagerly, with NumPy and SciPy
steps that a training step or a SavedModel graph cannot hold; this module states the same maps
as TF ops, so the same image gives the same number in training, evaluation and serving (tested
against tf-keras-vis):

- :func:`head_cams`: the closed forms for a ``GAP -> [Dropout] -> Dense("logits")`` head, from
  the features and the class's weights: ``exact`` = ``relu(F · w)``; ``gradcam++`` =
  ``F · relu(w)`` shifted to a minimum of 0 (with a GAP head the logit's gradient is constant over
  positions, so Grad-CAM++'s alphas are uniform); ``gradcam`` = ``relu(F · mean(grad))``.
- :func:`gradcam_plus_plus`: tf-keras-vis' Grad-CAM++ from features and the gradients of the
  pre-softmax score (any head), with the score's ``exp`` factor at 1 as ``explain/cams.py`` sets it.
- :func:`expand_cams`: tf-keras-vis' ``expand_cam`` + ``normalize_cam``: linear ``zoom`` to the
  input (corners aligned, as ``scipy.ndimage.zoom(order=1)``), then min-max to [0, 1].

Usage::

    cams = head_cams(features, tf.gather(kernel, classes, axis=1), "gradcam++")   # [B, h, w]
    maps = expand_cams(gradcam_plus_plus(features, gradients), (224, 224))        # [B, H, W]
"""

from __future__ import annotations

import tensorflow as tf

#: ``keras.backend.epsilon()``, the constant tf-keras-vis' ``normalize`` adds to the range.
NORMALIZE_EPSILON = 1e-7


def head_cams(features: tf.Tensor, weights: tf.Tensor, method: str) -> tf.Tensor:
    """CAMs ``[B, h, w]`` float32 (non-negative, unnormalised) from ``features`` ``[B, h, w, K]``.

    ``weights`` ``[B, K]``: the explained class's logit weights (``exact``, ``gradcam++``) or the
    spatially averaged gradients of its logit (``gradcam``).
    """
    return activate_cams(signed_cams(features, weights, method), method)


def signed_cams(features: tf.Tensor, weights: tf.Tensor, method: str) -> tf.Tensor:
    """The maps of :func:`head_cams` before their final step (ReLU, or the shift to 0 of
    ``gradcam++``): ``[B, h, w]`` float32, negative where the evidence is against the class."""
    features = tf.cast(features, tf.float32)
    weights = tf.cast(weights, tf.float32)
    if method == "gradcam++":
        weights = tf.nn.relu(weights)
    return tf.einsum("bhwk,bk->bhw", features, weights)


def activate_cams(signed: tf.Tensor, method: str) -> tf.Tensor:
    """:func:`signed_cams` -> :func:`head_cams`: ``gradcam++`` shifts each map to a minimum of
    0, ``exact`` and ``gradcam`` keep the positive part."""
    if method == "gradcam++":
        return signed - tf.reduce_min(signed, axis=[1, 2], keepdims=True)
    return tf.nn.relu(signed)


def gradcam_plus_plus(features: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """tf-keras-vis' Grad-CAM++ ``[B, h, w]`` (ReLU'd, unnormalised) for any head.

    ``gradients``: d(pre-softmax class score)/d(features), same shape as ``features``.
    """
    features = tf.cast(features, tf.float32)
    first = tf.cast(gradients, tf.float32)
    second = first * first
    third = second * first
    global_sum = tf.reduce_sum(features, axis=[1, 2], keepdims=True)
    denominator = 2.0 * second + third * global_sum
    denominator += tf.cast(tf.equal(second, 0.0), tf.float32)
    alphas = second / denominator
    norm = tf.reduce_sum(alphas, axis=[1, 2], keepdims=True)
    alphas /= norm + tf.cast(tf.equal(norm, 0.0), tf.float32)
    weights = tf.reduce_sum(tf.nn.relu(first) * alphas, axis=[1, 2], keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))


def expand_cams(cams: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Upsample ``[B, h, w]`` maps to ``size`` and scale each to [0, 1], as tf-keras-vis does."""
    cams = tf.cast(cams, tf.float32)[..., tf.newaxis]
    cams = tf.raw_ops.ResizeBilinear(
        images=cams, size=list(size), align_corners=True, half_pixel_centers=False
    )[..., 0]
    return normalize_cams(cams)


def normalize_cams(cams: tf.Tensor) -> tf.Tensor:
    """Min-max each map to [0, 1] (tf-keras-vis' ``normalize``)."""
    low = tf.reduce_min(cams, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(cams, axis=[1, 2], keepdims=True)
    return (cams - low) / (high - low + NORMALIZE_EPSILON)


__all__ = [
    "activate_cams",
    "expand_cams",
    "gradcam_plus_plus",
    "head_cams",
    "normalize_cams",
    "signed_cams",
]
