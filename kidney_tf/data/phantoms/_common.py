"""Shared phantom machinery: stable seeding, resolution-independent drawing, fields and noise.

All geometry is given in unit coordinates: ``(x, y)`` in ``[0, 1]``, ``x`` to the right, ``y`` down,
so one random draw gives the same anatomy at any ``image_size``. Only the final pixel noise is
drawn per pixel, from its own random stream.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

# Sub-pixel precision of OpenCV drawing (coordinates are fixed-point with this many fraction bits).
_SHIFT = 4
_SCALE = 1 << _SHIFT
# Size of the random grids behind smooth fields, independent of the output resolution.
FIELD_GRID = 24


@dataclass
class PhantomSample:
    """One rendered phantom.

    ``image`` uint8 HxW, ``mask`` bool HxW (the lesion; empty for the normal class), ``organ`` bool
    HxW (where lesions arise, drawn before the lesion: both kidneys / the intracranial space) and
    ``meta`` (the main random parameters, for figures and debugging).
    """

    image: np.ndarray
    mask: np.ndarray
    organ: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Streams:
    """Independent random streams for one image (geometry, lesion, texture, pixel noise)."""

    anatomy: np.random.Generator
    lesion: np.random.Generator
    texture: np.random.Generator
    noise: np.random.Generator


def stable_streams(seed: int, kind: str, class_name: str, index: int) -> Streams:
    """Random streams seeded from ``(seed, kind, class, index)`` with a process-independent hash.

    Python's ``hash()`` of strings is salted per process, so strings go through CRC-32 instead.
    Usage: ``streams = stable_streams(0, "kidney-ct", "Cyst", 3)``.
    """
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be non-negative integers, got {seed} and {index}")
    entropy = [
        int(seed),
        zlib.crc32(kind.encode("utf-8")),
        zlib.crc32(class_name.encode("utf-8")),
        int(index),
    ]
    children = np.random.SeedSequence(entropy).spawn(4)
    return Streams(*(np.random.default_rng(child) for child in children))


class Canvas:
    """Draws unit-coordinate shapes as boolean masks of a ``size x size`` image.

    Usage: ``canvas = Canvas(256); body = canvas.polygon(ellipse_points((0.5, 0.5), (0.4, 0.3)))``.
    """

    def __init__(self, size: int) -> None:
        if int(size) < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {size}")
        self.size = int(size)
        self.shape = (self.size, self.size)
        self.transform: np.ndarray | None = None  # 2x3 affine map applied to every shape drawn

    def rotate_about(self, center: tuple[float, float], angle: float) -> None:
        """Rotate everything drawn from now on by ``angle`` degrees about ``center``."""
        matrix = rotation(angle)
        offset = np.asarray(center, dtype=np.float64) - matrix @ np.asarray(center)
        self.transform = np.hstack([matrix, offset[:, None]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Unit coordinates after the current transform (N x 2)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.transform is None:
            return pts
        return pts @ self.transform[:, :2].T + self.transform[:, 2]

    def _fixed(self, points: np.ndarray) -> np.ndarray:
        pixels = self.apply(points) * self.size - 0.5
        return np.rint(pixels * _SCALE).astype(np.int32).reshape(-1, 1, 2)

    def polygon(self, points: np.ndarray) -> np.ndarray:
        """Filled polygon (N x 2 unit coordinates) as a bool mask."""
        canvas = np.zeros(self.shape, np.uint8)
        cv2.fillPoly(canvas, [self._fixed(points)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        return canvas.view(bool)

    def polyline(self, points: np.ndarray, width: float, *, closed: bool = False) -> np.ndarray:
        """A polyline ``width`` unit coordinates wide (at least one pixel) as a bool mask."""
        canvas = np.zeros(self.shape, np.uint8)
        thickness = max(1, round(width * self.size))
        cv2.polylines(canvas, [self._fixed(points)], closed, 1, thickness, cv2.LINE_8, shift=_SHIFT)
        return canvas.view(bool)

    def pixels(self, length: float) -> float:
        """A unit-coordinate length in pixels."""
        return float(length) * self.size

    def smooth_field(self, rng: np.random.Generator, grid: int = FIELD_GRID) -> np.ndarray:
        """A smooth random field of unit variance (same field at any resolution)."""
        coarse = rng.standard_normal((grid, grid)).astype(np.float32)
        fine = cv2.resize(coarse, self.shape, interpolation=cv2.INTER_CUBIC)
        return (fine - fine.mean()) / max(float(fine.std()), 1e-6)

    def blur(self, image: np.ndarray, sigma: float) -> np.ndarray:
        """Gaussian blur with ``sigma`` in unit coordinates (no-op below a tenth of a pixel)."""
        sigma_px = self.pixels(sigma)
        if sigma_px < 0.1:
            return image
        return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)

    def correlated_noise(self, rng: np.random.Generator, sigma_px: float = 0.6) -> np.ndarray:
        """Unit-variance pixel noise with a short correlation length (``sigma_px`` pixels)."""
        noise = rng.standard_normal(self.shape).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma_px)
        return noise / max(float(noise.std()), 1e-6)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit coordinates of the pixel centres, ``(x, y)`` each HxW."""
        centres = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        return np.meshgrid(centres, centres)


def rotation(angle_deg: float) -> np.ndarray:
    """2x2 rotation matrix (image coordinates, y down: positive angles turn clockwise)."""
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def ellipse_points(
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
    *,
    n: int = 96,
) -> np.ndarray:
    """Polygon (n x 2) of an ellipse with semi-axes ``radii`` rotated by ``angle`` degrees."""
    return blob_points(center, radii, angle, radial=np.ones(n))


def random_radial(
    rng: np.random.Generator,
    roughness: float,
    *,
    harmonics: tuple[int, int] = (2, 6),
    n: int = 96,
) -> np.ndarray:
    """Radial profile ``r(theta) = 1 + sum_k a_k cos(k theta + phi_k)`` with ``a_k ~ roughness/k``."""
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ks = np.arange(harmonics[0], harmonics[1] + 1)
    amplitudes = rng.normal(0.0, roughness, ks.size) / np.sqrt(ks)
    phases = rng.uniform(0.0, 2 * np.pi, ks.size)
    radial = 1.0 + (amplitudes[:, None] * np.cos(ks[:, None] * theta + phases[:, None])).sum(0)
    return np.clip(radial, 0.35, None)


def blob_points(
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
    *,
    radial: np.ndarray,
) -> np.ndarray:
    """Polygon of a star-shaped blob: ellipse ``radii`` scaled by the radial profile ``radial``."""
    theta = np.linspace(0.0, 2 * np.pi, radial.size, endpoint=False)
    local = np.stack([radii[0] * radial * np.cos(theta), radii[1] * radial * np.sin(theta)], axis=1)
    return local @ rotation(angle).T + np.asarray(center, dtype=np.float64)


def random_blob(
    rng: np.random.Generator,
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
    *,
    roughness: float = 0.1,
    harmonics: tuple[int, int] = (2, 6),
    n: int = 96,
) -> np.ndarray:
    """Polygon of an irregular blob (perturbed ellipse)."""
    radial = random_radial(rng, roughness, harmonics=harmonics, n=n)
    return blob_points(center, radii, angle, radial=radial)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
