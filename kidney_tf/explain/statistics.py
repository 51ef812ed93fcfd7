"""CAM map statistics: the single definition used by training, evaluation and export.

Every function takes a batch of maps ``[B, H, W]`` (a single ``[H, W]`` map or a trailing channel
axis of 1 is accepted), is shape-agnostic and never returns NaN. Evaluate maps upsampled to the
input size, as the papers do. Throughout, a map is first made non-negative (ReLU); a map with no
positive mass carries no evidence and is treated as **uniform**, so no statistic rewards a dead map.

Map-only statistics (TensorFlow, differentiable where it makes sense, float32 ``[B]`` tensors):

- ``normalized_entropy``: map summed to a distribution ``p``; Shannon entropy ``-Σ p ln p`` divided
  by ``ln(H*W)``, in [0, 1]. Uniform -> 1, one-hot -> 0, all-zero -> 1.
- ``cam_radius``: radius of gyration ``sqrt(Σ p·|r − r̄|²)`` of the mass around its centroid ``r̄``,
  pixel centres at ``((i + 0.5)/H, (j + 0.5)/W)`` so both axes span [0, 1]. Uniform ->
  ``sqrt(1/12 + 1/12) ≈ 0.408`` (exactly ``sqrt((1 − 1/H²)/12 + (1 − 1/W²)/12)``), one-hot -> 0,
  all-zero -> the uniform value.
- ``cam_snr``: the *peak region* is every pixel ``>= threshold · max`` (threshold 0.5); SNR is the
  mean of the map inside the peak region over the mean outside it. A constant or all-zero map has no
  outside region and gets SNR 1; when the outside mean is zero (e.g. one-hot) SNR is capped at
  ``MAX_SNR`` (1e4).
- ``snr_db``: ``10·log10(SNR)`` — CAM values are treated like intensities (mass, the quantity the
  other statistics sum), i.e. a power ratio, so 10·log10 and not 20·log10. SNR 1 -> 0 dB, the cap
  -> 40 dB.

Statistics against a lesion mask (NumPy; return ``np.ma.MaskedArray`` float32 ``[B]``; an image
whose mask is empty is *not applicable* and is masked out, so ``.mean()`` skips it, ``.tolist()``
gives ``None`` for it and nothing is NaN):

- ``pointing_game``: 1 if the map's maximum lies inside the lesion dilated by ``tolerance_px``
  (Euclidean distance to the nearest lesion pixel ``<= tolerance_px``), else 0. A map with no
  positive mass points nowhere: 0.
- ``energy_in_mask``: fraction of the CAM mass inside the lesion (``Σ p·mask``).
- ``cam_iou``: IoU between the peak region (as in ``cam_snr``) and the lesion.
- ``chance_baselines``: what a map with no information scores on the same masks: pointing game of a
  uniformly random point (mean dilated-lesion area fraction), energy of a uniform map (mean lesion
  area fraction) and IoU of a uniform map (its peak region is the whole image: the area fraction).

Statistics without masks (NumPy), for spotting shortcut learning — entropy, radius and SNR alone
cannot tell a sharp right answer from a sharp wrong one (measured on kidney CT: all three
"improved" under CAM fostering while the maps collapsed onto the scanner table):

- ``outside_fraction``: fraction of CAM mass outside the foreground (body/brain mask from
  ``kidney_tf.data.crop.body_mask``); an empty foreground counts everything as outside (1).
  ``mass_outside`` is its differentiable TensorFlow twin for training losses (CAM fostering's
  anatomy and lesion-mask terms): native-grid maps are upsampled to the region's size first,
  bilinearly with aligned corners, as tf-keras-vis' ``zoom(order=1)`` does for the evaluation.
- ``peak_cells``: ``[B, 2]`` (row, col) of the grid cell holding each map's maximum.
- ``shortcut_warnings``: warns when most maps of a class peak in the same grid cell or outside the
  foreground.
- ``summarize_maps``: all of the above for a batch, means and per-image arrays.

Masks/foregrounds whose size differs from the maps are resized (nearest neighbour).

Usage::

    from kidney_tf.explain.statistics import normalized_entropy, summarize_maps
    h = normalized_entropy(cams)  # [B] float32 tensor
    summary = summarize_maps(cams, masks=lesions, foreground=bodies)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

EPSILON = 1e-12
PEAK_THRESHOLD = 0.5
MAX_SNR = 1e4
# Pointing-game tolerance of Zhang et al. (2018) at 224 px; the functions default to 0 (exact).
PAPER_TOLERANCE_PX = 15


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
    return entropy_and_mass(maps)[0]


def entropy_and_mass(maps) -> tuple[tf.Tensor, tf.Tensor]:
    """``(normalized_entropy(maps), has_mass)`` from one :func:`to_distribution` pass.

    Usage: ``entropy, has_mass = entropy_and_mass(cams)``.
    """
    p, has_mass = to_distribution(maps)
    n = tf.cast(tf.shape(p)[1] * tf.shape(p)[2], tf.float32)
    # p * log(p) -> 0 as p -> 0; the double where keeps the gradient finite at p == 0.
    positive = p > 0
    safe_p = tf.where(positive, p, tf.ones_like(p))
    plogp = tf.where(positive, p * tf.math.log(safe_p), tf.zeros_like(p))
    entropy = -tf.reduce_sum(plogp, axis=[1, 2])
    denom = tf.math.log(tf.maximum(n, 2.0))
    return tf.clip_by_value(entropy / denom, 0.0, 1.0), has_mass


def _pixel_centres(size: tf.Tensor) -> tf.Tensor:
    return (tf.range(size, dtype=tf.float32) + 0.5) / tf.cast(size, tf.float32)


def cam_centroid(maps) -> tf.Tensor:
    """Centre of CAM mass ``[B, 2]`` as (y, x) in [0, 1] image coordinates."""
    p, _ = to_distribution(maps)
    ys = _pixel_centres(tf.shape(p)[1])
    xs = _pixel_centres(tf.shape(p)[2])
    py = tf.reduce_sum(p, axis=2)  # marginal over rows, [B, H]
    px = tf.reduce_sum(p, axis=1)  # [B, W]
    return tf.stack([tf.reduce_sum(py * ys, axis=1), tf.reduce_sum(px * xs, axis=1)], axis=1)


def cam_radius(maps) -> tf.Tensor:
    """Radius of gyration of the CAM mass around its centroid, coordinates in [0, 1]: ``[B]``.

    Uniform -> ≈0.408, one-hot -> 0, all-zero -> uniform value. Differentiable.
    """
    p, _ = to_distribution(maps)
    ys = _pixel_centres(tf.shape(p)[1])
    xs = _pixel_centres(tf.shape(p)[2])
    py = tf.reduce_sum(p, axis=2)
    px = tf.reduce_sum(p, axis=1)
    mean_y = tf.reduce_sum(py * ys, axis=1, keepdims=True)
    mean_x = tf.reduce_sum(px * xs, axis=1, keepdims=True)
    # Σ p |r − r̄|² separates into the two axes' variances of the marginals.
    var = tf.reduce_sum(py * tf.square(ys - mean_y), axis=1) + tf.reduce_sum(
        px * tf.square(xs - mean_x), axis=1
    )
    var = tf.maximum(var, 0.0)
    positive = var > EPSILON
    safe_var = tf.where(positive, var, tf.ones_like(var))
    return tf.where(positive, tf.sqrt(safe_var), tf.zeros_like(var))


def peak_region(maps, threshold: float = PEAK_THRESHOLD) -> tf.Tensor:
    """Bool ``[B, H, W]``: pixels at or above ``threshold`` times the map's maximum (after ReLU).

    A map with no positive mass is uniform, so its peak region is the whole image.
    """
    maps = tf.nn.relu(_as_maps(maps))
    peak = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    return maps >= threshold * peak


def cam_snr(maps, threshold: float = PEAK_THRESHOLD) -> tf.Tensor:
    """Mean inside the peak region over the mean outside it: ``[B]`` float32 in [1, MAX_SNR].

    No outside region (constant or all-zero map) -> 1; zero outside mean -> ``MAX_SNR``.
    """
    values = tf.nn.relu(_as_maps(maps))
    region = peak_region(values, threshold)
    inside_n = tf.reduce_sum(tf.cast(region, tf.float32), axis=[1, 2])
    outside_n = tf.reduce_sum(tf.cast(~region, tf.float32), axis=[1, 2])
    inside_sum = tf.reduce_sum(tf.where(region, values, 0.0), axis=[1, 2])
    outside_sum = tf.reduce_sum(tf.where(region, 0.0, values), axis=[1, 2])
    inside_mean = inside_sum / tf.maximum(inside_n, 1.0)
    outside_mean = outside_sum / tf.maximum(outside_n, 1.0)
    ratio = inside_mean / tf.maximum(outside_mean, inside_mean / MAX_SNR + EPSILON)
    defined = (outside_n > 0) & (inside_mean > EPSILON)
    return tf.where(defined, tf.clip_by_value(ratio, 1.0, MAX_SNR), tf.ones_like(ratio))


def snr_db(snr) -> tf.Tensor:
    """``10·log10(snr)`` in dB (CAM values are intensity-like); SNR 1 -> 0 dB."""
    snr = tf.cast(tf.convert_to_tensor(snr), tf.float32)
    return 10.0 * tf.math.log(tf.maximum(snr, EPSILON)) / math.log(10.0)


# ---------------------------------------------------------------------------- masks (NumPy)


def _maps_np(maps) -> np.ndarray:
    return _as_maps(maps).numpy()


def _as_masks(masks, what: str = "masks") -> np.ndarray:
    """Bool ``[B, H, W]`` from bool/0-1/0-255 masks with optional batch or channel axes."""
    if isinstance(masks, tf.Tensor):
        masks = masks.numpy()
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim == 2:
        masks = masks[np.newaxis]
    if masks.ndim != 3:
        raise ValueError(f"expected {what} of shape [B, H, W], got {masks.shape}")
    return masks if masks.dtype == bool else masks > 0.5


def _match(masks, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """Bool ``[B, H, W]`` masks matching ``shape``; nearest-neighbour resize, broadcast one mask."""
    masks = _as_masks(masks, what)
    if masks.shape[0] == 1 and shape[0] != 1:
        masks = np.broadcast_to(masks, (shape[0], *masks.shape[1:]))
    if masks.shape[0] != shape[0]:
        raise ValueError(f"{what}: {masks.shape[0]} masks for {shape[0]} maps")
    if masks.shape[1:] != shape[1:]:
        resized = tf.image.resize(
            tf.cast(masks[..., np.newaxis], tf.uint8), shape[1:], method="nearest"
        )
        masks = resized.numpy()[..., 0] > 0
    return masks


def _not_applicable(values: np.ndarray, valid: np.ndarray) -> np.ma.MaskedArray:
    values = np.where(valid, values, 0.0).astype(np.float32)
    return np.ma.MaskedArray(values, mask=~valid)


def _dilate(masks: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Masks grown by ``tolerance_px`` (Euclidean distance to the nearest mask pixel)."""
    if tolerance_px <= 0:
        return masks
    from scipy.ndimage import distance_transform_edt

    out = np.empty_like(masks)
    for i, mask in enumerate(masks):  # one distance transform per image, not per pixel
        out[i] = distance_transform_edt(~mask) <= tolerance_px if mask.any() else mask
    return out


def _argmax_yx(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = maps.reshape(maps.shape[0], -1).argmax(axis=1)
    return np.unravel_index(flat, maps.shape[1:])


def pointing_game(maps, masks, *, tolerance_px: float = 0) -> np.ma.MaskedArray:
    """1.0 where the map's maximum falls in the lesion (dilated by ``tolerance_px``), else 0.0.

    Returns a masked ``[B]`` array; images with an empty mask are masked out (not applicable).
    """
    values = _maps_np(maps)
    masks = _match(masks, values.shape, "masks")
    rows, cols = _argmax_yx(values)
    hit = _dilate(masks, tolerance_px)[np.arange(len(values)), rows, cols]
    hit &= values.max(axis=(1, 2)) > EPSILON
    return _not_applicable(hit.astype(np.float32), masks.any(axis=(1, 2)))


def energy_in_mask(maps, masks) -> np.ma.MaskedArray:
    """Fraction of CAM mass inside the lesion: masked ``[B]`` array in [0, 1]."""
    p = to_distribution(maps)[0].numpy()
    masks = _match(masks, p.shape, "masks")
    energy = np.clip((p * masks).sum(axis=(1, 2)), 0.0, 1.0)
    return _not_applicable(energy, masks.any(axis=(1, 2)))


def cam_iou(maps, masks, *, threshold: float = PEAK_THRESHOLD) -> np.ma.MaskedArray:
    """IoU of the peak region (``>= threshold·max``) with the lesion: masked ``[B]`` array."""
    region = peak_region(maps, threshold).numpy()
    masks = _match(masks, region.shape, "masks")
    inter = (region & masks).sum(axis=(1, 2))
    union = (region | masks).sum(axis=(1, 2))
    return _not_applicable(inter / np.maximum(union, 1), masks.any(axis=(1, 2)))


def chance_baselines(masks, *, tolerance_px: float = 0) -> dict[str, float | int | None]:
    """Scores of an uninformative map on ``masks`` (images with empty masks skipped).

    ``pointing_game``: a uniformly random point (mean dilated-lesion area fraction);
    ``energy_in_mask`` and ``cam_iou``: a uniform map (mean lesion area fraction); ``n`` images
    used. Values are ``None`` when no mask is non-empty.
    """
    masks = _as_masks(masks)
    valid = masks.any(axis=(1, 2))
    n = int(valid.sum())
    if n == 0:
        return {"pointing_game": None, "energy_in_mask": None, "cam_iou": None, "n": 0}
    area = masks[valid].mean(axis=(1, 2))
    dilated = _dilate(masks[valid], tolerance_px).mean(axis=(1, 2))
    return {
        "pointing_game": float(dilated.mean()),
        "energy_in_mask": float(area.mean()),
        "cam_iou": float(area.mean()),
        "n": n,
    }


# ---------------------------------------------------------------------- no masks (shortcuts)


def outside_fraction(maps, foreground) -> np.ndarray:
    """Fraction of CAM mass outside the foreground (body/brain): float32 ``[B]`` in [0, 1]."""
    p = to_distribution(maps)[0].numpy()
    foreground = _match(foreground, p.shape, "foreground")
    return np.clip(1.0 - (p * foreground).sum(axis=(1, 2)), 0.0, 1.0).astype(np.float32)


def upsample_maps(maps, size: tuple[int, int] | tf.Tensor) -> tf.Tensor:
    """Maps ``[B, h, w]`` resized to ``size`` bilinearly with aligned corners: ``[B, H, W]``.

    The same interpolation as ``scipy.ndimage.zoom(order=1)``, which tf-keras-vis (and so the
    evaluation) uses to expand CAMs; differentiable. Usage: ``upsample_maps(cams, (128, 128))``.
    """
    maps = _as_maps(maps)
    if isinstance(size, (tuple, list)) and tuple(maps.shape[1:3]) == tuple(size):
        return maps
    size = tf.unstack(tf.convert_to_tensor(size, tf.int32))
    rows = _interpolation_matrix(size[0], tf.shape(maps)[1])
    cols = _interpolation_matrix(size[1], tf.shape(maps)[2])
    return tf.einsum("Hh,bhw,Ww->bHW", rows, maps, cols)


def _interpolation_matrix(out_size: tf.Tensor, in_size: tf.Tensor) -> tf.Tensor:
    """``[out, in]`` linear interpolation weights, corners aligned (as ``zoom(order=1)``)."""
    scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
    position = tf.range(out_size, dtype=tf.float32) * scale
    low = tf.minimum(tf.cast(tf.floor(position), tf.int32), in_size - 1)
    high = tf.minimum(low + 1, in_size - 1)
    frac = (position - tf.cast(low, tf.float32))[:, tf.newaxis]
    return tf.one_hot(low, in_size) * (1.0 - frac) + tf.one_hot(high, in_size) * frac


def mass_outside(maps, region) -> tf.Tensor:
    """Fraction of CAM mass outside ``region``, differentiable: float32 ``[B]`` in [0, 1].

    The TensorFlow twin of :func:`outside_fraction` (same value on maps at the region's size):
    ``region`` is ``[B, H, W]`` (or ``[B, H, W, 1]``) bool or 0/1; maps on a coarser grid are
    upsampled to it with :func:`upsample_maps` first. A map with no mass is uniform; an empty
    region gives 1. Usage: ``loss = tf.reduce_mean(mass_outside(cams, foreground))``.
    """
    region = tf.cast(_as_maps(region) > 0.5, tf.float32)
    size = region.shape[1:3]
    maps = upsample_maps(maps, tuple(size) if size.is_fully_defined() else tf.shape(region)[1:3])
    p, _ = to_distribution(maps)
    return tf.clip_by_value(1.0 - tf.reduce_sum(p * region, axis=[1, 2]), 0.0, 1.0)


def peak_cells(maps, grid: tuple[int, int] = (7, 7)) -> np.ndarray:
    """``[B, 2]`` int (row, col) of the ``grid`` cell that holds each map's maximum."""
    values = _maps_np(maps)
    rows, cols = _argmax_yx(values)
    h, w = values.shape[1:]
    return np.stack([rows * grid[0] // h, cols * grid[1] // w], axis=1).astype(np.int64)


@dataclass(frozen=True)
class ShortcutWarning:
    """One suspicious pattern: ``kind`` is ``"same_cell"``, ``"outside_foreground"`` or
    ``"empty"`` (maps with no positive mass: no peak, no evidence for the class)."""

    class_name: str
    kind: str
    count: int
    total: int
    cell: tuple[int, int] | None
    message: str

    @property
    def fraction(self) -> float:
        return self.count / self.total if self.total else 0.0

    def __str__(self) -> str:
        return self.message


def _label_indices(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    if labels.shape != (n,):
        raise ValueError(f"labels: expected {n} labels (indices or one-hot), got {labels.shape}")
    return labels


def shortcut_warnings(
    maps,
    labels,
    foreground=None,
    *,
    grid: tuple[int, int] = (7, 7),
    threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
    min_count: int = 3,
    grouping: str = "class",
) -> list[ShortcutWarning]:
    """Warn when more than ``threshold`` of a class's maps peak in one grid cell or off the body,
    or are empty.

    An empty map (no positive mass) has no peak: it counts for neither of the first two, and
    a class whose maps are mostly empty gets an ``"empty"`` warning instead (fostering a
    Grad-CAM map can drive it to zero, where the penalty's gradient vanishes).

    ``labels`` are class indices (true or predicted) or one-hot rows; classes with fewer than
    ``min_count`` maps are not judged. ``grouping`` names how the maps were grouped in the
    message (e.g. ``"predicted class"``: the report groups maps by the class they explain).
    ``str(warning)`` is a one-line explanation.
    """
    values = _maps_np(maps)
    labels = _label_indices(labels, len(values))
    cells = peak_cells(values, grid)
    empty = np.maximum(values, 0).reshape(len(values), -1).sum(axis=1) <= EPSILON  # as has_mass
    outside_peak = None
    if foreground is not None:
        fg = _match(foreground, values.shape, "foreground")
        rows, cols = _argmax_yx(values)
        outside_peak = ~fg[np.arange(len(values)), rows, cols] & ~empty
    warnings: list[ShortcutWarning] = []
    for label in np.unique(labels):
        members = labels == label
        total = int(members.sum())
        if total < min_count:
            continue
        name = class_names[label] if class_names is not None else str(label)
        blank = int((members & empty).sum())
        if blank / total > threshold:
            warnings.append(
                ShortcutWarning(
                    name,
                    "empty",
                    blank,
                    total,
                    None,
                    f"{grouping} {name}: {blank}/{total} maps are empty (no positive evidence "
                    "for the class anywhere); a fostered Grad-CAM map that reached zero "
                    "cannot recover (its penalty has no gradient there)",
                )
            )
        peaked = cells[members & ~empty].tolist()
        cell, count = Counter(map(tuple, peaked)).most_common(1)[0] if peaked else ((0, 0), 0)
        if count / total > threshold:
            warnings.append(
                ShortcutWarning(
                    name,
                    "same_cell",
                    count,
                    total,
                    (int(cell[0]), int(cell[1])),
                    f"{grouping} {name}: {count}/{total} maps peak in grid cell (row {cell[0]}, "
                    f"col {cell[1]}) of {grid[0]}x{grid[1]}; the model may use a fixed "
                    "location (scanner table, text, border) instead of the anatomy",
                )
            )
        if outside_peak is not None:
            off = int(outside_peak[members].sum())
            if off / total > threshold:
                warnings.append(
                    ShortcutWarning(
                        name,
                        "outside_foreground",
                        off,
                        total,
                        None,
                        f"{grouping} {name}: {off}/{total} maps peak outside the body/brain; "
                        "the model may rely on background shortcuts",
                    )
                )
    return warnings


# ---------------------------------------------------------------------------------- summary


def _mean_std(values) -> tuple[float | None, float | None]:
    values = np.ma.asarray(values)
    if values.count() == 0:
        return None, None
    data = values.compressed().astype(np.float64)
    return float(data.mean()), float(data.std())


def summarize_maps(
    maps,
    masks=None,
    foreground=None,
    *,
    labels=None,
    class_names: Sequence[str] | None = None,
    tolerance_px: float = 0,
    grid: tuple[int, int] = (7, 7),
) -> dict[str, Any]:
    """All statistics for a batch of maps.

    Returns ``{"n_maps", "per_image": {name: [B] array}, "mean": {name: float|None},
    "std": {...}}``; with ``masks`` also ``"n_with_mask"`` and ``"chance"`` (see
    ``chance_baselines``); with ``foreground`` and ``labels`` also ``"warnings"`` (list of str).
    Mask-based per-image arrays are masked arrays (empty masks not applicable); ``to_jsonable``
    turns the summary into plain JSON types.
    """
    values = _as_maps(maps)
    snr = cam_snr(values)
    per_image: dict[str, Any] = {
        "entropy": normalized_entropy(values).numpy(),
        "radius": cam_radius(values).numpy(),
        "snr": snr.numpy(),
        "snr_db": snr_db(snr).numpy(),
    }
    summary: dict[str, Any] = {"n_maps": int(values.shape[0])}
    if masks is not None:
        per_image["pointing_game"] = pointing_game(values, masks, tolerance_px=tolerance_px)
        per_image["energy_in_mask"] = energy_in_mask(values, masks)
        per_image["cam_iou"] = cam_iou(values, masks)
        matched = _match(masks, tuple(values.shape), "masks")
        summary["n_with_mask"] = int(matched.any(axis=(1, 2)).sum())
        summary["chance"] = chance_baselines(matched, tolerance_px=tolerance_px)
    if foreground is not None:
        per_image["outside_fraction"] = outside_fraction(values, foreground)
    if labels is not None:
        summary["warnings"] = [
            str(w)
            for w in shortcut_warnings(
                values, labels, foreground, grid=grid, class_names=class_names
            )
        ]
    stats = {name: _mean_std(v) for name, v in per_image.items()}
    summary["mean"] = {name: s[0] for name, s in stats.items()}
    summary["std"] = {name: s[1] for name, s in stats.items()}
    summary["per_image"] = per_image
    return summary


def to_jsonable(value: Any) -> Any:
    """Arrays -> lists (masked entries -> None), NumPy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ma.MaskedArray):
        return value.astype(np.float64).tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, tf.Tensor):
        return value.numpy().tolist()
    return value


__all__ = [
    "EPSILON",
    "MAX_SNR",
    "PAPER_TOLERANCE_PX",
    "PEAK_THRESHOLD",
    "ShortcutWarning",
    "cam_centroid",
    "cam_iou",
    "cam_radius",
    "cam_snr",
    "chance_baselines",
    "energy_in_mask",
    "mass_outside",
    "normalized_entropy",
    "outside_fraction",
    "peak_cells",
    "peak_region",
    "pointing_game",
    "shortcut_warnings",
    "snr_db",
    "summarize_maps",
    "to_distribution",
    "to_jsonable",
    "upsample_maps",
]
