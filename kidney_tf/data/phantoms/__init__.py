"""Deterministic synthetic phantoms: the package's built-in kidney-CT and brain-MRI datasets.

``render_phantom`` draws one image and its pixel-accurate lesion mask from a random stream seeded
by ``(seed, kind, class, index)``; ``generate_phantoms`` writes a class-folder dataset with masks
and a manifest. Geometry lives in unit coordinates, so ``image_size`` changes resolution only.

Usage::

    from kidney_tf.data.phantoms import PHANTOM_CLASSES, generate_phantoms, render_phantom
    image, mask = render_phantom("kidney-ct", "Stone", 0, image_size=256, seed=0)
    manifest = generate_phantoms("brain-mri", "phantoms/brain", per_class=50, image_size=256)
"""

from __future__ import annotations

from kidney_tf.data.phantoms._common import PhantomSample
from kidney_tf.data.phantoms._generate import (
    INFO_NAME,
    MANIFEST_NAME,
    generate_phantoms,
    phantom_file_name,
)
from kidney_tf.data.phantoms._render import (
    NORMAL_CLASSES,
    PHANTOM_CLASSES,
    RENDERER_VERSION,
    render_phantom,
    render_phantom_sample,
)

PHANTOM_KINDS: tuple[str, ...] = tuple(PHANTOM_CLASSES)

__all__ = [
    "INFO_NAME",
    "MANIFEST_NAME",
    "NORMAL_CLASSES",
    "PHANTOM_CLASSES",
    "PHANTOM_KINDS",
    "RENDERER_VERSION",
    "PhantomSample",
    "generate_phantoms",
    "phantom_file_name",
    "render_phantom",
    "render_phantom_sample",
]
