"""Optional DICOM reading: stored values -> Hounsfield units -> windowed ``uint8``.

Needs pydicom (``pip install 'kidney_tf[dicom]'``); without it every function here raises
``ImportError`` saying so, and :func:`kidney_tf.data.sources.scan_folder` skips ``.dcm`` files with
a warning.

Pipeline for one slice:

1. Modality LUT (``RescaleSlope``/``RescaleIntercept``, or a Modality LUT Sequence) via pydicom's
   ``apply_modality_lut``: CT stored values become Hounsfield units (HU).
2. VOI windowing via pydicom's ``apply_windowing``/``apply_voi_lut`` (DICOM PS3.3 C.11.2), scaled
   to 0..255: a named preset or ``(center, width)`` uses the standard's ``LINEAR`` function;
   ``window="file"`` uses the file's own VOI LUT Sequence or window with its ``VOILUTFunction``
   (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``); ``"minmax"`` maps the slice's range exactly
   (``LINEAR_EXACT``).
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


def _pixel_function(name: str) -> Any:
    """A function of ``pydicom.pixels`` (pydicom 3) or ``pydicom.pixel_data_handlers.util`` (2.x)."""
    try:
        import pydicom.pixels as module
    except ImportError:  # pydicom 2.x
        import pydicom.pixel_data_handlers.util as module
    return getattr(module, name)


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
    return np.asarray(_pixel_function("apply_modality_lut")(pixels, ds), dtype=np.float32)


def dicom_to_hu(path: str | os.PathLike, *, frame: int | None = None) -> np.ndarray:
    """Modality values of one slice as float32 ``(H, W)`` (Hounsfield units for CT).

    Usage: ``hu = dicom_to_hu("IM0001.dcm")``
    """
    ds = read_dataset(path)
    pixels = _pixels(ds, path, frame)
    if pixels.ndim != 2:
        raise _error(path, f"expected a grayscale slice, got pixel array of shape {pixels.shape}")
    return to_hounsfield(ds, pixels)


def apply_window(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """VOI window (DICOM ``VOILUTFunction``, default ``LINEAR``) -> 0..255 ``uint8``.

    pydicom's ``apply_windowing`` with an 8-bit output range. ``LINEAR`` (the standard's, what a
    DICOM viewer shows) needs ``width >= 1``; ``LINEAR_EXACT`` maps
    ``[center - width/2, center + width/2]`` onto 0..255; ``SIGMOID`` is the standard's sigmoid.

    Usage: ``u8 = apply_window(hu, 40, 400)``
    """
    from pydicom.dataset import Dataset

    voi = Dataset()  # only what apply_windowing reads; 8 unsigned bits -> output range 0..255
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 8
    voi.PixelRepresentation = 0
    voi.WindowCenter = float(center)
    voi.WindowWidth = float(width)
    voi.VOILUTFunction = str(function).upper()
    windowed = _pixel_function("apply_windowing")(np.asarray(values, dtype=np.float64), voi)
    return np.clip(np.rint(windowed), 0, 255).astype(np.uint8)


def _apply_file_voi(values: np.ndarray, ds: Any) -> np.ndarray:
    """The file's own VOI (LUT Sequence first, as pydicom prefers, else its window) -> uint8."""
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
            entries, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
            # Clip to the LUT's input range first (the standard clips there too): pydicom 3.0's
            # apply_voi subtracts in the LUT's dtype, so an 8-bit LUT wraps inputs >= 256.
            inputs = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
            lut = _pixel_function("apply_voi")(inputs, ds)
            top = 2 ** int(item.LUTDescriptor[2]) - 1
            return np.clip(np.rint(lut.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        raise ValueError("window='file' but the DICOM file has no VOI LUT or WindowCenter/Width")
    function = str(ds.get("VOILUTFunction", "") or "LINEAR")
    return apply_window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)


def _first(value: Any) -> float:
    """WindowCenter/Width may be multi-valued: take the first."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _has_file_voi(ds: Any) -> bool:
    return ds is not None and (
        bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)
    )


def window_slice(values: np.ndarray, window: Window = None, ds: Any = None) -> np.ndarray:
    """Modality values -> ``uint8`` through a preset name, ``"file"``, ``"minmax"``, a pair or None.

    None (auto): CT -> the ``kidney`` preset; other modalities -> the file's VOI (LUT Sequence or
    window) if present, else the slice's min..max. Bad windows raise ``ValueError``.

    Usage: ``u8 = window_slice(hu, "bone")``
    """
    if window is None:
        modality = str(getattr(ds, "Modality", "")).upper() if ds is not None else ""
        if modality == "CT":
            window = DEFAULT_CT_WINDOW
        else:
            window = FILE_WINDOW if _has_file_voi(ds) else MINMAX_WINDOW
    if isinstance(window, str):
        name = window.strip().lower()
        if name in WINDOW_PRESETS:
            return apply_window(values, *WINDOW_PRESETS[name])
        if name == FILE_WINDOW:
            if ds is None:
                raise ValueError("window='file' needs the DICOM dataset")
            return _apply_file_voi(values, ds)
        if name == MINMAX_WINDOW:
            low, high = float(np.min(values)), float(np.max(values))
            return apply_window(values, (low + high) / 2.0, max(high - low, 1e-6), "LINEAR_EXACT")
        known = ", ".join([*WINDOW_PRESETS, FILE_WINDOW, MINMAX_WINDOW])
        raise ValueError(f"unknown window {window!r}; use one of {known} or (center, width)")
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a name or (center, width), got {window!r}") from None
    return apply_window(values, center, width)


def read_dicom(
    path: str | os.PathLike,
    *,
    window: Window = None,
    frame: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read one DICOM slice as ``uint8``: ``(H, W)`` for grayscale, ``(H, W, 3)`` for colour.

    Args:
        window: preset name (see :data:`WINDOW_PRESETS`), ``"file"`` (the file's own VOI LUT or
            window and ``VOILUTFunction``), ``"minmax"``, ``(center, width)``, or None (auto, see
            :func:`window_slice`).
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
        out = window_slice(values, window, ds)
    except (ValueError, NotImplementedError) as exc:  # bad window / unsupported VOI LUT depth
        raise _error(path, str(exc)) from None
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return out
