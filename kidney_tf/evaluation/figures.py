"""Report figures (PNG, matplotlib Agg, thread-safe: no pyplot state), each written atomically.

Every ``plot_*`` function takes plain NumPy data and an output path, returns the ``Path`` written,
and never opens a window. Images are ``uint8``/``float`` ``[H, W, 3]`` (or ``[H, W]``) in 0..255;
CAMs are ``[H, W]`` in [0, 1] and are resized to the image when their grid is coarser.

Training curves (``plot_history``) and the figure helpers live in :mod:`kidney_tf.utils.plots`,
below training and evaluation alike.

Usage::

    from kidney_tf.evaluation.figures import plot_confusion_matrix
    plot_confusion_matrix(matrix, ["Cyst", "Normal", "Stone", "Tumor"], "reports/cm.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Figures are built with matplotlib.figure.Figure (no pyplot), so no backend is forced on the
# user: a notebook keeps its inline backend.
import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import MaxNLocator

from kidney_tf.utils.plots import new_figure, save_figure

CAM_COLORMAP = "jet"
OVERLAY_ALPHA = 0.45
_CLASS_COLORS = colormaps["tab10"]


# --------------------------------------------------------------------------------------- helpers
def to_display_image(image) -> np.ndarray:
    """``[H, W, 3]``/``[H, W]``/``[H, W, 1]`` in 0..255 -> ``uint8 [H, W, 3]`` for ``imshow``."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"expected an image [H, W, 3], got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float32)), 0, 255).astype(np.uint8)
    return img


def resize_map(cam, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a 2-D map to ``size=(H, W)`` (OpenCV), float32."""
    import cv2

    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim == 3 and cam.shape[-1] == 1:
        cam = cam[..., 0]
    if cam.shape == tuple(size):
        return cam
    return cv2.resize(cam, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def overlay_cam(image, cam, *, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend a ``jet``-coloured CAM (normalised to its max) over a grayscale copy of ``image``."""
    img = to_display_image(image).astype(np.float32) / 255.0
    gray = np.repeat(img.mean(axis=-1, keepdims=True), 3, axis=-1)
    heat = resize_map(cam, img.shape[:2])
    peak = float(heat.max()) if heat.size else 0.0
    heat = np.clip(heat / peak, 0, 1) if peak > 0 else np.zeros_like(heat)
    colored = colormaps[CAM_COLORMAP](heat)[..., :3]
    blended = (1 - alpha) * gray + alpha * colored
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)


LESION_COLOR = "lime"


def draw_outline(ax, mask) -> None:
    """The lesion's outline on ``ax`` (nothing for a missing or empty mask)."""
    if mask is None:
        return
    mask = np.asarray(mask, np.float32).reshape(np.shape(mask)[:2])
    if mask.any():
        ax.contour(mask > 0.5, levels=[0.5], colors=LESION_COLOR, linewidths=0.9)


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


# ---------------------------------------------------------------------------- evaluation figures
def plot_confusion_matrix(
    confusion: np.ndarray, class_names: Sequence[str], out: str | os.PathLike, *, title: str = ""
) -> Path:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(confusion, dtype=np.int64)
    n = len(class_names)
    size = max(4.0, 0.9 * n + 2.5)
    fig = new_figure(2 * size + 0.5, size)
    ax_counts, ax_norm = fig.subplots(1, 2)
    ConfusionMatrixDisplay(cm, display_labels=list(class_names)).plot(
        ax=ax_counts, cmap="Blues", colorbar=False, values_format="d"
    )
    ax_counts.set_title("counts")
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    ConfusionMatrixDisplay(np.nan_to_num(norm), display_labels=list(class_names)).plot(
        ax=ax_norm, cmap="Blues", colorbar=False, values_format=".2f"
    )
    ax_norm.set_title("row-normalised (recall)")
    for ax in (ax_counts, ax_norm):
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(title or f"Confusion matrix ({int(cm.sum())} images)")
    return save_figure(fig, out)


def plot_samples(
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    out: str | os.PathLike,
    *,
    predictions: Sequence[int] | None = None,
    probabilities: Sequence[float] | None = None,
    per_class: int = 4,
    title: str = "Samples per class",
) -> Path:
    """Grid with one row per class: up to ``per_class`` images, titled true/pred (green/red)."""
    rows = [
        [i for i, y in enumerate(labels) if int(y) == c][:per_class]
        for c in range(len(class_names))
    ]
    ncols = max(1, max((len(r) for r in rows), default=1))
    fig = new_figure(2.1 * ncols + 0.4, 2.3 * len(class_names) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(class_names), ncols, squeeze=False))
    for c, idx in enumerate(rows):
        for j in range(ncols):
            ax = axes[c, j]
            _off(ax)
            if j >= len(idx):
                ax.axis("off")
                continue
            i = idx[j]
            ax.imshow(to_display_image(images[i]))
            text = f"true: {class_names[int(labels[i])]}"
            color = "black"
            if predictions is not None:
                pred = int(predictions[i])
                text += f"\npred: {class_names[pred]}"
                if probabilities is not None:
                    text += f" ({float(probabilities[i]):.2f})"
                color = "tab:green" if pred == int(labels[i]) else "tab:red"
            ax.set_title(text, fontsize=8, color=color)
        if not idx:
            axes[c, 0].set_title(f"{class_names[c]}: no images", fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out)


def plot_cam_overlays(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    out: str | os.PathLike,
    *,
    titles: Sequence[str | Sequence[str]] | None = None,
    method: str = "gradcam++",
    masks: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """One row per image: image | heatmap (with colour bar) | overlay.

    ``titles[i]`` labels row ``i``: a string (over the image) or up to three strings (one per
    column, e.g. file and labels | entropy/radius/SNR | outside fraction). ``masks[i]`` (lesion
    mask at the image's size, or None) is outlined on the image and the overlay.
    """
    n = len(images)
    if n == 0:
        raise ValueError("plot_cam_overlays needs at least one image")
    if len(maps) != n:
        raise ValueError(f"{n} images but {len(maps)} maps")
    fig = new_figure(8.4, 2.9 * n + 0.6)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        img = to_display_image(images[i])
        heat = resize_map(maps[i], img.shape[:2])
        axes[i, 0].imshow(img)
        im = axes[i, 1].imshow(heat, cmap=CAM_COLORMAP, vmin=0.0, vmax=max(float(heat.max()), 1e-6))
        fig.colorbar(im, ax=axes[i, 1], fraction=0.046, pad=0.02)
        axes[i, 2].imshow(overlay_cam(img, maps[i]))
        if masks is not None:
            draw_outline(axes[i, 0], masks[i])
            draw_outline(axes[i, 2], masks[i])
        for ax in axes[i]:
            _off(ax)
        row = titles[i] if titles is not None else ()
        for ax, text in zip(axes[i], [row] if isinstance(row, str) else list(row)[:3]):
            ax.set_title(text, fontsize=8)
    outline = (
        " (green: lesion outline)"
        if masks is not None and any(m is not None and np.asarray(m).any() for m in masks)
        else ""
    )
    fig.suptitle(f"{method} class activation maps\ncolumns: image | heatmap | overlay{outline}")
    return save_figure(fig, out)


_STAT_LABELS = {
    "entropy": "normalised entropy (lower = more focused)",
    "radius": "radius (lower = more compact)",
    "snr_db": "SNR [dB] (higher = more peaked)",
    "snr": "SNR (higher = more peaked)",
    "outside_fraction": "mass outside body (lower = better)",
    "energy_in_mask": "energy in lesion mask",
    "iou": "IoU with lesion mask",
}


def plot_cam_statistics(
    stats: Mapping[str, np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    out: str | os.PathLike,
    *,
    method: str = "gradcam++",
    keys: Sequence[str] = ("entropy", "radius", "snr_db", "outside_fraction"),
) -> Path:
    """Histograms of per-image CAM statistics, one step curve per class, dashed class means."""
    keys = [k for k in keys if k in stats and np.isfinite(np.asarray(stats[k], float)).any()]
    if not keys:
        raise ValueError("no CAM statistics to plot")
    labels = np.asarray(labels)
    fig = new_figure(4.0 * len(keys), 3.4)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        values = np.asarray(stats[key], dtype=float)
        finite = values[np.isfinite(values)]
        lo, hi = float(finite.min()), float(finite.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 21)
        for c, name in enumerate(class_names):
            v = values[(labels == c) & np.isfinite(values)]
            if v.size == 0:
                continue
            color = _CLASS_COLORS(c % 10)
            ax.hist(
                v,
                bins=bins,
                histtype="step",
                linewidth=1.6,
                color=color,
                label=f"{name} (n={v.size})",
            )
            ax.axvline(v.mean(), color=color, linestyle="--", linewidth=1)
        ax.set_xlabel(_STAT_LABELS.get(key, key))
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{method} CAM statistics per true class (dashed: class mean)")
    return save_figure(fig, out)


def plot_reliability_diagram(
    reliability: Mapping[str, Any] | Any,
    out: str | os.PathLike,
    *,
    calibrated: Mapping[str, Any] | Any | None = None,
    temperature: float | None = None,
) -> Path:
    """Accuracy vs confidence per bin (bars) against the diagonal, plus the confidence histogram.

    ``reliability`` is a ``ReliabilityData`` or its ``to_dict()``; pass the temperature-scaled
    one as ``calibrated`` to draw both.
    """
    panels = [("uncalibrated" if calibrated is not None else "model", reliability)]
    if calibrated is not None:
        panels.append((f"temperature-scaled (T={_fmt(temperature, 2)})", calibrated))
    fig = new_figure(4.2 * len(panels), 5.6)
    axes = fig.subplots(2, len(panels), squeeze=False, height_ratios=[3, 1])
    for j, (name, rel) in enumerate(panels):
        rel = rel if isinstance(rel, Mapping) else rel.to_dict()
        edges = np.asarray(rel["bin_edges"], float)
        acc = np.array([np.nan if v is None else v for v in rel["bin_accuracy"]], float)
        conf = np.array([np.nan if v is None else v for v in rel["bin_confidence"]], float)
        counts = np.asarray(rel["bin_counts"], float)
        width = np.diff(edges)
        centers = edges[:-1] + width / 2
        ax = axes[0, j]
        ok = counts > 0
        ax.bar(
            centers[ok],
            acc[ok],
            width=width[ok],
            edgecolor="black",
            color="tab:blue",
            label="accuracy",
        )
        ax.bar(
            centers[ok], (conf - acc)[ok], bottom=acc[ok], width=width[ok],
            color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", label="gap",
        )  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}\nECE={_fmt(rel['ece'], 4)}  MCE={_fmt(rel['mce'], 4)}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        axc = axes[1, j]
        axc.bar(centers, counts, width=width, color="gray", edgecolor="black")
        axc.set_xlim(0, 1)
        axc.set_xlabel("confidence (top-class probability)")
        axc.set_ylabel("count")
    fig.suptitle(f"Reliability diagram ({len(edges) - 1} bins)")
    return save_figure(fig, out)


# ---------------------------------------------------------------------------- dataset figures
def plot_class_distribution(
    counts: Mapping[str, Mapping[str, int]],
    out: str | os.PathLike,
    *,
    title: str = "Class distribution",
) -> Path:
    """Grouped bar chart: one group per class, one bar per split (``counts[split][class]``)."""
    splits = [s for s in counts if sum(counts[s].values()) > 0]
    if not splits:
        raise ValueError("no images to plot")
    classes = list(dict.fromkeys(c for s in splits for c in counts[s]))
    x = np.arange(len(classes))
    width = 0.8 / len(splits)
    fig = new_figure(max(5.0, 1.3 * len(classes) * max(1, len(splits) / 2) + 2), 3.8)
    ax = fig.subplots()
    for j, split in enumerate(splits):
        values = [int(counts[split].get(c, 0)) for c in classes]
        bars = ax.bar(
            x + (j - (len(splits) - 1) / 2) * width,
            values,
            width,
            label=f"{split} (n={sum(values)})",
        )
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, classes)
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, out)


def plot_image_grid(
    images: Sequence[np.ndarray],
    out: str | os.PathLike,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    title: str = "",
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Generic grid of images (samples per class, augmentation examples...)."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to plot")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure(2.2 * ncols + 0.4, 2.3 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        _off(ax)
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(to_display_image(images[k]))
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)


def plot_crop_pairs(
    originals: Sequence[np.ndarray],
    cropped: Sequence[np.ndarray],
    out: str | os.PathLike,
    *,
    boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
    titles: Sequence[str] | None = None,
    title: str = "Before / after crop",
) -> Path:
    """Rows of (original with the crop box drawn | cropped result)."""
    from matplotlib.patches import Rectangle

    n = len(originals)
    if n == 0 or len(cropped) != n:
        raise ValueError("plot_crop_pairs needs as many cropped images as originals (at least one)")
    fig = new_figure(5.2, 2.6 * n + 0.4)
    axes = fig.subplots(n, 2, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(to_display_image(originals[i]))
        box = boxes[i] if boxes is not None else None
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            axes[i, 0].add_patch(
                Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor="lime",
                    linewidth=1.5,
                )
            )
        axes[i, 1].imshow(to_display_image(cropped[i]))
        for ax in axes[i]:
            _off(ax)
        label = titles[i] if titles is not None else ""
        axes[i, 0].set_title(
            f"{label} original {originals[i].shape[1]}x{originals[i].shape[0]}".strip(), fontsize=8
        )
        axes[i, 1].set_title(f"cropped {cropped[i].shape[1]}x{cropped[i].shape[0]}", fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------- comparison figure
def plot_paired_overlays(
    images: Sequence[np.ndarray],
    maps_a: Sequence[np.ndarray],
    maps_b: Sequence[np.ndarray],
    out: str | os.PathLike,
    *,
    labels: tuple[str, str] = ("A", "B"),
    row_titles: Sequence[str] | None = None,
    titles_a: Sequence[str] | None = None,
    titles_b: Sequence[str] | None = None,
    method: str = "gradcam++",
    masks: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """Same images, two models: image | overlay A | overlay B per row (the paper's qualitative figure).

    ``masks[i]`` (lesion mask at the image's size, or None) is outlined in every column.
    """
    n = len(images)
    if n == 0:
        raise ValueError("no paired images to plot")
    fig = new_figure(8.0, 2.7 * n + 0.5)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(to_display_image(images[i]))
        axes[i, 1].imshow(overlay_cam(images[i], maps_a[i]))
        axes[i, 2].imshow(overlay_cam(images[i], maps_b[i]))
        for ax in axes[i]:
            if masks is not None:
                draw_outline(ax, masks[i])
            _off(ax)
        axes[i, 0].set_title(
            row_titles[i] if row_titles is not None else "", fontsize=8, loc="left"
        )
        axes[i, 1].set_title(
            f"{labels[0]}" + (f"\n{titles_a[i]}" if titles_a is not None else ""), fontsize=8
        )
        axes[i, 2].set_title(
            f"{labels[1]}" + (f"\n{titles_b[i]}" if titles_b is not None else ""), fontsize=8
        )
    fig.suptitle(f"{method}: {labels[0]} vs {labels[1]} on the same images")
    return save_figure(fig, out)


__all__ = [
    "draw_outline",
    "overlay_cam",
    "plot_cam_overlays",
    "plot_cam_statistics",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_crop_pairs",
    "plot_image_grid",
    "plot_paired_overlays",
    "plot_reliability_diagram",
    "plot_samples",
    "resize_map",
    "save_figure",
    "to_display_image",
]
