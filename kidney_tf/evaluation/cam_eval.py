"""Streaming CAM evaluation: maps, per-image statistics and their aggregates, batch by batch.

Every statistic comes from ``kidney_tf.explain.statistics`` (the single definition); this module
only streams batches through ``kidney_tf.explain.cams.CamExplainer``, keeps what the report needs
(per-image values, a few example images, small map thumbnails for the shortcut check) and
aggregates. Maps are upsampled to the model input size before the statistics, as the papers do;
foreground (body/brain) masks come from ``kidney_tf.data.crop``.

Usage::

    acc = CamAccumulator(model, class_names, method="gradcam++", foreground="body")
    for images, labels, masks in batches:
        acc.add(images, true=labels, pred=preds, files=ids, masks=masks)
    block = acc.summary()  # the "cam" block of metrics.json
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kidney_tf.evaluation.schema import CAM_STATISTICS, LOCALISATION_STATISTICS
from kidney_tf.recipes import CAM_TARGETS, check_choice, parse_crop
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

THUMBNAIL_SIZE = 64  # maps kept for the shortcut check, per image (float16)
SAMPLE_SIZE = 128  # images kept for the sample grid / cam_examples.npz
# summarize_maps' per-image key -> metrics.json key
_RENAME = {"cam_iou": "iou"}


def foreground_function(kind: str | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """``body_mask``/``brain_mask`` from ``kidney_tf.data.crop`` for ``kind``; None for no foreground."""
    kind = parse_crop(kind, what="foreground")
    if kind is None:
        return None
    from kidney_tf.data.crop import FOREGROUND_MASKS

    return FOREGROUND_MASKS[kind]


def resize_batch(images: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Resize ``[B, H, W(, C)]`` to ``size`` px square (OpenCV, area/nearest), keeping dtype."""
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    out = [cv2.resize(np.asarray(img), (size, size), interpolation=interp) for img in images]
    return np.stack(out) if out else np.asarray(images)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(images, np.float32)), 0, 255).astype(np.uint8)


def _item(values, i: int) -> float:
    """Element ``i`` of a (possibly masked) array as float, NaN when masked."""
    value = np.ma.asarray(values)[i]
    return float("nan") if np.ma.is_masked(value) else float(value)


@dataclass
class CamExample:
    """One image kept for figures and ``cam_examples.npz``."""

    file: str
    image: np.ndarray  # uint8 [H, W, 3] at input size
    cam: np.ndarray  # float32 [H, W] main method
    label: int
    prediction: int
    target: int
    mask: np.ndarray | None
    stats: dict[str, float]
    extra: dict[str, tuple[np.ndarray, dict[str, float]]] = field(default_factory=dict)


class CamAccumulator:
    """Computes CAMs for incoming batches (up to ``max_images``) and accumulates statistics."""

    def __init__(
        self,
        model,
        class_names: Sequence[str],
        *,
        method: str = "gradcam++",
        layer: str | None = None,
        target: str = "predicted",
        foreground: str | None = "body",
        max_images: int | None = None,
        examples_per_class: int = 2,
        faithfulness_images: int = 16,
        tolerance_px: float = 0.0,
        batch_size: int = 16,
    ) -> None:
        from kidney_tf.explain.cams import CamExplainer

        check_choice(target, CAM_TARGETS, "cam target")
        if max_images is not None and max_images < 0:
            raise ValueError(f"max_cam_images must be >= 0, got {max_images}")
        self.explainer = CamExplainer(model, method=method, layer=layer, batch_size=batch_size)
        self.model = model
        self.class_names = list(class_names)
        self.method = method
        self.layer = self.explainer.layer
        self.native_grid = tuple(int(d) for d in model.get_layer(self.layer).output.shape[1:3])
        self.input_size = tuple(int(d) for d in model.inputs[0].shape[1:3])
        self.target = target
        self.foreground = parse_crop(foreground, what="foreground")
        self._fg_fn = foreground_function(self.foreground)
        self.max_images = max_images
        self.examples_per_class = examples_per_class
        self.faithfulness_images = faithfulness_images
        self.tolerance_px = float(tolerance_px)
        self.n = 0
        self.has_masks = False
        self.files: list[str] = []
        self.true: list[int] = []
        self.targets: list[int] = []
        self.values: dict[str, list[np.ndarray]] = {}
        self.fg_found: list[np.ndarray] = []
        self.thumbs: list[np.ndarray] = []
        self.fg_thumbs: list[np.ndarray] = []
        # chance baselines, accumulated as n-weighted sums: {scope: {stat: [sum, n]}}
        self._chance: dict[str, dict[str, list[float]]] = {}
        self.examples: list[CamExample] = []
        self.faithfulness_batch: dict[str, list[np.ndarray]] = {
            "images": [],
            "maps": [],
            "targets": [],
        }

    # ----------------------------------------------------------------------------- streaming
    def remaining(self) -> int:
        """How many more images this accumulator will compute CAMs for."""
        if self.max_images is None:
            return 1 << 62
        return max(0, self.max_images - self.n)

    def add(
        self,
        images: np.ndarray,
        *,
        true: np.ndarray,
        pred: np.ndarray,
        files: Sequence[str],
        masks: np.ndarray | None = None,
    ) -> None:
        """CAMs and statistics for (the first ``remaining()`` of) a batch of raw 0..255 images."""
        from kidney_tf.explain.statistics import chance_baselines, summarize_maps

        k = min(len(images), self.remaining())
        if k <= 0:
            return
        images = np.asarray(images[:k], np.float32)
        true = np.asarray(true[:k], np.int64)
        pred = np.asarray(pred[:k], np.int64)
        files = list(files[:k])
        targets = pred if self.target == "predicted" else true
        maps = self.explainer.explain(images, class_index=targets, upsample=True).maps
        if masks is not None:
            masks = np.asarray(masks[:k]).reshape(k, *masks.shape[1:3]) > 0.5
            if masks.any():
                self.has_masks = True
            else:
                masks = None
        fg = None
        if self._fg_fn is not None:
            fg = np.stack([self._fg_fn(img) for img in to_uint8(images)])
            self.fg_found.append(fg.any(axis=(1, 2)))
        summary = summarize_maps(maps, masks=masks, foreground=fg, tolerance_px=self.tolerance_px)
        per_image = {_RENAME.get(k_, k_): v for k_, v in summary["per_image"].items()}
        for name, value in per_image.items():
            arr = np.ma.asarray(value).astype(np.float64).filled(np.nan)
            self.values.setdefault(name, [np.full(self.n, np.nan)]).append(arr)
        for name in self.values:  # statistics absent from this batch (e.g. no masks): NaN
            if name not in per_image:
                self.values[name].append(np.full(k, np.nan))
        if masks is not None:
            self._add_chance("all", chance_baselines(masks, tolerance_px=self.tolerance_px))
            for c in np.unique(true):
                self._add_chance(
                    self.class_names[c],
                    chance_baselines(masks[true == c], tolerance_px=self.tolerance_px),
                )
        self.thumbs.append(
            resize_batch(maps, min(THUMBNAIL_SIZE, maps.shape[1])).astype(np.float16)
        )
        if fg is not None:
            thumb = min(THUMBNAIL_SIZE, fg.shape[1])
            self.fg_thumbs.append(resize_batch(fg.astype(np.uint8), thumb, nearest=True) > 0)
        self._keep_examples(images, maps, true, pred, targets, files, masks, per_image)
        self._keep_faithfulness(images, maps, targets)
        self.files += files
        self.true += true.tolist()
        self.targets += targets.tolist()
        self.n += k

    def _add_chance(self, scope: str, chance: dict[str, Any]) -> None:
        n = int(chance.get("n") or 0)
        if n == 0:
            return
        bucket = self._chance.setdefault(scope, {})
        for key, value in chance.items():
            if key == "n" or value is None:
                continue
            key = _RENAME.get(key, key)
            total = bucket.setdefault(key, [0.0, 0])
            total[0] += float(value) * n
            total[1] += n

    def _keep_examples(self, images, maps, true, pred, targets, files, masks, per_image) -> None:
        counts: dict[int, int] = {}
        for ex in self.examples:
            counts[ex.label] = counts.get(ex.label, 0) + 1
        for i in range(len(images)):
            label = int(true[i])
            if counts.get(label, 0) >= self.examples_per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            stats = {name: _item(v, i) for name, v in per_image.items()}
            self.examples.append(
                CamExample(
                    file=files[i],
                    image=to_uint8(images[i]),
                    cam=maps[i],
                    label=label,
                    prediction=int(pred[i]),
                    target=int(targets[i]),
                    mask=None if masks is None else masks[i],
                    stats=stats,
                )
            )

    def _keep_faithfulness(self, images, maps, targets) -> None:
        kept = sum(len(x) for x in self.faithfulness_batch["images"])
        room = self.faithfulness_images - kept
        if room <= 0:
            return
        self.faithfulness_batch["images"].append(np.asarray(images[:room], np.float32))
        self.faithfulness_batch["maps"].append(np.asarray(maps[:room], np.float32))
        self.faithfulness_batch["targets"].append(np.asarray(targets[:room], np.int64))

    # ------------------------------------------------------------------------------ results
    def per_image(self) -> dict[str, np.ndarray]:
        """``{statistic: float64 [n]}`` with NaN where not applicable (no mask / no foreground)."""
        out = {name: np.concatenate(parts)[: self.n] for name, parts in self.values.items()}
        if "outside_fraction" in out and self.fg_found:
            found = np.concatenate(self.fg_found)
            out["outside_fraction"] = np.where(found, out["outside_fraction"], np.nan)
        return out

    def add_extra_method(self, method: str) -> None:
        """Maps of another method (e.g. Grad-CAM) for the kept examples, with their statistics."""
        from kidney_tf.explain.cams import compute_cams
        from kidney_tf.explain.statistics import summarize_maps

        if not self.examples or method == self.method:
            return
        images = np.stack([ex.image for ex in self.examples]).astype(np.float32)
        targets = np.array([ex.target for ex in self.examples])
        maps = compute_cams(
            self.model, images, method=method, layer=self.layer, class_index=targets
        )
        fg = None
        if self._fg_fn is not None:
            fg = np.stack([self._fg_fn(ex.image) for ex in self.examples])
        masks = None
        if any(ex.mask is not None for ex in self.examples):
            masks = np.stack(
                [
                    ex.mask if ex.mask is not None else np.zeros(maps.shape[1:], bool)
                    for ex in self.examples
                ]
            )
        summary = summarize_maps(maps, masks=masks, foreground=fg, tolerance_px=self.tolerance_px)
        for i, ex in enumerate(self.examples):
            stats = {_RENAME.get(k, k): _item(v, i) for k, v in summary["per_image"].items()}
            ex.extra[method] = (maps[i], stats)

    def summary(self) -> dict[str, Any]:
        """The ``cam`` block of metrics.json (see ``kidney_tf.evaluation.schema``)."""
        from kidney_tf.explain.statistics import shortcut_warnings

        block: dict[str, Any] = {
            "method": self.method,
            "layer": self.layer,
            "native_grid": list(self.native_grid),
            "input_size": list(self.input_size),
            "statistics_resolution": "input (maps upsampled bilinearly)",
            "target": self.target,
            "n_images": self.n,
            "foreground": self.foreground,
        }
        if self.n == 0:
            return block
        values = self.per_image()
        true = np.asarray(self.true)
        if self.fg_found:
            block["n_foreground_missing"] = int((~np.concatenate(self.fg_found)).sum())
        if self.has_masks:
            block["n_with_mask"] = int(
                np.isfinite(values.get("energy_in_mask", np.array([]))).sum()
            )
            block["pointing_tolerance_px"] = self.tolerance_px
        chance = self._chance_means("all")
        for name in (*CAM_STATISTICS, *LOCALISATION_STATISTICS):
            if name not in values or not np.isfinite(values[name]).any():
                continue
            v = values[name][np.isfinite(values[name])]
            entry = {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "median": float(np.median(v)),
                "n": int(v.size),
            }
            if name in LOCALISATION_STATISTICS:
                entry["chance"] = chance.get(name)
            block[name] = entry
        if chance:
            block["chance"] = chance
        per_class: dict[str, dict[str, Any]] = {}
        for c, cname in enumerate(self.class_names):
            members = true == c
            if not members.any():
                continue
            row: dict[str, Any] = {"n": int(members.sum())}
            for name in (*CAM_STATISTICS, *LOCALISATION_STATISTICS):
                if name in values:
                    v = values[name][members]
                    v = v[np.isfinite(v)]
                    row[name] = float(v.mean()) if v.size else None
            class_chance = self._chance_means(cname)
            if class_chance:
                row["chance"] = class_chance
            per_class[cname] = row
        block["per_class"] = per_class
        thumbs = np.concatenate(self.thumbs).astype(np.float32)
        fg = np.concatenate(self.fg_thumbs) if self.fg_thumbs else None
        warnings = shortcut_warnings(
            thumbs,
            np.asarray(self.targets),
            fg,
            grid=self.native_grid,
            class_names=self.class_names,
            grouping=f"{self.target} class",
        )
        block["shortcut_warnings"] = [str(w) for w in warnings]
        block["shortcut_grouping"] = f"{self.target} class"
        return block

    def _chance_means(self, scope: str) -> dict[str, float]:
        return {k: s / n for k, (s, n) in self._chance.get(scope, {}).items() if n}


__all__ = ["CamAccumulator", "CamExample", "foreground_function"]
