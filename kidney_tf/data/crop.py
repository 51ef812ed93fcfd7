"""Brain-contour crop (brain MRI paper) and CT body crop (table removal), with OpenCV.

Brain crop, exactly the recipe of the paper (the Kaggle/pyimagesearch ``crop_brain_contour``):
grayscale -> GaussianBlur (5, 5) -> threshold 45 -> erode x2 -> dilate x2 -> largest external
contour -> extreme points -> ``image[top:bottom, left:right]`` (the bottom-most row and right-most
column are excluded, as in the paper), optional margin, resize.

Body crop (kidney CT): the scanner table is a thin bright curve below the body; a from-scratch
network can put its CAM on it (an acquisition shortcut), so the body crop removes it, at a 512-px
working size (kernels tuned on the real 512-px slices; the mask is resized back):
blur -> threshold at a low level (> 1: the real slices are windowed so narrowly that fat is
black, and only the faint skin line separates body from air) -> closing (bridges gaps in the skin
line) -> fill holes -> opening with a kernel wider than the table (cuts the table and its curves
off the body) -> the connected component holding the most tissue (a closed table outline can
enclose a larger but empty area) -> blank everything outside it -> crop to its box.

Fallback (both crops): an empty/all-black image, no contour, or a largest contour smaller than
``min_area_fraction`` (1 %) of the image gives the whole image (resized) with ``fallback=True``
and a ``reason``; it is logged at debug level. ``crop_folder`` crops a whole dataset tree.

Usage::

    from kidney_tf.data.crop import crop_brain, crop_body, crop_folder
    result = crop_brain(image, size=240)      # result.image, result.box, result.fallback
    summary = crop_folder("raw/", "cropped/", mode="brain", size=240)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kidney_tf.data.decode import read_image, read_mask, supported_extensions
from kidney_tf.recipes import CROP_MODES, check_choice
from kidney_tf.utils.io import (
    atomic_dir,
    atomic_path,
    check_output_dir,
    mark_output_dir,
    write_text_atomic,
)
from kidney_tf.utils.logging import get_logger

logger = get_logger(__name__)

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels, end exclusive: the crop is ``image[y0:y1, x0:x1]``."""

BRAIN_THRESHOLD = 45
MIN_AREA_FRACTION = 0.01
BODY_THRESHOLD = 1
BODY_CLOSE_KERNEL = 7
BODY_OPEN_KERNEL = 15
BODY_REFERENCE_SIZE = 512
_WRITABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST_NAME = "manifest.csv"
BOXES_NAME = "crop_boxes.csv"
COMMAND = "data crop"  # the owner recorded in the output folder (utils.io.check_output_dir)


@dataclasses.dataclass
class CropResult:
    """A cropped image, the box it was cut with (original pixels) and whether it fell back."""

    image: np.ndarray
    box: Box
    fallback: bool = False
    reason: str | None = None
    mask: np.ndarray | None = None


# --------------------------------------------------------------------------------------- helpers
def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"expected a HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    if not (image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"expected a uint8 or float (0..255) image, got dtype {image.dtype}")
    return image


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 view of a gray/RGB(A) uint8 or float 0..255 image (floats clipped, rounded)."""
    image = _check_image(image)
    if image.dtype != np.uint8:
        if 0 < float(np.nanmax(image)) <= 1.0:
            logger.warning("float image with values in 0..1: the crops expect pixels in 0..255")
        image = np.clip(np.rint(np.nan_to_num(image)), 0, 255).astype(np.uint8)
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2GRAY if image.shape[-1] == 4 else cv2.COLOR_RGB2GRAY
        image = cv2.cvtColor(image, code)
    return image


def _kernel(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))


def resize_nearest(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``(h, w)`` with ``tf.image.resize(method="nearest")``'s rule.

    Output pixel ``i`` takes source pixel ``min(floor((i + 0.5) * n_in / n_out), n_in - 1)`` in
    float32, as TensorFlow's kernel computes it, so the OpenCV and TF crop backends (and the
    SavedModel) cut the same mask. OpenCV's ``INTER_NEAREST_EXACT`` works in fixed point and
    takes the pixel before when that product is a whole number (512 -> 160 px: row 7 -> 23,
    TF 24), which moved body-mask edges and crop boxes of 160-px phantoms by a pixel.
    Usage: ``small = resize_nearest(mask, (160, 160))``
    """

    def index(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        source = np.floor((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale)
        return np.minimum(source.astype(np.int64), n_in - 1)

    image = np.asarray(image)
    return image[index(image.shape[0], hw[0])][:, index(image.shape[1], hw[1])]


def working_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(h, w)`` at which the body is found: the shorter side scaled to 512 px, aspect kept.

    The body crop's blur and kernels are tuned on 512-px CT slices; working at that scale makes
    them independent of the input resolution (a 128-px slice is upsampled, a 2048-px one reduced;
    nearest-neighbour, so a thin table is not smeared into the body). Below ~128 px the gap
    between body and table is 1-2 pixels and the table can stay attached to the body.
    """
    scale = BODY_REFERENCE_SIZE / min(shape[0], shape[1])
    return max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected (4-neighbourhood) to the image border."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2


def expand_box(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    """Grow ``box`` by ``margin`` pixels on every side, clipped to an image of ``shape``."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0 pixels, got {margin}")
    x0, y0, x1, y1 = box
    h, w = shape[0], shape[1]
    return (max(0, x0 - margin), max(0, y0 - margin), min(w, x1 + margin), min(h, y1 + margin))


def _size_hw(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return h, w


def crop_to_box(
    image: np.ndarray,
    box: Box,
    size: int | tuple[int, int] | None = None,
    *,
    nearest: bool = False,
) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` resized to ``size`` ((h, w) or square).

    Bilinear, or nearest (:func:`resize_nearest`, as ``tf.image.resize(method="nearest")``)
    for masks.
    """
    x0, y0, x1, y1 = box
    out = np.asarray(image)[y0:y1, x0:x1]
    hw = _size_hw(size)
    if hw is None or out.shape[:2] == hw:
        return out.copy()
    if nearest:
        return resize_nearest(out, hw)
    was_bool = out.dtype == bool
    src = out.astype(np.uint8) if was_bool else out
    if src.dtype not in (np.uint8, np.float32, np.float64, np.uint16):
        src = src.astype(np.float32)
    resized = cv2.resize(src, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    if out.ndim == 3 and resized.ndim == 2:
        resized = resized[..., None]
    return resized.astype(bool) if was_bool else resized


def _check_mask(mask: np.ndarray | None, image: np.ndarray) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape[:2] != image.shape[:2] or mask.ndim != 2:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    return mask.astype(bool)


def _result(
    image: np.ndarray,
    box: Box | None,
    reason: str | None,
    size: int | tuple[int, int] | None,
    margin: int,
    mask: np.ndarray | None,
    kind: str,
) -> CropResult:
    h, w = image.shape[:2]
    fallback = box is None
    if fallback:
        logger.debug("%s crop fell back to the whole image: %s", kind, reason)
        box = (0, 0, w, h)
    else:
        box = expand_box(box, margin, image.shape)
    cropped = crop_to_box(image, box, size)
    cropped_mask = None if mask is None else crop_to_box(mask, box, size, nearest=True)
    return CropResult(cropped, box, fallback, reason if fallback else None, cropped_mask)


# ------------------------------------------------------------------------------------ brain crop
def _brain_threshold_mask(gray: np.ndarray, threshold: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    thresh = cv2.threshold(blurred, threshold, 255, cv2.THRESH_BINARY)[1]
    thresh = cv2.erode(thresh, None, iterations=2)
    return cv2.dilate(thresh, None, iterations=2)


def _largest_contour(
    image: np.ndarray, threshold: float, min_area_fraction: float
) -> tuple[np.ndarray | None, str | None]:
    gray = to_gray_uint8(image)
    if not gray.any():
        return None, "empty image (all black)"
    thresh = _brain_threshold_mask(gray, threshold)
    contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, f"no contour above threshold {threshold:g}"
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    if area < min_area_fraction * gray.size:
        return None, (
            f"largest contour too small ({area / gray.size:.2%} of the image "
            f"< {min_area_fraction:.0%})"
        )
    return contour, None


def find_brain_box(
    image: np.ndarray,
    *,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> tuple[Box | None, str | None]:
    """``(box, None)`` from the largest contour's extreme points, or ``(None, reason)``."""
    contour, reason = _largest_contour(image, threshold, min_area_fraction)
    if contour is None:
        return None, reason
    points = contour[:, 0, :]
    left, top = int(points[:, 0].min()), int(points[:, 1].min())
    right, bottom = int(points[:, 0].max()), int(points[:, 1].max())
    if right <= left or bottom <= top:
        return None, "degenerate contour (zero width or height)"
    return (left, top, right, bottom), None


def brain_box(
    image: np.ndarray,
    *,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> Box | None:
    """The paper's brain box ``(left, top, right, bottom)`` or ``None`` when it must fall back.

    Usage: ``box = brain_box(rgb_uint8)``
    """
    return find_brain_box(image, threshold=threshold, min_area_fraction=min_area_fraction)[0]


def brain_mask(
    image: np.ndarray,
    *,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> np.ndarray:
    """Foreground of the brain crop: the filled largest external contour (bool HxW).

    All ``False`` when no brain is found (the crop's fallback cases).
    Usage: ``fg = brain_mask(image)``
    """
    contour, _ = _largest_contour(image, threshold, min_area_fraction)
    h, w = np.asarray(image).shape[:2]
    out = np.zeros((h, w), np.uint8)
    if contour is not None:
        cv2.drawContours(out, [contour], -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)


def crop_brain(
    image: np.ndarray,
    *,
    size: int | tuple[int, int] | None = None,
    margin: int = 0,
    mask: np.ndarray | None = None,
    threshold: float = BRAIN_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> CropResult:
    """Crop to the brain's extreme points (+ ``margin`` px) and resize to ``size``.

    ``mask`` (HxW) is cropped with the same box (nearest-neighbour resize). The output keeps the
    input's dtype and channels.
    Usage: ``result = crop_brain(image, size=240)``
    """
    image = _check_image(image)
    mask = _check_mask(mask, image)
    box, reason = find_brain_box(image, threshold=threshold, min_area_fraction=min_area_fraction)
    return _result(image, box, reason, size, margin, mask, "brain")


# ------------------------------------------------------------------------------------- body crop
def find_body(
    image: np.ndarray,
    *,
    threshold: float = BODY_THRESHOLD,
    close_kernel: int = BODY_CLOSE_KERNEL,
    open_kernel: int = BODY_OPEN_KERNEL,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> tuple[np.ndarray, str | None]:
    """``(body mask, None)``, or ``(mask, reason)`` when the body crop must fall back.

    The twin of :func:`find_brain_box`: the mask is bool HxW (all ``False`` for an empty image).
    Usage: ``mask, reason = find_body(ct_slice)``
    """
    gray = to_gray_uint8(image)
    empty = np.zeros(gray.shape, bool)
    if not gray.any():
        return empty, "empty image (all black)"
    height, width = gray.shape
    work_h, work_w = working_size(gray.shape)
    work = gray
    if (work_h, work_w) != (height, width):
        work = resize_nearest(gray, (work_h, work_w))
    tissue = cv2.GaussianBlur(work, (5, 5), 0) > threshold
    closed = cv2.morphologyEx(tissue.astype(np.uint8), cv2.MORPH_CLOSE, _kernel(close_kernel))
    filled = fill_holes(closed)
    opened = cv2.morphologyEx(filled.astype(np.uint8), cv2.MORPH_OPEN, _kernel(open_kernel))
    count, labels = cv2.connectedComponents(opened, connectivity=8)
    if count < 2:
        return empty, f"no body above threshold {threshold:g} after removing thin structures"
    weights = np.bincount(labels.ravel(), weights=tissue.ravel(), minlength=count)
    weights[0] = -1
    body = labels == int(np.argmax(weights))
    if body.shape != (height, width):
        body = resize_nearest(body, (height, width))
    if body.sum() < min_area_fraction * gray.size:
        return body, (
            f"body too small ({body.sum() / gray.size:.2%} of the image < {min_area_fraction:.0%})"
        )
    return body, None


def body_mask(
    image: np.ndarray,
    *,
    threshold: float = BODY_THRESHOLD,
    close_kernel: int = BODY_CLOSE_KERNEL,
    open_kernel: int = BODY_OPEN_KERNEL,
) -> np.ndarray:
    """The patient's body in a CT slice, without the scanner table (bool HxW).

    Found at a 512-px working size (:func:`working_size`; kernel sizes are in those pixels) and
    resized back (nearest). All ``False`` for an empty image.
    Usage: ``fg = body_mask(ct_slice)``
    """
    return find_body(
        image,
        threshold=threshold,
        close_kernel=close_kernel,
        open_kernel=open_kernel,
        min_area_fraction=0.0,
    )[0]


def body_box(
    image: np.ndarray,
    *,
    threshold: float = BODY_THRESHOLD,
    close_kernel: int = BODY_CLOSE_KERNEL,
    open_kernel: int = BODY_OPEN_KERNEL,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> Box | None:
    """Box of :func:`body_mask` (end exclusive), ``None`` when the body crop would fall back.

    Usage: ``box = body_box(ct_slice)``
    """
    mask, reason = find_body(
        _check_image(image),
        threshold=threshold,
        close_kernel=close_kernel,
        open_kernel=open_kernel,
        min_area_fraction=min_area_fraction,
    )
    return None if reason else mask_box(mask)


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight box ``(x0, y0, x1, y1)`` (end exclusive) of a boolean mask, ``None`` if empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def crop_body(
    image: np.ndarray,
    *,
    size: int | tuple[int, int] | None = None,
    margin: int = 0,
    mask: np.ndarray | None = None,
    blank: bool = True,
    threshold: float = BODY_THRESHOLD,
    close_kernel: int = BODY_CLOSE_KERNEL,
    open_kernel: int = BODY_OPEN_KERNEL,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> CropResult:
    """Blank everything outside the body (table included) and crop to the body's box.

    ``blank=False`` only crops. ``mask`` (lesion, HxW) is cropped with the same box.
    Usage: ``result = crop_body(ct_slice, size=224)``
    """
    image = _check_image(image)
    mask = _check_mask(mask, image)
    body, reason = find_body(
        image,
        threshold=threshold,
        close_kernel=close_kernel,
        open_kernel=open_kernel,
        min_area_fraction=min_area_fraction,
    )
    if reason is None and blank:
        image = image.copy()
        image[~body] = 0
    box = None if reason else mask_box(body)
    return _result(image, box, reason, size, margin, mask, "body")


def crop_image(
    image: np.ndarray,
    mode: str = "brain",
    *,
    size: int | tuple[int, int] | None = None,
    margin: int = 0,
    mask: np.ndarray | None = None,
) -> CropResult:
    """The crop ``mode`` (one of ``recipes.CROP_MODES``): :data:`CROPS` ``[mode]``."""
    check_choice(mode, CROP_MODES, "mode")
    return CROPS[mode](image, size=size, margin=margin, mask=mask)


def foreground_mask(image: np.ndarray, mode: str) -> np.ndarray:
    """The foreground of crop ``mode`` (brain or body, bool ``[H, W]``): :data:`FOREGROUND_MASKS`."""
    check_choice(mode, CROP_MODES, "foreground")
    return FOREGROUND_MASKS[mode](image)


#: Crop mode -> its OpenCV crop and its foreground mask (the keys are ``recipes.CROP_MODES``).
CROPS: dict[str, Callable[..., CropResult]] = {"brain": crop_brain, "body": crop_body}
FOREGROUND_MASKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "brain": brain_mask,
    "body": body_mask,
}


# ----------------------------------------------------------------------------------- crop_folder
@dataclasses.dataclass
class CropSummary:
    """What :func:`crop_folder` did: counts plus the files that fell back or were skipped."""

    src: str
    dst: str
    mode: str
    size: int | None
    margin: int
    cropped: int = 0
    masks: int = 0
    fallback: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    manifest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of [path, reason] pairs)."""
        return dataclasses.asdict(self)

    def format(self, max_items: int = 20) -> str:
        """Human-readable summary (used by the CLI)."""
        lines = [
            f"cropped {self.cropped} images ({self.mode}, size {self.size or 'native'}, "
            f"margin {self.margin}) and {self.masks} masks -> {self.dst}",
            f"fallback (whole image kept): {len(self.fallback)}",
        ]
        lines += [f"  {path}: {reason}" for path, reason in self.fallback[:max_items]]
        lines.append(f"skipped: {len(self.skipped)}")
        lines += [f"  {path}: {reason}" for path, reason in self.skipped[:max_items]]
        if len(self.fallback) > max_items or len(self.skipped) > max_items:
            lines.append(f"  (first {max_items} listed; see {BOXES_NAME} in the output)")
        if self.manifest:
            lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def _write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB/gray uint8 image atomically (JPEG quality 95, PNG lossless)."""
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _check_folders(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder does not exist")
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r:
        raise ValueError(f"{dst}: the output folder must differ from the source (never written)")
    if _is_within(dst_r, src_r):
        raise ValueError(f"{dst}: the output folder may not be inside the source folder {src}")
    if _is_within(src_r, dst_r):
        raise ValueError(f"{dst}: the output folder may not contain the source folder {src}")
    # Only an earlier crop output is ever replaced, and only with overwrite.
    check_output_dir(
        dst, COMMAND, inputs=[src], replace=True, overwrite=overwrite, markers=(BOXES_NAME,)
    )


def _is_mask_path(rel: Path) -> bool:
    return "masks" in rel.parts[:-1]


def _mask_candidates(rel: Path, extensions: Iterable[str]) -> list[Path]:
    """``masks/`` placements for an image at ``rel``: ``masks/<rel>`` and ``<split>/masks/...``."""
    dirs = rel.parts[:-1]
    out = []
    for i in range(len(dirs) + 1):
        base = Path(*dirs[:i], "masks", *dirs[i:])
        out.append(base / rel.name)
        out += [base / (rel.stem + ext) for ext in extensions if ext != rel.suffix.lower()]
    return out


def _output_rel(rel: Path) -> Path:
    return rel if rel.suffix.lower() in _WRITABLE_EXTENSIONS else rel.with_suffix(".png")


def _read_manifest_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise ValueError(f"{path}: manifest has no 'path' column")
        return list(reader.fieldnames), list(reader)


def _manifest_rel(value: str, src: Path) -> Path | None:
    if not value:
        return None
    resolved = (src / value).resolve()
    if not _is_within(resolved, src.resolve()):
        return None
    return resolved.relative_to(src.resolve())


def crop_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    mode: str = "brain",
    size: int | None = 240,
    margin: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> CropSummary:
    """Crop every image under ``src`` into a mirrored tree at ``dst`` (``src`` is never written).

    Class/split folders are mirrored; masks (``masks/`` folders, or ``mask_path`` in
    ``manifest.csv``) are cut with their image's box; ``manifest.csv`` is rewritten without
    skipped rows; ``crop_boxes.csv`` records every box. The tree is built in a temporary folder and
    renamed onto ``dst`` at the end, so a failed run leaves no half-written output.
    Usage: ``summary = crop_folder("data/raw", "data/cropped", mode="brain", size=240)``
    """
    from tqdm.auto import tqdm

    check_choice(mode, CROP_MODES, "mode")
    if size is not None and size < 1:
        size = None
    if margin < 0:
        raise ValueError(f"margin must be >= 0 pixels, got {margin}")
    src, dst = Path(src), Path(dst)
    _check_folders(src, dst, overwrite)
    extensions = tuple(e.lower() for e in supported_extensions())
    summary = CropSummary(str(src), str(dst), mode, size, margin)

    files = sorted(
        p.relative_to(src)
        for p in src.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    if not any(rel.suffix.lower() in extensions for rel in files):
        raise FileNotFoundError(
            f"{src}: no images to crop (looked for {', '.join(extensions)}); nothing written"
        )
    manifest_fields: list[str] | None = None
    manifest_rows: list[dict[str, str]] = []
    mask_for: dict[Path, Path] = {}
    if (src / MANIFEST_NAME).is_file():
        manifest_fields, manifest_rows = _read_manifest_rows(src / MANIFEST_NAME)
        for row in manifest_rows:
            image_rel = _manifest_rel(row.get("path", ""), src)
            mask_rel = _manifest_rel(row.get("mask_path", "") or "", src)
            if image_rel is not None and mask_rel is not None:
                mask_for[image_rel] = mask_rel
    present = set(files)
    mask_files = {rel for rel in files if _is_mask_path(rel)} | set(mask_for.values())
    images = [rel for rel in files if rel.suffix.lower() in extensions and rel not in mask_files]
    for rel in files:
        if rel.name == MANIFEST_NAME and rel.parent == Path("."):
            continue
        if rel.suffix.lower() not in extensions:
            summary.skipped.append((str(rel), "not an image file (extension not supported)"))

    renamed: dict[str, str] = {}
    used_masks: set[Path] = set()
    box_rows = ["path,width,height,x0,y0,x1,y1,fallback,reason"]
    with atomic_dir(dst, overwrite=dst.exists()) as tmp:
        mark_output_dir(tmp, COMMAND)
        for rel in tqdm(images, desc=f"{mode} crop", unit="img", disable=not progress):
            try:
                image = read_image(src / rel)
            except (OSError, ValueError) as exc:
                summary.skipped.append((str(rel), _reason(exc, src / rel)))
                continue
            mask_rel = mask_for.get(rel) or next(
                (c for c in _mask_candidates(rel, extensions) if c in present), None
            )
            mask = None
            if mask_rel is not None:
                used_masks.add(mask_rel)
                try:
                    mask = _check_mask(read_mask(src / mask_rel), image)
                except (OSError, ValueError) as exc:
                    summary.skipped.append((str(mask_rel), _reason(exc, src / mask_rel)))
                    mask = None
            result = crop_image(image, mode, size=size, margin=margin, mask=mask)
            out_rel = _output_rel(rel)
            _write_image(tmp / out_rel, result.image)
            renamed[rel.as_posix()] = out_rel.as_posix()
            summary.cropped += 1
            if result.mask is not None:
                mask_out = _output_rel(mask_rel)
                _write_image(tmp / mask_out, result.mask.astype(np.uint8) * 255)
                renamed[mask_rel.as_posix()] = mask_out.as_posix()
                summary.masks += 1
            if result.fallback:
                summary.fallback.append((str(rel), result.reason or "fallback"))
            h, w = image.shape[:2]
            x0, y0, x1, y1 = result.box
            reason = (result.reason or "").replace('"', "'")
            box_rows.append(
                f'{out_rel.as_posix()},{w},{h},{x0},{y0},{x1},{y1},{int(result.fallback)},"{reason}"'
            )
        for rel in sorted(mask_files - used_masks):
            if rel in present:
                summary.skipped.append((str(rel), "mask without a matching image"))
        write_text_atomic(tmp / BOXES_NAME, "\n".join(box_rows) + "\n")
        if manifest_fields is not None:
            _write_manifest(tmp / MANIFEST_NAME, manifest_fields, manifest_rows, renamed, src)
            summary.manifest = str(dst / MANIFEST_NAME)
    for path, reason in summary.skipped:
        logger.info("skipped %s: %s", path, reason)
    return summary


def _reason(exc: BaseException, path: Path) -> str:
    if isinstance(getattr(exc, "reason", None), str):
        return exc.reason
    message = str(exc)
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _write_manifest(
    target: Path,
    fields: list[str],
    rows: list[dict[str, str]],
    renamed: dict[str, str],
    src: Path,
) -> None:
    """Manifest rows whose image was cropped, with paths/mask paths mapped to the new names."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        image_rel = _manifest_rel(row.get("path", ""), src)
        if image_rel is None or image_rel.as_posix() not in renamed:
            continue
        row = dict(row)
        row["path"] = renamed[image_rel.as_posix()]
        if row.get("mask_path"):
            mask_rel = _manifest_rel(row["mask_path"], src)
            new = renamed.get(mask_rel.as_posix()) if mask_rel is not None else None
            row["mask_path"] = new or ""
        writer.writerow(row)
    write_text_atomic(target, buffer.getvalue())
