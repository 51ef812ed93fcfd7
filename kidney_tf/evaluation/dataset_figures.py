"""Dataset figures for papers: class distribution per split, samples, crop pairs, augmentation.

``dataset_figures(source, out)`` writes, from a class-folder tree or a manifest CSV:

- ``class_distribution.png``: images per class and split, split exactly as training splits them
  (``kidney_tf.data.splits.split_records`` with the same method, fractions and seed);
- ``samples.png``: ``per_class`` original images of each class;
- ``crop_pairs.png`` (with ``crop``): each sample before (crop box drawn) and after the brain or
  body crop of ``kidney_tf.data.crop``;
- ``augmentation.png``: each sample (cropped, resized) and ``n_augment`` training-time
  augmentations from ``kidney_tf.data.augment`` (seeded);
- ``dataset_figures.json``: the counts, split method and files written.

Usage::

    from kidney_tf.evaluation.dataset_figures import dataset_figures
    dataset_figures("brain_mri/Training", "figures/", crop="brain", image_size=240)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kidney_tf.evaluation import figures as fig
from kidney_tf.recipes import parse_crop
from kidney_tf.utils.io import ensure_writable_dir, write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _crop(image: np.ndarray, mode: str, size: int):
    from kidney_tf.data.crop import crop_image

    return crop_image(image, mode, size=size)


def dataset_figures(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    crop: str | None = None,
    image_size: int = 240,
    split: str = "auto",
    seed: int = 42,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    per_class: int = 1,
    n_augment: int = 4,
    augment: Any = None,
) -> dict[str, Any]:
    """Write the dataset figures listed in the module docstring; return the summary dict.

    ``augment`` is an ``AugmentConfig``/dict (default: the paper recipe, seeded with ``seed``).
    """
    from kidney_tf.data.decode import read_image
    from kidney_tf.data.sources import load_source
    from kidney_tf.data.splits import split_records

    crop = parse_crop(crop)
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    scan = load_source(source)
    if not scan.records:
        raise ValueError(f"{source}: no readable images found")
    out = ensure_writable_dir(out_dir)
    names = list(scan.class_names)
    written: dict[str, str] = {}

    splits = split_records(
        scan.records,
        method=split,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    counts = splits.counts(names)
    fig.plot_class_distribution(
        counts,
        out / "class_distribution.png",
        title=f"Class distribution per split ({splits.method} split, seed {seed})",
    )
    written["class_distribution"] = "class_distribution.png"

    chosen = []
    for name in names:
        records = sorted((r for r in scan.records if r.label == name), key=lambda r: r.path)
        chosen += records[:per_class]
    originals = [read_image(r.path) for r in chosen]
    titles = [
        f"{r.label}\n{Path(r.path).name} ({img.shape[1]}x{img.shape[0]})"
        for r, img in zip(chosen, originals)
    ]
    fig.plot_image_grid(
        originals,
        out / "samples.png",
        titles=titles,
        ncols=max(per_class, min(4, len(names))),
        title="One sample per class" if per_class == 1 else "Samples per class",
    )
    written["samples"] = "samples.png"

    prepared = [_resize(img, image_size) for img in originals]
    crop_info = []
    if crop is not None:
        results = [_crop(img, crop, image_size) for img in originals]
        labels = []
        for r, res in zip(chosen, results):
            note = f" (fallback: {res.reason})" if res.fallback else ""
            labels.append(f"{r.label}{note}")
            crop_info.append(
                {
                    "file": r.path,
                    "box": list(res.box) if res.box else None,
                    "fallback": bool(res.fallback),
                }
            )
        fig.plot_crop_pairs(
            originals,
            [res.image for res in results],
            out / "crop_pairs.png",
            boxes=[None if res.fallback else res.box for res in results],
            titles=labels,
            title=f"Before / after the {crop} crop ({image_size} px)",
        )
        written["crop_pairs"] = "crop_pairs.png"
        prepared = [res.image for res in results]

    if n_augment > 0:
        written["augmentation"] = _augmentation_figure(
            prepared, chosen, out, n_augment, augment, seed
        )

    summary = {
        "source": str(source),
        "class_names": names,
        "counts": counts,
        "split_method": splits.method,
        "split_reason": splits.reason,
        "seed": seed,
        "n_images": len(scan.records),
        "bad_files": [{"path": b.path, "reason": b.reason} for b in scan.bad_files],
        "crop": crop,
        "crop_examples": crop_info,
        "image_size": image_size,
        "figures": written,
    }
    write_json_atomic(out / "dataset_figures.json", summary)
    log.info("dataset figures written to %s", out)
    return summary


def _augmentation_figure(images, records, out: Path, n_augment: int, augment, seed: int) -> str:
    from kidney_tf.data.augment import AugmentConfig, build_augmenter

    if augment is None:
        config = AugmentConfig(seed=seed)
    elif isinstance(augment, AugmentConfig):
        config = augment
    else:
        config = AugmentConfig.from_dict(dict(augment))
    augmenter = build_augmenter(config)
    grid, titles = [], []
    for image, record in zip(images, records):
        batch = np.repeat(np.asarray(image, np.float32)[None], n_augment, axis=0)
        augmented = np.asarray(augmenter(batch, training=True))
        grid.append(image)
        titles.append(f"{record.label}: input")
        for k in range(n_augment):
            grid.append(augmented[k])
            titles.append(f"augmented {k + 1}")
    fig.plot_image_grid(
        grid,
        out / "augmentation.png",
        titles=titles,
        ncols=n_augment + 1,
        title="Training-time augmentation (" + ", ".join(_describe(config)) + ")",
    )
    return "augmentation.png"


def _describe(config) -> list[str]:
    parts = []
    if config.horizontal_flip:
        parts.append("h-flip")
    if config.vertical_flip:
        parts.append("v-flip")
    for name, unit in (
        ("rotation", "°"),
        ("zoom", ""),
        ("translation", ""),
        ("brightness", ""),
        ("contrast", ""),
    ):
        value = getattr(config, name)
        if value:
            parts.append(f"{name} ±{value:g}{unit}")
    if config.randaugment:
        parts.append("RandAugment")
    return parts or ["none"]


__all__ = ["dataset_figures"]
