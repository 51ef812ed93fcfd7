"""Grad-CAM++ entropy and radius at the CAM layer's native grid (no upsampling).

``evaluate_model`` measures CAMs upsampled bilinearly to the input size. Upsampling spreads even a
single active cell over its neighbours, which puts a floor under the normalised entropy (one
active cell of a 4×4 grid upsampled to 128 px scores ≈ 0.875; of 7×7 at 224 px ≈ 0.76), so a
sharper map can only move it a little. The fostering penalty is the entropy of the exact CAM at
the native grid; this module measures Grad-CAM++ on that same grid, so the two can be compared.

Usage::

    stats = native_grid_statistics(model, "runs/x/baseline/split.csv", data_root="runs/x/data")
    stats["entropy_native"], stats["radius_native"]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def native_grid_statistics(
    model,
    split_csv: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None,
    crop: str | None,
    split: str = "test",
    max_images: int | None = None,
    batch_size: int = 16,
    methods: tuple[str, ...] = ("gradcam++", "gradcam"),
) -> dict[str, Any]:
    """Mean entropy/radius of the predicted class's map at the native grid on one split.

    Keys: ``entropy_native``/``radius_native`` for the first method (Grad-CAM++, the paper's),
    ``entropy_native_<method>``/``radius_native_<method>`` for the others (Grad-CAM equals the
    exact CAM the fostering penalty sharpens, for a GAP → Dense head), plus ``native_images``
    and ``native_grid``.
    """
    from kidney_tf.data.pipeline import build_datasets
    from kidney_tf.evaluation.report import model_input_size
    from kidney_tf.explain.cams import CamExplainer
    from kidney_tf.explain.statistics import cam_radius, normalized_entropy

    size = model_input_size(model)
    bundle = build_datasets(
        split_csv,
        image_size=size[0] if size else 224,
        batch_size=batch_size,
        split="folders",
        crop=crop,
        augment=False,
        cache=False,
        root=data_root,
        class_names=getattr(model, "class_names", None) or None,
    )
    dataset = bundle.dataset(split)
    if dataset is None:
        raise ValueError(f"{split_csv}: the {split!r} split is empty")
    explainers = {m: CamExplainer(model, method=m, batch_size=batch_size) for m in methods}
    values: dict[str, list[np.ndarray]] = {}
    grid, n = None, 0
    for images, _labels in dataset:
        images = np.asarray(images, np.float32)
        if max_images is not None:
            images = images[: max(0, max_images - n)]
        if not len(images):
            break
        for i, (method, explainer) in enumerate(explainers.items()):
            result = explainer.explain(images, upsample=False)
            grid = result.native_shape
            suffix = "" if i == 0 else f"_{method.replace('+', 'p')}"
            values.setdefault(f"entropy_native{suffix}", []).append(
                normalized_entropy(result.maps).numpy()
            )
            values.setdefault(f"radius_native{suffix}", []).append(cam_radius(result.maps).numpy())
        n += len(images)
    out: dict[str, Any] = {k: float(np.concatenate(v).mean()) for k, v in values.items()}
    out["native_images"] = n
    out["native_grid"] = list(grid) if grid else None
    return out


def upsampled_entropy_floor(grid: tuple[int, int], size: tuple[int, int]) -> float:
    """Normalised entropy of the sharpest possible map after upsampling: one active cell.

    Computed exactly as the evaluation computes CAMs (tf-keras-vis: ``scipy.ndimage.zoom``
    order 1, then min-max normalisation) for a cell away from the border.

    Usage: ``upsampled_entropy_floor((4, 4), (128, 128))  # ≈ 0.875``.
    """
    from scipy.ndimage import zoom

    from kidney_tf.explain.statistics import normalized_entropy

    cell = np.zeros(grid, np.float32)
    cell[grid[0] // 2, grid[1] // 2] = 1.0
    up = zoom(cell, (size[0] / grid[0], size[1] / grid[1]), order=1)
    up = (up - up.min()) / max(float(up.max() - up.min()), 1e-12)
    return float(normalized_entropy(up[np.newaxis]).numpy()[0])
