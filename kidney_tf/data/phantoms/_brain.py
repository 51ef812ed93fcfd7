"""Axial brain MRI phantoms (T1 post-contrast look): glioma, meningioma, notumor, pituitary.

Anatomy (all classes alike): an off-centre, randomly scaled and tilted head on a black background
(so the brain-contour crop matters), scalp with bright fat, dark skull tables around bright
diploe, a thin CSF rim, grey/white matter with cortical sulci, the interhemispheric fissure,
lateral and third ventricles with enhancing choroid plexus, deep grey nuclei, and the suprasellar
cistern with enhancing vessels. Scanner effects: bias field, gain/gamma and Rician noise.

Lesions: glioma (intra-axial, irregular, ring-enhancing with a necrotic centre or non-enhancing,
with surrounding oedema), meningioma (extra-axial, dural-based on the inner skull, bright and
homogeneous with a CSF cleft), pituitary (small enhancing midline sellar/suprasellar mass).
Head-local coordinates: ``u`` lateral, ``v`` antero-posterior, both in ``[-1, 1]``, ``v = -1`` at
the front (top of the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kidney_tf.data.phantoms._common import (
    Canvas,
    PhantomSample,
    Streams,
    ellipse_points,
    random_blob,
    random_radial,
    rotation,
    to_uint8,
)

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
NORMAL_CLASS = "notumor"

# Nominal T1 post-contrast signal (0-255 before gain, gamma, bias field and noise).
_WM = 150.0
_GM = 112.0
_CSF = 32.0
_FAT = 215.0
_BONE = 22.0
_ENHANCING = 225.0


@dataclass
class _Head:
    """Placement of the head on the image: centre, semi-axes and tilt."""

    center: np.ndarray
    ha: float
    hb: float
    tilt: float

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Head-local ``(u, v)`` points -> unit image coordinates."""
        pts = np.asarray(local, dtype=np.float64).reshape(-1, 2) * (self.ha, self.hb)
        return pts @ rotation(self.tilt).T + self.center

    def blob(
        self,
        rng: np.random.Generator,
        center: tuple[float, float],
        radius: float,
        *,
        aspect: float = 1.0,
        roughness: float = 0.1,
        harmonics: tuple[int, int] = (2, 6),
    ) -> np.ndarray:
        """Irregular blob at head-local ``center`` with ``radius`` in head units (of ``hb``)."""
        r = radius * self.hb
        pts = random_blob(
            rng,
            (0.0, 0.0),
            (r, r * aspect),
            rng.uniform(0, 180),
            roughness=roughness,
            harmonics=harmonics,
        )
        return pts + self.to_image([center])[0]

    def units(self, length: float) -> float:
        """Head units -> unit image coordinates."""
        return length * self.hb


def render_brain_mri(
    class_name: str, streams: Streams, size: int, lesion_scale: float = 1.0
) -> PhantomSample:
    """Render one brain MRI phantom (see module docstring). Usage: via ``render_phantom``.

    ``lesion_scale`` multiplies every tumour's radius; the anatomy and random draws stay the same.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown brain-mri class {class_name!r}; expected one of {CLASSES}")
    canvas = Canvas(size)
    rng = streams.anatomy
    tex = streams.texture

    # --- placement: scale, off-centre position and tilt (the crop has work to do) -------------
    height = float(rng.uniform(0.54, 0.95))
    hb = height / 2.0
    ha = hb * float(rng.uniform(0.74, 0.88))
    center = np.array(
        [rng.uniform(ha + 0.02, 0.98 - ha), rng.uniform(hb + 0.02, 0.98 - hb)], dtype=np.float64
    )
    head = _Head(center, ha, hb, float(np.clip(rng.normal(0.0, 7.0), -18.0, 18.0)))

    img = np.zeros(canvas.shape, np.float32)
    if rng.random() < 0.3:  # faint field-of-view rectangle behind the head
        pad = rng.uniform(0.0, 0.06, 4)
        x0, y0 = center - (ha, hb) - pad[:2]
        x1, y1 = center + (ha, hb) + pad[2:]
        rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        img[canvas.polygon(np.clip(rect, 0.0, 1.0))] = float(rng.uniform(6.0, 18.0))

    # --- scalp and skull: layers by depth below the skin ---------------------------------------
    radial = random_radial(rng, 0.025, harmonics=(2, 4), n=128)
    theta = np.linspace(0.0, 2 * np.pi, radial.size, endpoint=False)
    local = np.stack([radial * np.cos(theta), radial * np.sin(theta)], axis=1)
    local[:, 0] *= 1.0 + 0.07 * local[:, 1]  # wider at the back
    head_mask = canvas.polygon(head.to_image(local))
    depth = cv2.distanceTransform(head_mask.astype(np.uint8), cv2.DIST_L2, 5) / canvas.size
    depth = depth / (1.0 + 0.25 * np.abs(canvas.smooth_field(tex, 8)))
    scale = hb / 0.4
    layers = [  # (thickness in unit coordinates at a 0.8-high head, signal)
        (0.006, 95.0),  # skin and galea
        (rng.uniform(0.006, 0.013), _FAT * rng.uniform(0.85, 1.05)),  # subcutaneous fat
        (0.004, _BONE),  # outer table
        (rng.uniform(0.004, 0.009), rng.uniform(120.0, 190.0)),  # diploe (marrow)
        (0.004, _BONE),  # inner table
        (rng.uniform(0.003, 0.006), _CSF),  # dura and subarachnoid CSF
    ]
    edge = 0.0
    for thickness, value in layers:
        img[depth > edge] = value
        edge += thickness * scale
    intracranial = depth > edge - layers[-1][0] * scale
    brain = depth > edge
    brain_depth = depth - edge

    # --- brain: white matter, cortical ribbon, sulci and fissure --------------------------------
    gm = _GM * float(rng.uniform(0.92, 1.08))
    wm = _WM * float(rng.uniform(0.94, 1.06))
    img[brain] = wm + 4.0 * canvas.smooth_field(tex, 30)[brain]
    sulci = _sulci(canvas, head, rng, edge) & brain
    fissure = np.zeros(canvas.shape, bool)
    for v0, v1 in ((-1.1, -0.58), (0.45, 1.1)):
        fissure |= canvas.polyline(head.to_image([[0.0, v0], [0.0, v1]]), 0.005 * scale)
    sulci |= fissure & brain
    to_sulcus = cv2.distanceTransform((~sulci).astype(np.uint8), cv2.DIST_L2, 3) / canvas.size
    t_gm = 0.011 * scale
    cortex = brain & ((brain_depth < t_gm) | (to_sulcus < t_gm * 0.9))
    img[cortex] = gm + 4.0 * canvas.smooth_field(tex, 30)[cortex]
    img[sulci] = _CSF

    # --- deep grey nuclei ------------------------------------------------------------------------
    nuclei = np.zeros(canvas.shape, np.float32)
    for side in (-1, 1):
        for (u, v), r in (((0.14, -0.12), 0.08), ((0.27, 0.0), 0.1), ((0.1, 0.14), 0.1)):
            nucleus = head.to_image(ellipse_points((side * u, v), (r * 0.8, r), n=48))
            nuclei[canvas.polygon(nucleus)] = 1.0
    nuclei = canvas.blur(nuclei, head.units(0.025)) * (brain & ~cortex)  # soft-edged
    img -= nuclei * (wm - gm) * 0.55

    # --- ventricles and the suprasellar cistern ---------------------------------------------------
    ventricles = _ventricles(canvas, head, rng)
    sella_v = float(rng.uniform(-0.5, -0.42))
    cistern = canvas.polygon(
        head.blob(rng, (0.0, sella_v), rng.uniform(0.06, 0.09), roughness=0.2, harmonics=(4, 6))
    )
    vessels = []
    for _ in range(int(rng.integers(2, 5))):
        ang = rng.uniform(0, 2 * np.pi)
        dot = (0.085 * np.cos(ang), sella_v + 0.085 * np.sin(ang))
        vessels.append(canvas.polygon(head.blob(rng, dot, rng.uniform(0.012, 0.022))))

    # --- lesion (oedema before the ventricles, tumour after) ------------------------------------
    les_rng = streams.lesion
    mask = np.zeros(canvas.shape, bool)
    meta: dict = {"head_center": tuple(center), "head_axes": (ha, hb)}
    glioma = None
    if class_name == "glioma":
        glioma = _glioma_geometry(les_rng, head, lesion_scale)
        oedema = canvas.polygon(
            head.blob(les_rng, glioma[0], glioma[1] * les_rng.uniform(1.5, 2.1), roughness=0.22)
        )
        fade = canvas.blur(oedema.astype(np.float32), head.units(0.03)) * brain  # fuzzy margin
        img *= 1.0 - 0.22 * fade * (1.0 + 0.2 * canvas.smooth_field(tex, 40))
    img[ventricles & brain] = _CSF
    img[cistern & brain] = _CSF
    for vessel in vessels:
        img[vessel & brain] = _ENHANCING * 0.9
    choroid = _choroid(canvas, head, rng) & ventricles
    img[choroid] = _ENHANCING * 0.75

    if glioma is not None:
        mask = _paint_glioma(img, canvas, head, les_rng, tex, glioma, wm) & intracranial
    elif class_name == "meningioma":
        mask = _paint_meningioma(
            img, canvas, head, les_rng, tex, depth, edge, intracranial, lesion_scale
        )
    elif class_name == "pituitary":
        mask = _paint_pituitary(img, canvas, head, les_rng, sella_v, lesion_scale) & intracranial

    # --- scanner: point spread, bias field, gain/gamma, Rician noise ---------------------------
    img = canvas.blur(img, 0.0018)
    img *= np.exp(0.12 * canvas.smooth_field(rng, 4))
    gain = float(rng.uniform(0.8, 1.2))
    gamma = float(rng.uniform(0.8, 1.25))
    img = 255.0 * (np.clip(img * gain, 0.0, 255.0) / 255.0) ** gamma
    sigma = float(rng.uniform(2.0, 6.0))
    noise = streams.noise.standard_normal((2, *canvas.shape)).astype(np.float32) * sigma
    img = np.sqrt((img + noise[0]) ** 2 + noise[1] ** 2)
    meta.update(gain=gain, gamma=gamma)
    return PhantomSample(image=to_uint8(img), mask=mask, organ=intracranial, meta=meta)


def _ventricles(canvas: Canvas, head: _Head, rng: np.random.Generator) -> np.ndarray:
    """Lateral ventricles (frontal horn, body, atrium, occipital horn) and the third ventricle."""
    size = float(rng.uniform(0.7, 1.3))  # atrophy / age variation, same for every class
    path = np.array(
        [
            [0.05, -0.28],
            [0.1, -0.21],
            [0.12, -0.08],
            [0.13, 0.06],
            [0.18, 0.2],
            [0.25, 0.3],
            [0.24, 0.42],
        ]
    )
    widths = np.array([0.05, 0.11, 0.07, 0.05, 0.07, 0.1, 0.03]) * size
    path = path + rng.normal(0.0, 0.01, path.shape)
    mask = np.zeros(canvas.shape, bool)
    for side in (-1, 1):
        pts = path * (side * (0.85 + 0.15 * size), 1.0)
        for i in range(len(pts) - 1):
            width = head.units((widths[i] + widths[i + 1]) / 2)
            mask |= canvas.polyline(head.to_image(pts[i : i + 2]), width)
    septum = canvas.polyline(head.to_image([[0.0, -0.4], [0.0, 0.05]]), head.units(0.02))
    mask &= ~septum
    mask |= canvas.polyline(head.to_image([[0.0, 0.04], [0.0, 0.18]]), head.units(0.016 * size))
    return mask


def _sulci(canvas: Canvas, head: _Head, rng: np.random.Generator, edge: float) -> np.ndarray:
    """Cortical sulci: meandering lines running inwards from the brain surface, some branched."""
    mask = np.zeros(canvas.shape, bool)
    base_width = 0.0045 * head.hb / 0.4
    for angle in np.linspace(0.0, 2 * np.pi, 52, endpoint=False) + rng.uniform(0, 0.1):
        angle += rng.normal(0.0, 0.04)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        surface = 1.0 - edge / np.hypot(head.ha * direction[0], head.hb * direction[1])
        depth = rng.uniform(0.04, 0.18)
        steps = np.linspace(0.0, 1.0, 6)
        wiggle = np.cumsum(rng.normal(0.0, 0.012, steps.size))  # a random walk sideways
        pts = np.array(
            [
                direction * (surface + 0.03 - d * (depth + 0.03)) + normal * w
                for d, w in zip(steps, wiggle)
            ]
        )
        width = base_width * rng.uniform(0.7, 1.3)
        mask |= canvas.polyline(head.to_image(pts), width)
        if rng.random() < 0.6:  # a side branch
            start = pts[int(rng.integers(1, 4))]
            tip = start - direction * rng.uniform(0.02, 0.05) + normal * rng.choice([-1, 1]) * 0.04
            mask |= canvas.polyline(head.to_image(np.array([start, tip])), width * 0.8)
    return mask


def _choroid(canvas: Canvas, head: _Head, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(canvas.shape, bool)
    for side in (-1, 1):
        c = (side * rng.uniform(0.18, 0.22), rng.uniform(0.32, 0.38))
        mask |= canvas.polygon(head.blob(rng, c, rng.uniform(0.025, 0.045), roughness=0.2))
    return mask


def _glioma_geometry(
    rng: np.random.Generator, head: _Head, scale: float = 1.0
) -> tuple[tuple[float, float], float]:
    """Centre (head-local) and radius (head units) of an intra-axial mass in one hemisphere."""
    radius = min(float(rng.uniform(0.11, 0.24)) * scale, 0.5)
    for _ in range(50):
        u = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.55))
        v = float(rng.uniform(-0.6, 0.6))
        if np.hypot(u / 0.82, v / 0.88) + radius < 0.8:
            return (u, v), radius
    return (0.35, 0.0), radius


def _paint_glioma(
    img: np.ndarray,
    canvas: Canvas,
    head: _Head,
    rng: np.random.Generator,
    tex: np.random.Generator,
    geometry: tuple[tuple[float, float], float],
    wm: float,
) -> np.ndarray:
    center, radius = geometry
    lesion = canvas.polygon(
        head.blob(
            rng, center, radius, aspect=rng.uniform(0.7, 1.0), roughness=0.18, harmonics=(2, 6)
        )
    )
    texture = 0.6 * canvas.smooth_field(tex, 20) + 0.8 * canvas.smooth_field(tex, 48)
    texture = texture - texture[lesion].mean() if lesion.any() else texture
    if rng.random() < 0.65:  # high grade: irregular enhancing rim around necrosis
        img[lesion] = _ENHANCING * rng.uniform(0.85, 1.0) + 10.0 * texture[lesion]
        core = canvas.polygon(
            head.blob(
                rng, center, radius * rng.uniform(0.5, 0.75), roughness=0.15, harmonics=(2, 5)
            )
        )
        img[core & lesion] = rng.uniform(40.0, 70.0) + 8.0 * texture[core & lesion]
    else:  # lower grade: non-enhancing, hypointense and heterogeneous
        img[lesion] = 0.45 * wm + 15.0 * texture[lesion]
    return lesion


def _paint_meningioma(
    img: np.ndarray,
    canvas: Canvas,
    head: _Head,
    rng: np.random.Generator,
    tex: np.random.Generator,
    depth: np.ndarray,
    inner_edge: float,
    intracranial: np.ndarray,
    scale: float = 1.0,
) -> np.ndarray:
    radius = min(float(rng.uniform(0.12, 0.24)) * scale, 0.5)
    angle = float(rng.uniform(0.0, 2 * np.pi))
    direction = np.array([np.cos(angle), np.sin(angle)])
    # inner skull surface along ``direction`` (head-local ellipse, about 1 - skull thickness)
    reach = np.hypot(head.ha * direction[0], head.hb * direction[1])
    surface = direction * (1.0 - inner_edge / reach)
    center = surface - direction * radius * rng.uniform(0.55, 0.75)
    aspect = float(rng.uniform(0.8, 1.0))
    pts = head.blob(rng, tuple(center), radius, aspect=aspect, roughness=0.06, harmonics=(2, 4))
    centroid = pts.mean(0)
    cleft = canvas.polygon((pts - centroid) * 1.12 + centroid) & intracranial
    img[cleft] = _CSF
    lesion = canvas.polygon(pts) & intracranial
    img[lesion] = _ENHANCING * rng.uniform(0.88, 1.0) + 5.0 * canvas.smooth_field(tex, 50)[lesion]
    return lesion


def _paint_pituitary(
    img: np.ndarray,
    canvas: Canvas,
    head: _Head,
    rng: np.random.Generator,
    sella_v: float,
    scale: float = 1.0,
) -> np.ndarray:
    radius = min(float(rng.uniform(0.065, 0.115)) * scale, 0.35)
    center = (float(rng.normal(0.0, 0.012)), sella_v + float(rng.uniform(-0.02, 0.04)))
    pts = head.blob(
        rng, center, radius, aspect=rng.uniform(0.8, 1.15), roughness=0.08, harmonics=(2, 4)
    )
    lesion = canvas.polygon(pts)
    img[lesion] = _ENHANCING * rng.uniform(0.86, 1.0)
    if rng.random() < 0.3:  # cystic/haemorrhagic component
        c = head.to_image([center])[0] + rng.normal(0.0, 0.2, 2) * head.units(radius)
        cyst = canvas.polygon(ellipse_points(c, (head.units(radius) * 0.45,) * 2, n=32))
        img[cyst & lesion] = rng.uniform(50.0, 90.0)
    return lesion
