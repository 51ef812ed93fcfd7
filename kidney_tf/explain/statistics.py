"""CAM map statistics: the single definition used by training, evaluation and export.

All functions take a batch of maps ``[B, H, W]`` (a trailing channel axis of 1 is accepted), work
on TensorFlow tensors or NumPy arrays, compute in float32 and never return NaN:

- ``normalized_entropy``: the map made non-negative (ReLU) and summed to 1, Shannon entropy divided
  by ``ln(H*W)``, in [0, 1]. A map with no positive mass carries no evidence at all and is treated
  as uniform (entropy 1), so the CAM-fostering penalty never rewards a dead map.

Usage::

    from kidney_tf.explain.statistics import normalized_entropy
    h = normalized_entropy(cams)  # [B] float32 tensor
"""

from __future__ import annotations

import math

import tensorflow as tf

EPSILON = 1e-12


def _as_maps(maps) -> tf.Tensor:
    maps = tf.convert_to_tensor(maps)
    maps = tf.cast(maps, tf.float32)
    if maps.shape.rank == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.shape.rank == 2:
        maps = maps[tf.newaxis]
    if maps.shape.rank != 3:
        raise ValueError(f"expected maps of shape [B, H, W], got {maps.shape}")
    return maps


def to_distribution(maps) -> tuple[tf.Tensor, tf.Tensor]:
    """Return ``(p, has_mass)``: maps made non-negative and summed to 1 per map.

    Maps with no positive mass become uniform; ``has_mass`` is a ``[B]`` bool tensor telling which
    maps had any.
    """
    maps = tf.nn.relu(_as_maps(maps))
    total = tf.reduce_sum(maps, axis=[1, 2], keepdims=True)
    has_mass = total > EPSILON
    uniform = tf.ones_like(maps) / tf.cast(tf.shape(maps)[1] * tf.shape(maps)[2], tf.float32)
    safe_total = tf.where(has_mass, total, tf.ones_like(total))
    p = tf.where(has_mass, maps / safe_total, uniform)
    return p, tf.reshape(has_mass, [-1])


def normalized_entropy(maps) -> tf.Tensor:
    """Shannon entropy of each map's mass distribution divided by ``ln(H*W)``: ``[B]`` in [0, 1].

    Uniform map -> 1, one-hot map -> 0, all-zero map -> 1 (no evidence). Differentiable.
    """
    p, _ = to_distribution(maps)
    n = tf.cast(tf.shape(p)[1] * tf.shape(p)[2], tf.float32)
    # p * log(p) -> 0 as p -> 0; the double where keeps the gradient finite at p == 0.
    positive = p > 0
    safe_p = tf.where(positive, p, tf.ones_like(p))
    plogp = tf.where(positive, p * tf.math.log(safe_p), tf.zeros_like(p))
    entropy = -tf.reduce_sum(plogp, axis=[1, 2])
    denom = tf.math.log(tf.maximum(n, 2.0))
    return tf.clip_by_value(entropy / denom, 0.0, 1.0)


__all__ = ["EPSILON", "normalized_entropy", "to_distribution", "math"]
