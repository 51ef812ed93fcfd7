"""Optional DICOM reading: stored values -> Hounsfield units -> windowed ``uint8``.

Needs pydicom (``pip install 'kidney_tf[dicom]'``); without it every function here raises
``ImportError`` saying so, and :func:`kidney_tf.data.reading.scan_folder` skips ``.dcm`` files with
a warning.

Pipeline for one slice:

1. Modality LUT (``RescaleSlope``/``RescaleIntercept``, or a Modality LUT Sequence) via pydicom's
   ``apply_modality_lut``: CT stored values become Hounsfield units (HU).
2. Windowing with a named preset or ``(center, width)``: values in
   ``[center - width/2, center + width/2]`` map linearly to 0..255, below -> 0, above -> 255.
3. ``MONOCHROME1`` images (white = low value) are inverted so that high values are bright.

Window presets (center, width in HU) follow the standard CT display settings listed in
Radiopaedia, "Windowing (CT)" (https://radiopaedia.org/articles/windowing-ct): soft tissues
W 350-400 / L 20-60 (we use L 40 / W 400 for kidney/abdomen, the common abdominal soft-tissue
window), brain W 80 / L 40, bone W 1800 / L 400, lungs W 1500 / L -600, liver W 150 / L 30,
mediastinum W 350 / L 50.

Usage::

    from kidney_tf.data.dicom import read_dicom
    slice_u8 = read_dicom("IM0001.dcm", window="kidney")        # uint8 (H, W)
    bone_u8 = read_dicom("IM0001.dcm", window=(400, 1800))
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from kidney_tf.data.pixels import ImageReadError, scale_uint16

#: Named windows: name -> (center, width) in HU. Source: Radiopaedia "Windowing (CT)".
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "kidney": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "soft_tissue": (40.0, 400.0),
    "liver": (30.0, 150.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
}
#: Window used for CT when none is given.
DEFAULT_CT_WINDOW = "kidney"
#: Special window names: the file's own VOI window, or the slice's min..max.
FILE_WINDOW = "file"
MINMAX_WINDOW = "minmax"

INSTALL_HINT = "reading DICOM needs pydicom: pip install 'kidney_tf[dicom]'"

Window = str | tuple[float, float] | None


def _import_pydicom() -> ModuleType:
    try:
        import pydicom
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return pydicom


def pydicom_available() -> bool:
    """True when pydicom can be imported."""
    try:
        _import_pydicom()
    except ImportError:
        return False
    return True


def require_pydicom() -> ModuleType:
    """Return the pydicom module or raise ``ImportError`` with the install command."""
    return _import_pydicom()


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True if ``path`` has the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _error(path: str | os.PathLike, reason: str) -> Exception:
    return ImageReadError(path, reason)


def read_dataset(path: str | os.PathLike, *, stop_before_pixels: bool = False) -> Any:
    """Parse a DICOM file with pydicom; failures raise ``ImageReadError`` naming the file."""
    pydicom = _import_pydicom()
    p = Path(path)
    if not p.is_file():
        raise _error(p, "file not found")
    if p.stat().st_size == 0:
        raise _error(p, "empty file (0 bytes)")
    try:
        return pydicom.dcmread(p, stop_before_pixels=stop_before_pixels)
    except pydicom.errors.InvalidDicomError as exc:
        raise _error(p, f"not a valid DICOM file ({exc})") from None
    except (OSError, ValueError, EOFError, KeyError, AttributeError) as exc:
        raise _error(p, f"corrupt DICOM file ({exc})") from exc


def dicom_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(rows, columns)`` of a DICOM image from its header."""
    ds = read_dataset(path, stop_before_pixels=True)
    try:
        return int(ds.Rows), int(ds.Columns)
    except AttributeError:
        raise _error(path, "DICOM file has no Rows/Columns (not an image)") from None


def _modality_lut() -> Any:
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return apply_modality_lut


def _pixels(ds: Any, path: str | os.PathLike, frame: int | None) -> np.ndarray:
    if "PixelData" not in ds:
        raise _error(path, "DICOM file has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for missing codecs / bad data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise _error(path, f"cannot decode pixel data (transfer syntax {name}): {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        if frame is None:
            raise _error(
                path, f"multi-frame DICOM ({frames} frames): pass frame=<index> to read_dicom"
            )
        if not 0 <= frame < frames:
            raise _error(path, f"frame {frame} out of range (0..{frames - 1})")
        pixels = pixels[frame]
    elif frame not in (None, 0):
        raise _error(path, f"frame {frame} out of range (single-frame file)")
    return pixels


def to_hounsfield(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """Apply the Modality LUT (rescale slope/intercept) -> float32 (HU for CT)."""
    return np.asarray(_modality_lut()(pixels, ds), dtype=np.float32)


def dicom_to_hu(path: str | os.PathLike, *, frame: int | None = None) -> np.ndarray:
    """Modality values of one slice as float32 ``(H, W)`` (Hounsfield units for CT).

    Usage: ``hu = dicom_to_hu("IM0001.dcm")``
    """
    ds = read_dataset(path)
    pixels = _pixels(ds, path, frame)
    if pixels.ndim != 2:
        raise _error(path, f"expected a grayscale slice, got pixel array of shape {pixels.shape}")
    return to_hounsfield(ds, pixels)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window: ``[center - width/2, center + width/2]`` -> 0..255 ``uint8`` (clipped)."""
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    low = center - width / 2.0
    scaled = (np.asarray(values, dtype=np.float32) - low) * (255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _first(value: Any) -> float:
    """WindowCenter/Width may be multi-valued: take the first."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def resolve_window(
    window: Window, ds: Any = None, values: np.ndarray | None = None
) -> tuple[float, float]:
    """``(center, width)`` for a preset name, ``"file"``, ``"minmax"``, a pair, or None (auto).

    Auto: CT -> the ``kidney`` preset; other modalities -> the file's VOI window if present,
    else the slice's min..max.
    """
    if window is None:
        modality = str(getattr(ds, "Modality", "")).upper() if ds is not None else ""
        if modality == "CT":
            window = DEFAULT_CT_WINDOW
        elif ds is not None and "WindowCenter" in ds and "WindowWidth" in ds:
            window = FILE_WINDOW
        else:
            window = MINMAX_WINDOW
    if isinstance(window, str):
        name = window.strip().lower()
        if name in WINDOW_PRESETS:
            return WINDOW_PRESETS[name]
        if name == FILE_WINDOW:
            if ds is None or "WindowCenter" not in ds or "WindowWidth" not in ds:
                raise ValueError("window='file' but the DICOM file has no WindowCenter/Width")
            return _first(ds.WindowCenter), _first(ds.WindowWidth)
        if name == MINMAX_WINDOW:
            if values is None:
                raise ValueError("window='minmax' needs the pixel values")
            low, high = float(np.min(values)), float(np.max(values))
            return (low + high) / 2.0, max(high - low, 1e-6)
        known = ", ".join([*WINDOW_PRESETS, FILE_WINDOW, MINMAX_WINDOW])
        raise ValueError(f"unknown window {window!r}; use one of {known} or (center, width)")
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a name or (center, width), got {window!r}") from None
    return center, width


def read_dicom(
    path: str | os.PathLike,
    *,
    window: Window = None,
    frame: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read one DICOM slice as ``uint8``: ``(H, W)`` for grayscale, ``(H, W, 3)`` for colour.

    Args:
        window: preset name (see :data:`WINDOW_PRESETS`), ``"file"`` (the file's own VOI
            window), ``"minmax"``, ``(center, width)``, or None (auto, see :func:`resolve_window`).
        frame: frame index for multi-frame files (required there).
        max_pixels: refuse images with more pixels than this (checked from the header).

    Raises:
        ImportError: pydicom missing. ImageReadError: unreadable file (names file and reason).

    Usage: ``u8 = read_dicom("slice.dcm", window="kidney")``
    """
    ds = read_dataset(path)
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if max_pixels is not None and rows * cols > max_pixels:
        raise _error(path, f"image is {cols}x{rows} > max_pixels={max_pixels:,}")
    pixels = _pixels(ds, path, frame)
    if pixels.ndim == 3:  # colour (RGB after pydicom's YBR conversion)
        if pixels.dtype == np.uint8:
            return np.ascontiguousarray(pixels)
        return scale_uint16(np.clip(pixels, 0, 65535))
    values = to_hounsfield(ds, pixels)
    try:
        center, width = resolve_window(window, ds, values)
    except ValueError as exc:
        raise _error(path, str(exc)) from None
    out = apply_window(values, center, width)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return out
