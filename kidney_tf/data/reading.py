"""Read images, masks and datasets (class-folder trees or manifest CSVs) into plain records.

Decoding policy (one place, so every caller sees the same pixels):

* ``read_image`` always returns ``uint8`` ``H x W x 3`` RGB. Grayscale and palette images are
  expanded to three equal channels; RGBA/LA/transparent-palette images are **alpha-composited on
  black** (transparent pixels become black, the background colour of CT and MRI).
* 16-bit grayscale (PNG/TIFF ``I;16``) is scaled **linearly over the full uint16 range**:
  ``round(v * 255 / 65535)`` (0 -> 0, 65535 -> 255). It is *not* min-max stretched, so relative
  intensities between images are kept; a 12-bit scan stored in 16 bits therefore looks dark:
  window it first (see :mod:`kidney_tf.data.dicom`). 16-bit RGB PNGs keep the high byte (Pillow).
  32-bit float images are refused (no fixed range to map).
* EXIF orientation is not applied (scans are stored in display order; ``tf.io.decode_image`` does
  the same).
* Memory bound: an image with more than ``max_pixels`` pixels (default 50 M, e.g. 7071 x 7071;
  ``$KIDNEY_TF_MAX_PIXELS``, set by the CLI's ``--max-pixels``, changes the default) is
  decoded at a reduced scale (1/2, 1/4, 1/8) when the codec supports it (JPEG, via Pillow
  ``draft``) and refused with :class:`ImageReadError` otherwise (PNG, TIFF, BMP cannot be decoded
  partially). ``max_side`` downsizes the result (JPEG again decoded at reduced scale first).
* Corrupt, truncated, zero-byte and non-image files raise :class:`ImageReadError` ("<path>: <reason>").

Dataset layouts understood by :func:`scan_folder`::

    root/<class>/*.{jpg,jpeg,png,bmp,tif,tiff[,dcm]}      (extensions case-insensitive)
    root/masks/<class>/<same file name or stem>            (optional masks)
    root/<Split>/<class>/*  with masks in root/<Split>/masks/<class>/* or root/masks/<Split>/<class>/*
        Split in Training/Testing/train/val/valid/validation/test -> "train"/"val"/"test"

Usage::

    from kidney_tf.data.reading import scan_folder, read_image
    result = scan_folder("CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone")
    image = read_image(result.records[0].path)   # uint8 (H, W, 3)
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from kidney_tf.data.pixels import ImageReadError, scale_uint16
from kidney_tf.utils.io import atomic_path
from kidney_tf.utils.logging import get_logger

logger = get_logger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
MASK_FOLDER = "masks"
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Folder (or CSV) split names, lower-cased, -> canonical split name.
SPLIT_ALIASES: dict[str, str] = {
    "training": "train",
    "train": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "testing": "test",
    "test": "test",
}
#: Images with more pixels than this are decoded at reduced scale (JPEG) or refused (others).
DEFAULT_MAX_PIXELS = 50_000_000
#: Environment variable that replaces the default limit (0: none), set by ``--max-pixels`` so that
#: tf.data workers and every reader of one command see the same limit.
MAX_PIXELS_ENV = "KIDNEY_TF_MAX_PIXELS"
#: ``max_pixels`` argument meaning "the limit in force" (:func:`max_pixels_limit`).
DEFAULT = "default"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "mask_path")

_JPEG_SCALES = (1, 2, 4, 8)


def max_pixels_limit(max_pixels: int | None | str = DEFAULT) -> int | None:
    """Resolve a ``max_pixels`` argument: :data:`DEFAULT` -> ``$KIDNEY_TF_MAX_PIXELS`` (0: no
    limit) or :data:`DEFAULT_MAX_PIXELS`; anything else is returned as is.

    Usage: ``max_pixels_limit()``  # 50_000_000 unless the environment says otherwise
    """
    if max_pixels != DEFAULT:
        return max_pixels  # type: ignore[return-value]
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise ValueError(
            f"{MAX_PIXELS_ENV}={text!r}: expected a pixel count (0: no limit)"
        ) from None
    if value < 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r}: expected a pixel count >= 0 (0: no limit)")
    return value or None


_VALIDATE_SIDE = (
    64  # JPEG validation decodes at <= 1/8 scale: every entropy-coded byte is still read
)


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image (and optional mask) of a dataset."""

    path: str
    label: str
    split: str | None = None
    mask_path: str | None = None


@dataclass
class BadFile:
    """A file left out of a dataset, with the reason (decode error, size mismatch, missing...)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ScanResult:
    """Readable records, the sorted class names and the files that were left out.

    ``warnings`` holds dataset-level notes (empty class folder, images outside class folders,
    images without masks...) that are not tied to one bad file.
    """

    records: list[ImageRecord]
    class_names: list[str]
    bad_files: list[BadFile]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split or "all": {class: n}}`` with every class listed (0 when absent)."""
        table: dict[str, dict[str, int]] = {}
        for record in self.records:
            row = table.setdefault(record.split or "all", dict.fromkeys(self.class_names, 0))
            row[record.label] = row.get(record.label, 0) + 1
        return {split: table[split] for split in _split_order(table)}


# --------------------------------------------------------------------------- single images


def dicom_supported() -> bool:
    """True when pydicom is installed (``pip install kidney_tf[dicom]``)."""
    from kidney_tf.data import dicom

    return dicom.pydicom_available()


def supported_extensions() -> tuple[str, ...]:
    """Image extensions that :func:`scan_folder` picks up (``.dcm`` only with pydicom)."""
    return IMAGE_EXTENSIONS + (DICOM_EXTENSIONS if dicom_supported() else ())


def is_dicom_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in DICOM_EXTENSIONS


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[Image.Image]:
    """Open ``path`` lazily with Pillow (header only), mapping every failure to ImageReadError."""
    p = Path(path)
    try:
        stat = p.stat()
    except FileNotFoundError:
        raise ImageReadError(p, "file not found") from None
    except OSError as exc:
        raise ImageReadError(p, f"cannot access file ({exc.strerror or exc})") from exc
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image file")
    if stat.st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # kidney_tf applies its own max_pixels bound below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(p)
    except UnidentifiedImageError:
        raise ImageReadError(
            p, "not a recognised image (content is not JPEG/PNG/BMP/TIFF; wrong extension?)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(p, f"image too large to decode safely ({exc})") from None
    except MemoryError:
        raise
    except Exception as exc:  # malformed headers surface as many exception types in Pillow
        raise ImageReadError(p, f"cannot open image ({type(exc).__name__}: {exc})") from exc
    with image:
        yield image


def _reduction(width: int, height: int, max_pixels: int | None, max_side: int | None) -> int:
    """JPEG DCT scale (1, 2, 4 or 8) that bounds memory and still covers ``max_side``."""
    k_pixels = 1
    if max_pixels is not None and width * height > max_pixels:
        k_pixels = next(
            (k for k in _JPEG_SCALES if math.ceil(width / k) * math.ceil(height / k) <= max_pixels),
            0,
        )
        if k_pixels == 0:
            return 0
    k_side = 1
    if max_side is not None:
        longest = max(width, height)
        k_side = max(k for k in _JPEG_SCALES if k == 1 or math.ceil(longest / k) >= max_side)
    return max(k_pixels, k_side)


def _decode(
    image: Image.Image, path: str | os.PathLike, max_pixels: int | None, max_side: int | None
) -> Image.Image:
    """Load pixel data with the memory bound; JPEGs are decoded at reduced scale when allowed."""
    width, height = image.size
    if image.format == "JPEG":
        k = _reduction(width, height, max_pixels, max_side)
        if k == 0:
            raise ImageReadError(
                path,
                f"image is {width}x{height} ({width * height:,} pixels); even 1/8-scale decoding "
                f"exceeds max_pixels={max_pixels:,}",
            )
        if k > 1:
            image.draft(None, (math.ceil(width / k), math.ceil(height / k)))
            if max_pixels is not None and width * height > max_pixels:
                logger.warning(
                    "%s: %dx%d exceeds max_pixels=%d; decoded at 1/%d scale",
                    path,
                    width,
                    height,
                    max_pixels,
                    k,
                )
    elif max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            path,
            f"image is {width}x{height} ({width * height:,} pixels) > max_pixels={max_pixels:,}; "
            f"{image.format or 'this format'} cannot be decoded at reduced scale: downscale the "
            "file or raise the limit (CLI: --max-pixels N, 0 for none; Python: max_pixels=None)",
        )
    try:
        image.load()
    except Image.DecompressionBombError as exc:  # pragma: no cover - defensive
        raise ImageReadError(path, f"image too large to decode safely ({exc})") from None
    except MemoryError:
        raise
    except Exception as exc:  # corrupt data surfaces as OSError, SyntaxError, ValueError...
        raise ImageReadError(path, f"corrupt or truncated image data ({exc})") from exc
    return image


def _to_rgb(image: Image.Image, path: str | os.PathLike) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I"):
        values = np.asarray(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(path, "32-bit integer pixels outside 0..65535 are not supported")
        gray = scale_uint16(values)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    if mode == "F":
        raise ImageReadError(
            path, "32-bit float pixels (mode F) are not supported; save as 8- or 16-bit"
        )
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            image = Image.alpha_composite(black, rgba)
        rgb = image.convert("RGB")
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"unsupported pixel mode {mode!r} ({exc})") from exc
    return np.array(rgb, dtype=np.uint8)


def _fit_side(array: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None:
        return array
    height, width = array.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return array
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def read_image(
    path: str | os.PathLike,
    *,
    max_side: int | None = None,
    max_pixels: int | None | str = DEFAULT,
) -> np.ndarray:
    """Decode ``path`` to ``uint8`` ``(H, W, 3)`` RGB (see the module docstring for the policy).

    Args:
        max_side: if set, downscale (INTER_AREA, aspect kept) so the longest side is at most this.
        max_pixels: memory bound; larger images are decoded at reduced scale (JPEG) or refused
            (``DEFAULT``: :func:`max_pixels_limit`; None: no bound).

    Raises:
        ImageReadError: missing, empty, corrupt, truncated, non-image or over-limit files.

    DICOM files (``.dcm``, or any file with the DICM preamble) go through
    :func:`kidney_tf.data.dicom.read_dicom` with its automatic window (CT: kidney preset,
    center 40 / width 400); call ``read_dicom`` directly for another window.

    Usage: ``rgb = read_image("Cyst/Cyst- (1).jpg")``
    """
    max_pixels = max_pixels_limit(max_pixels)
    if is_dicom_path(path):
        return _read_dicom_rgb(path, max_side=max_side, max_pixels=max_pixels)
    try:
        with _open(path) as image:
            array = _to_rgb(_decode(image, path, max_pixels, max_side), path)
    except ImageReadError as exc:
        if "not a recognised image" in exc.reason and _is_dicom_file(path):
            return _read_dicom_rgb(path, max_side=max_side, max_pixels=max_pixels)
        raise
    return _fit_side(array, max_side)


def _read_dicom_rgb(
    path: str | os.PathLike, *, max_side: int | None, max_pixels: int | None
) -> np.ndarray:
    from kidney_tf.data import dicom

    gray = dicom.read_dicom(path, max_pixels=max_pixels)
    rgb = gray if gray.ndim == 3 else cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    return _fit_side(np.ascontiguousarray(rgb), max_side)


def read_mask(
    path: str | os.PathLike,
    *,
    shape: tuple[int, int] | None = None,
    max_pixels: int | None | str = DEFAULT,
) -> np.ndarray:
    """Read a segmentation mask as ``bool`` ``(H, W)``.

    Foreground is any non-zero pixel (so 0/1 and 0/255 masks both work; palette masks use their
    indices); JPEG masks, being lossy, use ``> 127``. If ``shape=(H, W)`` of the image is given, a
    mask of another size raises :class:`ImageReadError` naming both sizes.

    Usage: ``mask = read_mask("masks/Cyst/a.png", shape=image.shape[:2])``
    """
    max_pixels = max_pixels_limit(max_pixels)
    with _open(path) as image:
        image = _decode(image, path, max_pixels, None)
        if image.format == "JPEG":
            values, threshold = np.asarray(image.convert("L")), 127
        elif image.mode == "P" or image.mode.startswith("I") or image.mode == "F":
            values, threshold = np.asarray(image), 0
        else:
            values, threshold = _to_rgb(image, path).max(axis=-1), 0
    mask = np.asarray(values) > threshold
    if shape is not None and tuple(mask.shape[:2]) != tuple(shape[:2]):
        raise ImageReadError(
            path,
            f"mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image size "
            f"{shape[1]}x{shape[0]}",
        )
    return mask


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` from the file header only (no pixel decoding)."""
    if is_dicom_path(path):
        from kidney_tf.data import dicom

        return dicom.dicom_size(path)
    with _open(path) as image:
        width, height = image.size
    return height, width


def validate_image(
    path: str | os.PathLike, *, max_pixels: int | None | str = DEFAULT
) -> tuple[int, int]:
    """Check that ``path`` decodes completely; return its full-size ``(height, width)``.

    Cheap: JPEGs are decoded at 1/8 scale (every compressed byte is still read, so truncation
    and corruption are caught), other formats are decoded fully.

    Raises:
        ImageReadError: with the reason, exactly as :func:`read_image` would.
    """
    max_pixels = max_pixels_limit(max_pixels)
    if is_dicom_path(path):
        from kidney_tf.data import dicom

        return dicom.read_dicom(path, max_pixels=max_pixels).shape[:2]
    try:
        with _open(path) as image:
            width, height = image.size
            _decode(image, path, max_pixels, _VALIDATE_SIDE)
            if image.mode in ("F", "I"):  # pixel types read_image refuses
                _to_rgb(image, path)
    except ImageReadError as exc:
        if "not a recognised image" in exc.reason and _is_dicom_file(path):
            return read_image(path, max_pixels=max_pixels).shape[:2]
        raise
    return height, width


# --------------------------------------------------------------------------- datasets


def _split_order(names: Iterable[str]) -> list[str]:
    order = {name: i for i, name in enumerate((*SPLIT_NAMES, "all"))}
    return sorted(names, key=lambda s: (order.get(s, len(order)), s))


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "__"))


def _list_dir(folder: Path) -> tuple[list[Path], list[Path]]:
    """(visible sub-folders, visible files), both sorted by name."""
    dirs, files = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if not _visible(path):
                continue
            (dirs if entry.is_dir() else files).append(path)
    return sorted(dirs), sorted(files)


def normalize_split(value: str | None) -> str | None:
    """Map a split folder/CSV value (``Training``, ``valid``...) to train/val/test; '' -> None."""
    if value is None or not value.strip():
        return None
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise ValueError(
            f"unknown split {value!r} (use one of: {', '.join(sorted(SPLIT_ALIASES))})"
        )
    return split


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` (case-insensitive), if any."""
    return next((d for d in _list_dir(folder)[0] if d.name.lower() == name.lower()), None)


def _mask_index(mask_dir: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """File name and stem -> mask path, for one class folder of masks."""
    if not mask_dir.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in _list_dir(mask_dir)[1]:
        if path.suffix.lower() in extensions:
            index.setdefault(path.name, path)
            index.setdefault(path.stem, path)
    return index


def _scan_classes(
    base: Path,
    split: str | None,
    extensions: tuple[str, ...],
    notes: list[str],
    shared_masks: Path | None = None,
) -> list[ImageRecord]:
    class_dirs, stray_files = _list_dir(base)
    masks_dir = next((d for d in class_dirs if d.name.lower() == MASK_FOLDER), shared_masks)
    class_dirs = [d for d in class_dirs if d.name.lower() != MASK_FOLDER]
    stray_images = [f for f in stray_files if f.suffix.lower() in extensions]
    if stray_images:
        notes.append(
            f"{base}: {len(stray_images)} image(s) outside any class folder were ignored "
            f"(e.g. {stray_images[0].name})"
        )
    if not class_dirs:
        notes.append(f"{base}: no class folders found")
    records: list[ImageRecord] = []
    for class_dir in class_dirs:
        subdirs, files = _list_dir(class_dir)
        images = [f for f in files if f.suffix.lower() in extensions]
        skipped_dicom = [
            f for f in files if f.suffix.lower() in DICOM_EXTENSIONS and f not in images
        ]
        if skipped_dicom:
            notes.append(
                f"{class_dir}: {len(skipped_dicom)} DICOM file(s) skipped: reading DICOM needs "
                "pydicom (pip install 'kidney_tf[dicom]')"
            )
        if subdirs:
            notes.append(
                f"{class_dir}: {len(subdirs)} sub-folder(s) ignored (only files directly in a "
                f"class folder are read; e.g. {subdirs[0].name})"
            )
        others = [f for f in files if f not in images and f not in skipped_dicom]
        if others:
            notes.append(
                f"{class_dir}: {len(others)} non-image file(s) ignored (e.g. {others[0].name})"
            )
        if not images:
            notes.append(f"{class_dir}: empty class folder (no image files); class left out")
            continue
        masks = _mask_index(masks_dir / class_dir.name, extensions) if masks_dir else {}
        unmatched = 0
        for image in images:
            mask = masks.get(image.name) or masks.get(image.stem)
            unmatched += masks_dir is not None and mask is None
            records.append(
                ImageRecord(str(image), class_dir.name, split, str(mask) if mask else None)
            )
        if masks_dir is not None and unmatched:
            notes.append(f"{class_dir}: {unmatched} of {len(images)} image(s) have no mask")
    return records


def scan_folder(
    root: str | os.PathLike,
    *,
    strict: bool = False,
    validate: bool = True,
    workers: int | None = None,
) -> ScanResult:
    """List a class-folder (or split/class-folder) tree; optionally decode-check every file.

    Args:
        strict: raise :class:`ImageReadError` on the first unreadable file instead of collecting
            :class:`BadFile` entries.
        validate: decode-check every image and mask (masks also size-checked against their image).
        workers: threads for validation (default: up to 8).

    Hidden files/folders and ``masks`` folders never become classes; class names are sorted.
    An empty class folder is reported in ``warnings`` (and left out), never a crash.

    Usage: ``result = scan_folder("brain-tumor-mri-dataset")  # Training/ + Testing/``
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    root = root.absolute()
    extensions = supported_extensions()
    notes: list[str] = []
    subdirs, _ = _list_dir(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    split_dirs.sort(key=lambda d: (SPLIT_NAMES.index(SPLIT_ALIASES[d.name.lower()]), d.name))
    top_masks = next((d for d in subdirs if d.name.lower() == MASK_FOLDER), None)
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs and d != top_masks]
        if others:
            raise ValueError(
                f"{root}: mixed layout: split folders ({', '.join(d.name for d in split_dirs)}) "
                f"next to other folders ({', '.join(others)}); move class folders into the splits"
            )
        seen: dict[str, str] = {}
        records = []
        for split_dir in split_dirs:
            split = SPLIT_ALIASES[split_dir.name.lower()]
            if split in seen:
                raise ValueError(
                    f"{root}: folders {seen[split]!r} and {split_dir.name!r} are both split {split!r}"
                )
            seen[split] = split_dir.name
            # masks: <Split>/masks/<class>/, else masks/<Split>/<class>/
            shared = _child(top_masks, split_dir.name) if top_masks else None
            records.extend(_scan_classes(split_dir, split, extensions, notes, shared))
    else:
        records = _scan_classes(root, None, extensions, notes)
    return _finish(records, notes, strict=strict, validate=validate, workers=workers)


def _finish(
    records: list[ImageRecord],
    notes: list[str],
    *,
    strict: bool,
    validate: bool,
    workers: int | None,
    bad_files: list[BadFile] | None = None,
) -> ScanResult:
    bad_files = list(bad_files or [])
    if validate and records:
        records, found = validate_records(records, strict=strict, workers=workers)
        bad_files.extend(found)
    for note in notes:
        logger.warning("%s", note)
    if bad_files:
        logger.warning("%d file(s) left out as unreadable; first: %s", len(bad_files), bad_files[0])
    class_names = sorted({r.label for r in records})
    return ScanResult(records, class_names, bad_files, notes)


def check_record(record: ImageRecord) -> BadFile | None:
    """Decode-check a record's image and mask (and their sizes); None when it is usable."""
    try:
        height, width = validate_image(record.path)
    except ImageReadError as exc:
        return BadFile(record.path, exc.reason)
    if record.mask_path:
        try:
            mask_h, mask_w = validate_image(record.mask_path)
        except ImageReadError as exc:
            return BadFile(record.mask_path, f"mask of {Path(record.path).name}: {exc.reason}")
        if (mask_h, mask_w) != (height, width):
            return BadFile(
                record.mask_path,
                f"mask size {mask_w}x{mask_h} (WxH) differs from image size {width}x{height} "
                f"({record.path})",
            )
    return None


def validate_records(
    records: Sequence[ImageRecord], *, strict: bool = False, workers: int | None = None
) -> tuple[list[ImageRecord], list[BadFile]]:
    """Split ``records`` into (readable records, bad files), in input order.

    With ``strict=True`` the first bad file (in input order) raises :class:`ImageReadError`.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    good: list[ImageRecord] = []
    bad: list[BadFile] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for record, problem in zip(records, pool.map(check_record, records)):
                if problem is None:
                    good.append(record)
                elif strict:
                    raise ImageReadError(problem.path, problem.reason)
                else:
                    bad.append(problem)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return good, bad


# --------------------------------------------------------------------------- manifest CSVs


def _inside(base: Path, text: str, *, allow_absolute: bool, where: str) -> Path:
    """Resolve a manifest path lexically under ``base``; reject absolute paths and escapes."""
    candidate = Path(text)
    if candidate.is_absolute():
        if not allow_absolute:
            raise ValueError(
                f"{where}: absolute path {text!r} is not allowed; use a path relative to {base}"
            )
    else:
        candidate = base / candidate
    normal = Path(os.path.normpath(candidate))
    if normal != base and base not in normal.parents:
        raise ValueError(f"{where}: path {text!r} escapes the data root {base}")
    # Lexically inside is not enough: a symbolic link inside the root may point anywhere.
    real, real_base = normal.resolve(), base.resolve()
    if real != real_base and real_base not in real.parents:
        raise ValueError(
            f"{where}: path {text!r} is a link that leads outside the data root {base} (to {real})"
        )
    return normal


def read_manifest(
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    strict: bool = False,
    validate: bool = True,
    workers: int | None = None,
) -> ScanResult:
    """Read a manifest CSV (``path,label[,split][,mask_path]``; other columns are ignored).

    Relative paths are resolved against ``root`` (default: the CSV's folder) and may not leave
    it (``..`` escapes and absolute paths raise ``ValueError``; with an explicit ``root``,
    absolute paths inside it are accepted). The file is parsed with :mod:`csv`, never evaluated.
    Missing or unreadable files become :class:`BadFile` entries (or raise with ``strict``).

    Usage: ``result = read_manifest("phantoms/manifest.csv")``
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: manifest CSV not found")
    base = Path(os.path.normpath(Path(root if root is not None else csv_path.parent).absolute()))
    if root is not None and not base.is_dir():
        raise FileNotFoundError(f"{base}: data root folder not found")
    records: list[ImageRecord] = []
    bad_files: list[BadFile] = []
    first_line: dict[str, int] = {}
    notes: list[str] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [(name or "").strip().lower() for name in reader.fieldnames or []]
            missing = [c for c in ("path", "label") if c not in columns]
            if missing:
                raise ValueError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; expected header "
                    f"{','.join(MANIFEST_COLUMNS)} (split and mask_path optional)"
                )
            for row in reader:
                line = reader.line_num
                where = f"{csv_path}:{line}"
                values = {
                    (k or "").strip().lower(): (v or "").strip()
                    for k, v in row.items()
                    if isinstance(v, str)
                }
                if not any(values.values()):
                    continue
                if not values.get("path"):
                    raise ValueError(f"{where}: empty path")
                if not values.get("label"):
                    raise ValueError(f"{where}: empty label for {values['path']!r}")
                try:
                    split = normalize_split(values.get("split"))
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                allow_abs = root is not None
                image = _inside(base, values["path"], allow_absolute=allow_abs, where=where)
                mask_text = values.get("mask_path")
                mask = (
                    _inside(base, mask_text, allow_absolute=allow_abs, where=where)
                    if mask_text
                    else None
                )
                key = str(image)
                if key in first_line:
                    problem = BadFile(
                        key, f"listed again on line {line} (first on line {first_line[key]})"
                    )
                elif not image.is_file():
                    problem = BadFile(key, f"file not found (line {line} of {csv_path.name})")
                elif mask is not None and not mask.is_file():
                    problem = BadFile(str(mask), f"mask not found (line {line} of {csv_path.name})")
                else:
                    problem = None
                    first_line[key] = line
                    records.append(
                        ImageRecord(key, values["label"], split, str(mask) if mask else None)
                    )
                if problem is not None:
                    if strict:
                        raise ImageReadError(problem.path, problem.reason)
                    bad_files.append(problem)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{csv_path}: not a UTF-8 text CSV ({exc.reason})") from None
    except csv.Error as exc:
        raise ValueError(f"{csv_path}: malformed CSV ({exc})") from None
    if not records and not bad_files:
        notes.append(f"{csv_path}: manifest lists no images")
    return _finish(
        records, notes, strict=strict, validate=validate, workers=workers, bad_files=bad_files
    )


def write_manifest(
    records: Iterable[ImageRecord],
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
) -> Path:
    """Write ``records`` as a manifest CSV atomically, paths relative to ``root`` (default: the
    CSV's folder) so that ``read_manifest(csv_path, root=root)`` reads them back.

    Usage: ``write_manifest(result.records, "splits/manifest.csv", root="data/")``
    """
    csv_path = Path(csv_path)
    base = Path(os.path.normpath(Path(root if root is not None else csv_path.parent).absolute()))
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        for record in records:
            row = [record.path, record.mask_path]
            for i, value in enumerate(row):
                if value is None:
                    continue
                absolute = Path(os.path.normpath(Path(value).absolute()))
                if absolute != base and base not in absolute.parents:
                    raise ValueError(f"{value}: outside the manifest root {base}; pass root=")
                row[i] = absolute.relative_to(base).as_posix()
            writer.writerow([row[0], record.label, record.split or "", row[1] or ""])
    return csv_path


def load_source(
    source: str | os.PathLike,
    *,
    strict: bool = False,
    validate: bool = True,
    workers: int | None = None,
) -> ScanResult:
    """A dataset folder (:func:`scan_folder`) or a manifest ``.csv`` (:func:`read_manifest`).

    Usage: ``result = load_source("phantoms/manifest.csv")``
    """
    path = Path(source)
    if path.is_dir():
        return scan_folder(path, strict=strict, validate=validate, workers=workers)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_manifest(path, strict=strict, validate=validate, workers=workers)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset folder or manifest CSV")
    raise ValueError(f"{path}: not a dataset folder or a .csv manifest")


def _is_dicom_file(path: str | os.PathLike) -> bool:
    from kidney_tf.data.dicom import is_dicom_file

    return is_dicom_file(path)
