"""What the image and DICOM readers share: their error and the 16-bit to 8-bit pixel scaling.

Usage::

    from kidney_tf.data.pixels import ImageReadError, scale_uint16
    raise ImageReadError("scan.png", "zero-byte file")
"""

from __future__ import annotations

import os

import numpy as np


class ImageReadError(ValueError):
    """A file that cannot be read as an image. ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) through pickling (process pools)
        return (type(self), (self.path, self.reason))


def scale_uint16(values: np.ndarray) -> np.ndarray:
    """Full uint16 range -> uint8: ``round(v * 255 / 65535)``."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


__all__ = ["ImageReadError", "scale_uint16"]
