"""Faithfulness of saliency maps: deletion and insertion curves (Petsiuk et al., RISE, 2018).

For each image the pixels are ranked by the map, most salient first (ties broken at random,
seeded). In ``steps`` equal steps a growing fraction ``k/steps`` of pixels is

- **deleted**: replaced by the baseline image — a faithful map makes the class probability fall
  fast, so a *low* deletion AUC is good;
- **inserted**: copied from the image into the baseline — a faithful map makes it rise fast, so a
  *high* insertion AUC is good.

The score is the model's output (the softmax probability) for the explained class (the class
predicted on the intact image unless ``class_index`` is given). AUC is the trapezoidal area under
the score curve over the fraction of pixels in [0, 1]. Every map is compared with the same curves
for a uniformly random pixel order (``random_*``): a map is only informative where it beats it.

Baselines (``baseline=``): ``"blur"`` (default, for both curves; Gaussian blur with sigma
``5 · H / 224`` px, as in RISE's insertion — it removes detail while keeping the intensity
distribution, so the model is not probed with out-of-distribution black holes), ``"mean"`` (each
image's mean colour) or ``"zero"`` (black, RISE's deletion).

All steps of a chunk of images are built as one array and scored by one ``model.predict`` call.

Usage::

    from kidney_tf.explain.faithfulness import deletion_insertion
    result = deletion_insertion(model, images, maps, steps=16)
    result.summary()  # {"deletion_auc": ..., "random_deletion_auc": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BASELINES = ("blur", "mean", "zero")


@dataclass
class FaithfulnessResult:
    """Per-image AUCs ``[B]`` and curves ``[B, steps + 1]`` at ``fractions`` of pixels."""

    fractions: np.ndarray
    class_index: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    random_deletion_curve: np.ndarray
    random_insertion_curve: np.ndarray
    baseline: str = "blur"
    aucs: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.aucs = {
            name: auc(getattr(self, f"{name}_curve"), self.fractions)
            for name in ("deletion", "insertion", "random_deletion", "random_insertion")
        }

    @property
    def deletion_auc(self) -> np.ndarray:
        return self.aucs["deletion"]

    @property
    def insertion_auc(self) -> np.ndarray:
        return self.aucs["insertion"]

    @property
    def random_deletion_auc(self) -> np.ndarray:
        return self.aucs["random_deletion"]

    @property
    def random_insertion_auc(self) -> np.ndarray:
        return self.aucs["random_insertion"]

    def summary(self) -> dict[str, float | int | str]:
        """Mean AUCs (``<name>_auc``), the number of images and the baseline used."""
        out: dict[str, float | int | str] = {
            f"{name}_auc": float(values.mean()) for name, values in self.aucs.items()
        }
        out["n"] = int(len(self.class_index))
        out["baseline"] = self.baseline
        return out


def auc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Trapezoidal area under each curve ``[B, S]`` over ``fractions`` ``[S]``: ``[B]``."""
    return np.trapezoid(curves, fractions, axis=-1).astype(np.float32)


def baseline_images(images: np.ndarray, baseline: str = "blur") -> np.ndarray:
    """The image each pixel is replaced by (deletion) or starts from (insertion)."""
    images = np.asarray(images, np.float32)
    if baseline == "zero":
        return np.zeros_like(images)
    if baseline == "mean":
        return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).copy()
    if baseline == "blur":
        import cv2

        sigma = 5.0 * images.shape[1] / 224.0
        return np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in images]).reshape(
            images.shape
        )
    raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")


def _ranks(maps: np.ndarray, rng: np.random.Generator, *, random_order: bool) -> np.ndarray:
    """Rank of each pixel, 0 = most salient: int ``[B, H*W]``."""
    flat = maps.reshape(len(maps), -1)
    ranks = np.empty(flat.shape, np.int64)
    positions = np.arange(flat.shape[1])
    for i, values in enumerate(flat):  # one sort per image
        tie_break = rng.random(values.shape)
        order = rng.permutation(values.size) if random_order else np.lexsort((tie_break, -values))
        ranks[i, order] = positions
    return ranks


def _curves(model, images, base, ranks, fractions, class_index, batch_size) -> np.ndarray:
    """Deletion and insertion curves ``[2, B, S]`` for the given pixel ranks."""
    n, h, w = images.shape[:3]
    thresholds = np.round(fractions * h * w).astype(np.int64)
    steps = len(fractions)
    per_chunk = max(1, batch_size // (2 * steps))
    out = np.empty((2, n, steps), np.float32)
    for start in range(0, n, per_chunk):
        sl = slice(start, min(start + per_chunk, n))
        # [c, S, H, W, 1]: pixel belongs to the top-k at step s.
        top = (ranks[sl, None, :] < thresholds[None, :, None]).reshape(-1, steps, h, w, 1)
        img, bas = images[sl, None], base[sl, None]
        deleted = np.where(top, bas, img)
        inserted = np.where(top, img, bas)
        batch = np.concatenate([deleted, inserted]).reshape(-1, *images.shape[1:])
        probs = np.asarray(model.predict(batch, batch_size=batch_size, verbose=0))
        c = sl.stop - sl.start
        probs = probs.reshape(2, c, steps, -1)
        out[:, sl] = np.take_along_axis(probs, class_index[None, sl, None, None], axis=-1)[..., 0]
    return out


def deletion_insertion(
    model,
    images,
    maps,
    *,
    class_index=None,
    steps: int = 16,
    baseline: str = "blur",
    batch_size: int = 64,
    seed: int = 0,
) -> FaithfulnessResult:
    """Deletion/insertion curves and AUCs of ``maps`` for ``images``, and a random-order baseline.

    ``images`` ``[B, H, W, C]`` as the model takes them; ``maps`` ``[B, h, w]`` (resized bilinearly
    to ``H x W`` if needed); ``batch_size`` bounds the images per ``model.predict`` call.
    """
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected images of shape [B, H, W, C], got {images.shape}")
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3 or len(maps) != len(images):
        raise ValueError(f"expected {len(images)} maps [B, H, W], got {maps.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if maps.shape[1:] != images.shape[1:3]:
        maps = tf.image.resize(maps[..., None], images.shape[1:3]).numpy()[..., 0]
    maps = np.nan_to_num(maps)
    base = baseline_images(images, baseline)
    if class_index is None:
        probs = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
        class_index = probs.argmax(axis=1)
    class_index = np.asarray(class_index, np.int64).reshape(-1)
    if class_index.size not in (1, len(images)):
        raise ValueError(f"class_index: {class_index.size} indices for {len(images)} images")
    class_index = np.broadcast_to(class_index, (len(images),))
    num_classes = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else None
    if class_index.min() < 0 or (num_classes and class_index.max() >= num_classes):
        raise ValueError(f"class_index out of range: {sorted(set(class_index.tolist()))}")
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rng = np.random.default_rng(seed)
    saliency = _curves(
        model,
        images,
        base,
        _ranks(maps, rng, random_order=False),
        fractions,
        class_index,
        batch_size,
    )
    random = _curves(
        model,
        images,
        base,
        _ranks(maps, rng, random_order=True),
        fractions,
        class_index,
        batch_size,
    )
    return FaithfulnessResult(
        fractions=fractions,
        class_index=np.array(class_index),
        deletion_curve=saliency[0],
        insertion_curve=saliency[1],
        random_deletion_curve=random[0],
        random_insertion_curve=random[1],
        baseline=baseline,
    )


__all__ = ["BASELINES", "FaithfulnessResult", "auc", "baseline_images", "deletion_insertion"]
