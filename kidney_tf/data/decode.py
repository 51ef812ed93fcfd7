"""Decode one image or mask file to pixels, under a memory bound.

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
* DICOM (``.dcm``, or any file with the DICM preamble) goes through :mod:`kidney_tf.data.dicom`.

Usage::

    from kidney_tf.data.decode import read_image, read_mask
    image = read_image("Cyst/Cyst- (1).jpg")                   # uint8 (H, W, 3)
    mask = read_mask("masks/Cyst/Cyst- (1).png", shape=image.shape[:2])
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from kidney_tf.data import dicom
from kidney_tf.data.pixels import ImageReadError, scale_uint16
from kidney_tf.utils.logging import get_logger

logger = get_logger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
#: Images with more pixels than this are decoded at reduced scale (JPEG) or refused (others).
DEFAULT_MAX_PIXELS = 50_000_000
#: Environment variable that replaces the default limit (0: none), set by ``--max-pixels`` so that
#: tf.data workers and every reader of one command see the same limit.
MAX_PIXELS_ENV = "KIDNEY_TF_MAX_PIXELS"
#: ``max_pixels`` argument meaning "the limit in force" (:func:`max_pixels_limit`).
DEFAULT = "default"

_JPEG_SCALES = (1, 2, 4, 8)
#: Side JPEG validation decodes to (<= 1/8 scale: every entropy-coded byte is still read).
_VALIDATE_SIDE = 64


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


def supported_extensions() -> tuple[str, ...]:
    """Image extensions that :func:`~kidney_tf.data.sources.scan_folder` picks up (``.dcm`` only
    with pydicom)."""
    return IMAGE_EXTENSIONS + (DICOM_EXTENSIONS if dicom.pydicom_available() else ())


def is_dicom_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in ``.dcm`` or ``.dicom`` (any case)."""
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
        if "not a recognised image" in exc.reason and dicom.is_dicom_file(path):
            return _read_dicom_rgb(path, max_side=max_side, max_pixels=max_pixels)
        raise
    return _fit_side(array, max_side)


def _read_dicom_rgb(
    path: str | os.PathLike, *, max_side: int | None, max_pixels: int | None
) -> np.ndarray:
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
        return dicom.read_dicom(path, max_pixels=max_pixels).shape[:2]
    try:
        with _open(path) as image:
            width, height = image.size
            _decode(image, path, max_pixels, _VALIDATE_SIDE)
            if image.mode in ("F", "I"):  # pixel types read_image refuses
                _to_rgb(image, path)
    except ImageReadError as exc:
        if "not a recognised image" in exc.reason and dicom.is_dicom_file(path):
            return read_image(path, max_pixels=max_pixels).shape[:2]
        raise
    return height, width
