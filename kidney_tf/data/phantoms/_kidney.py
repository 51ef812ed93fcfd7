"""Axial abdominal CT phantoms at kidney level: Cyst, Normal, Stone, Tumor.

The slice is built in Hounsfield units (air -1000, fat -100, water 0, soft tissue 40, enhanced
cortex up to ~200, bone 250-1000, calculi 500+) and shown through a jittered abdominal window
(level ~40, width ~400), as in the public CT-KIDNEY dataset. Image left is the patient's right.

Anatomy (all classes alike): body outline with skin, subcutaneous fat and abdominal wall, ribs,
vertebra with posterior elements, psoas and back muscles, aorta/IVC, both kidneys (cortex, medullary
pyramids, sinus fat, pelvis), optional liver/gallbladder/spleen, bowel loops with air, fluid,
faeces or oral contrast, and the scanner table. Lesions: a round water-density cyst, a small
calcified stone in the collecting system, or a larger heterogeneous tumour bulging the contour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kidney_tf.data.phantoms._common import (
    Canvas,
    PhantomSample,
    Streams,
    blob_points,
    ellipse_points,
    random_blob,
    random_radial,
    rotation,
    to_uint8,
)

CLASSES = ("Cyst", "Normal", "Stone", "Tumor")
NORMAL_CLASS = "Normal"

AIR = -1000.0
FAT = -100.0


@dataclass
class _Kidney:
    """Geometry of one kidney in unit coordinates."""

    side: int  # -1 image left (patient right), +1 image right
    center: np.ndarray
    a: float  # long semi-axis
    b: float  # short semi-axis
    tilt: float  # degrees, canonical (image-left) frame
    hilum: float  # radians, local angle the hilum faces
    radial: np.ndarray

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Canonical local coordinates (x medial, y posterior; kidney units) -> unit image coords."""
        pts = np.asarray(local, dtype=np.float64).reshape(-1, 2) * (self.a, self.b)
        pts = pts @ rotation(self.tilt).T
        pts[:, 0] *= -self.side  # canonical frame is the image-left kidney (medial = +x)
        return pts + self.center

    def polar(self, angle: float, frac: float) -> np.ndarray:
        """Image point at local polar angle ``angle`` (radians) and fraction ``frac`` of the edge."""
        theta = np.linspace(0.0, 2 * np.pi, self.radial.size, endpoint=False)
        r = np.interp(angle % (2 * np.pi), theta, self.radial, period=2 * np.pi)
        return self.to_image([[frac * r * np.cos(angle), frac * r * np.sin(angle)]])[0]

    def outline(self) -> np.ndarray:
        theta = np.linspace(0.0, 2 * np.pi, self.radial.size, endpoint=False)
        local = np.stack([self.radial * np.cos(theta), self.radial * np.sin(theta)], axis=1)
        return self.to_image(local)


class _Slice:
    """A Hounsfield-unit image being painted layer by layer."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.hu = np.full(canvas.shape, AIR, np.float32)

    def paint(self, mask: np.ndarray, value: float | np.ndarray) -> None:
        if isinstance(value, np.ndarray):
            self.hu[mask] = value[mask]
        else:
            self.hu[mask] = value


def render_kidney_ct(
    class_name: str, streams: Streams, size: int, lesion_scale: float = 1.0
) -> PhantomSample:
    """Render one kidney CT phantom (see module docstring). Usage: via ``render_phantom``.

    ``lesion_scale`` multiplies every lesion's radius (1.0: sizes as in the public data, where a
    stone is a few pixels wide at 128 px); the anatomy and all random draws stay the same.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown kidney-ct class {class_name!r}; expected one of {CLASSES}")
    canvas = Canvas(size)
    rng = streams.anatomy
    tex = streams.texture
    ct = _Slice(canvas)

    # --- acquisition: contrast phase and window (same distribution for every class) ----------
    enhancement = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.35, 1.0))
    corticomedullary = float(rng.uniform(0.0, 1.0))  # 1 = arterial-phase differentiation
    level = float(rng.uniform(30.0, 55.0))
    width = float(rng.uniform(340.0, 460.0))
    noise_hu = float(rng.uniform(5.0, 14.0))
    hu_soft = 45.0 + rng.normal(0, 4)
    hu_muscle = 50.0 + rng.normal(0, 4)
    hu_fat = FAT + rng.normal(0, 6)
    hu_kidney_plain = 33.0 + rng.normal(0, 3)
    hu_cortex = hu_kidney_plain + 150.0 * enhancement
    hu_medulla = hu_kidney_plain + 150.0 * enhancement * (1.0 - 0.65 * corticomedullary)
    hu_vessel = 42.0 + 190.0 * enhancement * (0.6 + 0.4 * corticomedullary)
    hu_vein = 42.0 + 120.0 * enhancement

    # --- body ----------------------------------------------------------------------------------
    body_a = float(rng.uniform(0.28, 0.46))
    body_b = body_a * float(rng.uniform(0.6, 0.8))
    cx = 0.5 + float(np.clip(rng.normal(0, 0.03), -0.06, 0.06))
    cx = float(np.clip(cx, body_a * 1.1 + 0.01, 0.99 - body_a * 1.1))  # whole body in view
    cy = min(float(rng.uniform(0.36, 0.48)), 0.80 - 0.93 * body_b)
    radial = random_radial(rng, 0.05, harmonics=(2, 4), n=128)
    # the patient lies slightly rotated on the table: the whole anatomy turns, the table does not
    canvas.rotate_about((cx, cy), float(np.clip(rng.normal(0.0, 3.0), -8.0, 8.0)))
    body_pts = blob_points((cx, cy), (body_a, body_b), 0.0, radial=radial)
    below = body_pts[:, 1] > cy
    body_pts[below, 1] = cy + (body_pts[below, 1] - cy) * 0.92  # flattened back on the table
    body = canvas.polygon(body_pts)
    depth = _inner_distance(body, canvas)  # unit coordinates from the skin
    t_skin = 0.004
    t_fat = float(rng.uniform(0.01, 0.065)) * np.clip(
        1.0 + 0.3 * canvas.smooth_field(tex, 6), 0.4, 1.6
    )
    t_wall = float(rng.uniform(0.008, 0.016))
    ct.paint(body, hu_soft)
    ct.paint(depth > t_skin, hu_fat + 6.0 * canvas.smooth_field(tex))
    ct.paint(depth > t_skin + t_fat, hu_muscle)
    cavity = depth > t_skin + t_fat + t_wall
    ct.paint(cavity, hu_fat + 8.0 * canvas.smooth_field(tex, 40))

    # --- spine and retroperitoneal landmarks ----------------------------------------------------
    rv = float(rng.uniform(0.036, 0.048)) * (body_a / 0.38) ** 0.3
    sx = cx + float(rng.normal(0, 0.006))
    back = cy + 0.92 * body_b  # posterior skin at the midline (before the outline jitter)
    sy = back - float(np.mean(t_fat)) - float(rng.uniform(0.035, 0.055)) - 2.9 * rv

    # --- kidneys (geometry first: other organs avoid them) --------------------------------------
    kidneys = [_make_kidney(rng, side, sx, sy, rv, body_a) for side in (-1, 1)]

    # --- intraperitoneal organs and bowel (distractors for every class) -------------------------
    liver_center = None
    if rng.random() < 0.65:
        liver_center = (cx - body_a * rng.uniform(0.40, 0.55), cy - body_b * rng.uniform(0.0, 0.3))
        liver_r = (body_a * rng.uniform(0.25, 0.4), body_b * rng.uniform(0.4, 0.65))
        liver = canvas.polygon(random_blob(rng, liver_center, liver_r, rng.uniform(-20, 20)))
        liver &= cavity
        hu_liver = 55.0 + 55.0 * enhancement + rng.normal(0, 4)
        ct.paint(liver, hu_liver + 4.0 * canvas.smooth_field(tex, 30))
        if rng.random() < 0.3:  # gallbladder: water-density oval at the liver's medial edge
            gb = (liver_center[0] + liver_r[0] * 0.6, liver_center[1] - liver_r[1] * 0.3)
            gb_r = rng.uniform(0.018, 0.032)
            ct.paint(
                canvas.polygon(random_blob(rng, gb, (gb_r, gb_r * 0.7), rng.uniform(0, 180)))
                & cavity,
                rng.uniform(0, 15),
            )
    if rng.random() < 0.35:
        spleen_c = (cx + body_a * rng.uniform(0.55, 0.7), cy + body_b * rng.uniform(0.0, 0.25))
        spleen = canvas.polygon(
            random_blob(rng, spleen_c, (0.045, 0.08), rng.uniform(-40, -10), roughness=0.08)
        )
        ct.paint(spleen & cavity, 50.0 + 70.0 * enhancement)

    if rng.random() < 0.45:  # a large gas-filled viscus (stomach / transverse colon)
        _paint_viscus(ct, rng, tex, cavity, (cx, cy), (body_a, body_b))
    _paint_bowel(ct, rng, tex, cavity, (cx, cy), (body_a, body_b), kidneys, liver_center, sx, sy)
    for _ in range(int(rng.integers(3, 9))):  # mesenteric vessels
        pos = (cx + rng.uniform(-0.5, 0.5) * body_a, cy + rng.uniform(-0.45, 0.25) * body_b)
        r = rng.uniform(0.003, 0.006)
        ct.paint(canvas.polygon(ellipse_points(pos, (r, r))) & cavity, hu_vessel)

    # --- muscles, vessels, spine ---------------------------------------------------------------
    inside_fat = depth > t_skin + t_fat * 0.9
    for side in (-1, 1):
        psoas = ((sx + side * 1.5 * rv, sy - 0.1 * rv), (0.55 * rv, 0.7 * rv))
        ct.paint(canvas.polygon(random_blob(rng, *psoas, side * 20.0, roughness=0.05)), hu_muscle)
        erector = ((sx + side * 1.6 * rv, sy + 2.3 * rv), (1.5 * rv, 1.15 * rv))
        ct.paint(
            canvas.polygon(random_blob(rng, *erector, side * -10.0, roughness=0.05)) & inside_fat,
            hu_muscle + 5.0 * canvas.smooth_field(tex, 60),
        )
        quadratus = ((sx + side * 3.0 * rv, sy + 1.35 * rv), (0.95 * rv, 0.5 * rv))
        ct.paint(
            canvas.polygon(random_blob(rng, *quadratus, side * -30.0, roughness=0.05)) & inside_fat,
            hu_muscle,
        )
    _paint_ribs(ct, rng, (cx, cy), (body_a, body_b), t_skin + float(np.mean(t_fat)) + t_wall / 2)
    _paint_spine(ct, rng, tex, sx, sy, rv)
    aorta_c = (sx + 0.35 * rv, sy - 1.55 * rv)
    aorta_r = float(rng.uniform(0.014, 0.02))
    ct.paint(canvas.polygon(ellipse_points(aorta_c, (aorta_r, aorta_r))), hu_vessel)
    if rng.random() < 0.25:  # wall calcification: a bright dot outside the kidneys
        ang = rng.uniform(0, 2 * np.pi)
        dot = (aorta_c[0] + aorta_r * np.cos(ang), aorta_c[1] + aorta_r * np.sin(ang))
        ct.paint(canvas.polygon(ellipse_points(dot, (0.005, 0.004), np.rad2deg(ang))), 700.0)
    ivc_c = (sx - 1.45 * rv, sy - 1.35 * rv)
    ct.paint(canvas.polygon(ellipse_points(ivc_c, (0.022, 0.013), rng.uniform(-20, 20))), hu_vein)

    # --- kidneys -------------------------------------------------------------------------------
    organ = np.zeros(canvas.shape, bool)
    for kidney in kidneys:
        organ |= _paint_kidney(ct, rng, tex, kidney, hu_cortex, hu_medulla, hu_fat, hu_vessel)
        if rng.random() < 0.6:  # renal vein/artery leaving the hilum towards the great vessels
            start = kidney.polar(kidney.hilum, 0.85)
            end = np.asarray(ivc_c if kidney.side < 0 else aorta_c)
            path = np.stack([start, start + (end - start) * 0.85])
            ct.paint(canvas.polyline(path, 0.006) & cavity & ~organ, hu_vein)

    # --- lesion --------------------------------------------------------------------------------
    mask = np.zeros(canvas.shape, bool)
    meta: dict = {"enhancement": enhancement, "window": (level, width)}
    if class_name != NORMAL_CLASS:
        kidney = kidneys[int(streams.lesion.integers(0, 2))]
        mask = _paint_lesion(
            ct,
            streams.lesion,
            tex,
            class_name,
            kidney,
            hu_kidney_plain,
            hu_cortex,
            depth > t_skin,
            lesion_scale,
        )
        meta["lesion_side"] = "image-left" if kidney.side < 0 else "image-right"

    # --- scanner table (every class, outside the body) -------------------------------------------
    body_bottom = float(canvas.apply(body_pts)[:, 1].max())
    canvas.transform = None
    _paint_table(ct, rng, body_bottom + float(rng.uniform(0.02, 0.045)))

    # --- acquisition: partial-volume blur, quantum noise, window --------------------------------
    hu = canvas.blur(ct.hu, 0.0024)
    hu = hu + noise_hu * canvas.correlated_noise(streams.noise)
    low = level - width / 2.0
    image = to_uint8((hu - low) / width * 255.0)
    meta.update(body_center=(cx, cy), body_axes=(body_a, body_b))
    return PhantomSample(image=image, mask=mask, organ=organ, meta=meta)


def _inner_distance(mask: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Distance to the outside of ``mask`` in unit coordinates."""
    import cv2

    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5) / canvas.size


def _make_kidney(
    rng: np.random.Generator, side: int, sx: float, sy: float, rv: float, body_a: float
) -> _Kidney:
    scale = (body_a / 0.38) ** 0.4
    a = float(rng.uniform(0.057, 0.074)) * scale
    b = a * float(rng.uniform(0.66, 0.85))
    center = np.array(
        [
            sx + side * (1.1 * rv + 0.9 * a + float(rng.uniform(0.02, 0.05)) * scale),
            sy - float(rng.uniform(-0.2, 0.6)) * rv,
        ]
    )
    tilt = -float(rng.uniform(15.0, 45.0))
    hilum = -float(rng.uniform(0.15, 0.6))  # faces medially and a little anteriorly
    radial = random_radial(rng, 0.03, harmonics=(2, 5), n=128)
    theta = np.linspace(0.0, 2 * np.pi, radial.size, endpoint=False)
    delta = np.angle(np.exp(1j * (theta - hilum)))
    radial = radial * (1.0 - float(rng.uniform(0.2, 0.35)) * np.exp(-((delta / 0.45) ** 2)))
    return _Kidney(side, center, a, b, tilt, hilum, radial)


def _paint_kidney(
    ct: _Slice,
    rng: np.random.Generator,
    tex: np.random.Generator,
    kidney: _Kidney,
    hu_cortex: float,
    hu_medulla: float,
    hu_fat: float,
    hu_vessel: float,
) -> np.ndarray:
    canvas = ct.canvas
    outline = canvas.polygon(kidney.outline())
    ct.paint(outline, hu_cortex + 5.0 * canvas.smooth_field(tex, 32))
    # medullary pyramids around the sinus, pointing at it
    n_pyr = int(rng.integers(5, 8))
    angles = kidney.hilum + np.linspace(0.9, 2 * np.pi - 0.9, n_pyr) + rng.normal(0, 0.12, n_pyr)
    for ang in angles:
        c = kidney.polar(ang, 0.5)
        direction = np.rad2deg(ang) + kidney.tilt
        pyramid = (
            ellipse_points((0.0, 0.0), (0.27 * kidney.b, 0.17 * kidney.b), 0.0, n=32)
            @ rotation(direction).T
        )
        if kidney.side > 0:
            pyramid[:, 0] *= -1
        ct.paint(canvas.polygon(pyramid + c) & outline, hu_medulla)
    # renal sinus fat opening at the hilum, with the pelvis (urine) leaving through it
    sinus = _local_ellipse(
        kidney, kidney.polar(kidney.hilum, 0.75), (0.5, rng.uniform(0.22, 0.32)), kidney.hilum
    )
    ct.paint(canvas.polygon(sinus) & outline, hu_fat * 0.8)
    pelvis_len = rng.uniform(0.2, 0.35)
    pelvis = _local_ellipse(
        kidney, kidney.polar(kidney.hilum, 0.85), (pelvis_len, pelvis_len * 0.5), kidney.hilum
    )
    ct.paint(canvas.polygon(pelvis), 8.0)
    # segmental vessels in the sinus
    for _ in range(int(rng.integers(1, 3))):
        c = kidney.polar(kidney.hilum + rng.normal(0, 0.5), rng.uniform(0.35, 0.7))
        r = 0.0035
        ct.paint(canvas.polygon(ellipse_points(c, (r, r))) & outline, hu_vessel)
    return outline


def _local_ellipse(
    kidney: _Kidney, center: np.ndarray, radii: tuple[float, float], angle: float
) -> np.ndarray:
    """Ellipse with radii in kidney short-axis units, its long axis along local ``angle``."""
    direction = np.rad2deg(angle) + kidney.tilt
    pts = ellipse_points((0.0, 0.0), (radii[0] * kidney.b, radii[1] * kidney.b), direction, n=48)
    if kidney.side > 0:
        pts[:, 0] *= -1
    return pts + center


def _paint_lesion(
    ct: _Slice,
    rng: np.random.Generator,
    tex: np.random.Generator,
    class_name: str,
    kidney: _Kidney,
    hu_plain: float,
    hu_cortex: float,
    inside: np.ndarray,
    scale: float = 1.0,
) -> np.ndarray:
    """Paint one lesion; it stays inside ``inside`` (the body below the skin) at any ``scale``."""
    canvas = ct.canvas
    away_from_hilum = kidney.hilum + rng.uniform(0.9, 2 * np.pi - 0.9)
    if class_name == "Cyst":
        r = float(rng.uniform(0.013, 0.032)) * scale
        center = kidney.polar(away_from_hilum, rng.uniform(0.35, 1.0))
        pts = random_blob(
            rng,
            center,
            (r, r * rng.uniform(0.8, 1.0)),
            rng.uniform(0, 180),
            roughness=0.02,
            harmonics=(2, 3),
        )
        lesion = canvas.polygon(pts) & inside
        ct.paint(lesion, float(rng.uniform(0.0, 12.0)))
        return lesion
    if class_name == "Stone":
        # in the collecting system: the pelvis or a calyx at a pyramid tip
        if rng.random() < 0.5:
            center = kidney.polar(kidney.hilum + rng.normal(0, 0.25), rng.uniform(0.25, 0.6))
        else:
            center = kidney.polar(kidney.hilum + rng.uniform(0.9, 2 * np.pi - 0.9), 0.32)
        r = float(rng.uniform(0.0125, 0.02)) * scale
        if rng.random() < 0.3:  # mild hydronephrosis: a dilated, urine-filled pelvis
            pelvis = _local_ellipse(
                kidney, kidney.polar(kidney.hilum, 0.45), (0.45, 0.3), kidney.hilum
            )
            ct.paint(canvas.polygon(pelvis), 8.0)
        pts = random_blob(
            rng,
            center,
            (r, r * rng.uniform(0.7, 1.0)),
            rng.uniform(0, 180),
            roughness=0.15,
            harmonics=(2, 5),
            n=48,
        )
        lesion = canvas.polygon(pts) & inside
        ct.paint(lesion, float(rng.uniform(500.0, 1300.0)))
        return lesion
    # Tumor: a lobulated heterogeneous mass bulging the renal contour
    r = float(rng.uniform(0.034, 0.058)) * scale
    center = kidney.polar(away_from_hilum, rng.uniform(0.55, 0.95))
    pts = random_blob(
        rng,
        center,
        (r, r * rng.uniform(0.75, 1.0)),
        rng.uniform(0, 180),
        roughness=0.12,
        harmonics=(2, 5),
    )
    lesion = canvas.polygon(pts) & inside
    enhancement = hu_cortex - hu_plain
    base = hu_plain - float(rng.uniform(18.0, 32.0)) + enhancement * float(rng.uniform(0.1, 0.35))
    texture = canvas.smooth_field(tex, 48)
    texture = texture - texture[lesion].mean() if lesion.any() else texture
    values = base + 25.0 * texture
    if rng.random() < 0.6:  # necrosis
        values = np.where(texture > rng.uniform(0.6, 1.2), 10.0, values)
    ct.paint(lesion, values)
    return lesion


def _paint_bowel(
    ct: _Slice,
    rng: np.random.Generator,
    tex: np.random.Generator,
    cavity: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    kidneys: list[_Kidney],
    liver_center: tuple[float, float] | None,
    sx: float,
    sy: float,
) -> None:
    canvas = ct.canvas
    _, gy = canvas.grid()
    mottle = canvas.smooth_field(tex, 64)
    n_loops = int(rng.integers(5, 12))
    placed = 0
    for _ in range(40):
        if placed >= n_loops:
            break
        pos = np.array(
            [
                center[0] + rng.uniform(-0.8, 0.8) * axes[0],
                center[1] + rng.uniform(-0.85, 0.35) * axes[1],
            ]
        )
        r = float(rng.uniform(0.018, 0.045))
        ok = ((pos[0] - center[0]) / axes[0]) ** 2 + ((pos[1] - center[1]) / axes[1]) ** 2 < 0.6
        ok &= all(np.hypot(*(pos - k.center)) > k.a + r for k in kidneys)
        ok &= np.hypot(pos[0] - sx, pos[1] - sy) > 0.09 + r
        if liver_center is not None:
            ok &= np.hypot(pos[0] - liver_center[0], pos[1] - liver_center[1]) > 0.12 + r
        kind = rng.random()
        radii = (r, r * rng.uniform(0.55, 1.0))
        angle = rng.uniform(0, 180)
        level = rng.uniform(-0.4, 0.3)
        if not ok:
            continue
        placed += 1
        wall = canvas.polygon(random_blob(rng, pos, radii, angle, roughness=0.08)) & cavity
        lumen = (
            canvas.polygon(
                random_blob(rng, pos, (radii[0] - 0.004, radii[1] - 0.004), angle, roughness=0.08)
            )
            & wall
        )
        ct.paint(wall, 40.0)
        if kind < 0.3:  # air-fluid level
            ct.paint(lumen, 15.0)
            surface = canvas.apply(pos)[0, 1] + level * radii[1]  # fluid level stays horizontal
            ct.paint(lumen & (gy < surface), AIR)
        elif kind < 0.6:  # faeces: mottled with gas bubbles
            ct.paint(lumen, np.where(mottle > 0.9, AIR, -40.0 + 20.0 * mottle))
        elif kind < 0.88:  # fluid-filled
            ct.paint(lumen, 15.0)
        else:  # positive oral contrast
            ct.paint(lumen, float(rng.uniform(180.0, 320.0)))


def _paint_viscus(
    ct: _Slice,
    rng: np.random.Generator,
    tex: np.random.Generator,
    cavity: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
) -> None:
    """A large anterior gas-filled viscus with an air-fluid level or faecal content."""
    canvas = ct.canvas
    _, gy = canvas.grid()
    pos = (
        center[0] + rng.uniform(-0.45, 0.45) * axes[0],
        center[1] - rng.uniform(0.35, 0.6) * axes[1],
    )
    radii = (float(rng.uniform(0.05, 0.11)), float(rng.uniform(0.025, 0.05)))
    angle = float(rng.uniform(-25, 25))
    radial = random_radial(rng, 0.1, harmonics=(2, 5))
    wall = canvas.polygon(blob_points(pos, radii, angle, radial=radial)) & cavity
    inner = (radii[0] - 0.005, radii[1] - 0.005)
    lumen = canvas.polygon(blob_points(pos, inner, angle, radial=radial)) & wall
    ct.paint(wall, 40.0)
    if rng.random() < 0.6:
        ct.paint(lumen, 15.0)
        surface = canvas.apply(pos)[0, 1] + rng.uniform(-0.3, 0.6) * radii[1]
        ct.paint(lumen & (gy < surface), AIR)
    else:
        mottle = canvas.smooth_field(tex, 64)
        ct.paint(lumen, np.where(mottle > 0.3, AIR, -40.0 + 20.0 * mottle))


def _paint_ribs(
    ct: _Slice,
    rng: np.random.Generator,
    center: tuple[float, float],
    axes: tuple[float, float],
    inset: float,
) -> None:
    canvas = ct.canvas
    for lo, hi in ((15.0, 80.0), (100.0, 165.0), (-40.0, -10.0), (-170.0, -140.0)):
        n = int(rng.integers(1, 4)) if lo > 0 else int(rng.integers(0, 2))
        for ang in rng.uniform(lo, hi, n):
            t = np.deg2rad(ang)
            radius = 1.0 / np.hypot(np.cos(t) / axes[0], np.sin(t) / axes[1])
            pos = (
                center[0] + (radius - inset) * np.cos(t),
                center[1] + (radius - inset) * np.sin(t) * (0.92 if ang > 0 else 1.0),
            )
            length = rng.uniform(0.01, 0.022)
            ct.paint(
                canvas.polygon(ellipse_points(pos, (length, 0.0045), ang + 90.0, n=32)),
                float(rng.uniform(500.0, 900.0)),
            )


def _paint_spine(
    ct: _Slice,
    rng: np.random.Generator,
    tex: np.random.Generator,
    sx: float,
    sy: float,
    rv: float,
) -> None:
    """Lumbar vertebra: body (cortex + trabecular marrow), neural arch, canal, processes."""
    canvas = ct.canvas
    bone = float(rng.uniform(650.0, 950.0))
    canal_c = (sx, sy + 1.45 * rv)
    # laminae: an inverted V from the pedicles to the spinous process
    lamina = np.array(
        [[sx - 0.75 * rv, sy + 0.9 * rv], [sx, sy + 2.0 * rv], [sx + 0.75 * rv, sy + 0.9 * rv]]
    )
    ct.paint(canvas.polyline(lamina, 0.34 * rv), bone)
    ct.paint(canvas.polygon(ellipse_points(canal_c, (0.72 * rv, 0.62 * rv))), bone)
    spinous = np.array([[sx, sy + 1.9 * rv], [sx, sy + (2.5 + rng.uniform(0, 0.4)) * rv]])
    ct.paint(canvas.polyline(spinous, 0.26 * rv), bone)
    if rng.random() < 0.75:  # transverse processes, angled backwards
        for side in (-1, 1):
            tp = np.array(
                [
                    [sx + side * 0.6 * rv, sy + 1.05 * rv],
                    [sx + side * rng.uniform(1.6, 2.0) * rv, sy + rng.uniform(1.1, 1.4) * rv],
                ]
            )
            ct.paint(canvas.polyline(tp, 0.26 * rv), bone)
    ct.paint(canvas.polygon(ellipse_points(canal_c, (0.45 * rv, 0.4 * rv))), 25.0)
    body = random_blob(rng, (sx, sy), (1.08 * rv, rv), 0.0, roughness=0.03, harmonics=(2, 3))
    ct.paint(canvas.polygon(body), bone)
    marrow = blob_points(
        (sx, sy),
        (1.08 * rv - 0.005, rv - 0.005),
        0.0,
        radial=random_radial(rng, 0.02, harmonics=(2, 3)),
    )
    ct.paint(
        canvas.polygon(marrow), rng.uniform(150.0, 230.0) + 30.0 * canvas.smooth_field(tex, 80)
    )


def _paint_table(ct: _Slice, rng: np.random.Generator, top: float) -> None:
    """Scanner table: a curved cradle (double line) under the body and side rails."""
    canvas = ct.canvas
    x = np.linspace(-0.05, 1.05, 80)
    curve = float(rng.uniform(0.12, 0.3))
    hu = float(rng.uniform(400.0, 800.0))
    y = top + 0.01 - curve * (x - 0.5) ** 2
    ct.paint(canvas.polyline(np.stack([x, y], 1), 0.006), hu)
    if rng.random() < 0.7:
        offset = float(rng.uniform(0.012, 0.03))
        ct.paint(canvas.polyline(np.stack([x, y + offset], 1), 0.004), hu * 0.8)
    for side in (-1, 1):  # side rails running down and inwards from the cradle's edges
        x0 = 0.5 + side * float(rng.uniform(0.42, 0.5))
        y0 = top + 0.01 - curve * (x0 - 0.5) ** 2 + 0.015
        rail = np.array([[x0, y0], [x0 - side * 0.12, y0 + 0.14]])
        ct.paint(canvas.polyline(rail, 0.006), hu * 0.6)
