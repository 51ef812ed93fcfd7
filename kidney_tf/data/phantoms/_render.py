"""``render_phantom``: one deterministic phantom image and its lesion mask."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kidney_tf.data.phantoms import _brain, _kidney
from kidney_tf.data.phantoms._common import PhantomSample, Streams, stable_streams

PHANTOM_CLASSES: dict[str, tuple[str, ...]] = {
    "kidney-ct": _kidney.CLASSES,
    "brain-mri": _brain.CLASSES,
}
#: The class without a lesion (empty mask) for each kind.
NORMAL_CLASSES: dict[str, str] = {
    "kidney-ct": _kidney.NORMAL_CLASS,
    "brain-mri": _brain.NORMAL_CLASS,
}
#: Bumped whenever rendering changes, so an old phantom folder is never mistaken for a new one.
RENDERER_VERSION = 1

_RENDERERS: dict[str, Callable[[str, Streams, int, float], PhantomSample]] = {
    "kidney-ct": _kidney.render_kidney_ct,
    "brain-mri": _brain.render_brain_mri,
}


def check_kind_class(kind: str, class_name: str | None = None) -> None:
    """Raise ``ValueError`` naming the valid choices for an unknown kind or class."""
    if kind not in PHANTOM_CLASSES:
        raise ValueError(
            f"unknown phantom kind {kind!r}; expected one of {sorted(PHANTOM_CLASSES)}"
        )
    if class_name is not None and class_name not in PHANTOM_CLASSES[kind]:
        raise ValueError(
            f"unknown {kind} class {class_name!r}; expected one of {PHANTOM_CLASSES[kind]}"
        )


def render_phantom_sample(
    kind: str,
    class_name: str,
    index: int,
    *,
    image_size: int = 256,
    seed: int = 0,
    lesion_scale: float = 1.0,
) -> PhantomSample:
    """Render one phantom with its organ mask and parameters (see ``render_phantom``).

    Usage: ``sample = render_phantom_sample("brain-mri", "glioma", 0); sample.organ.sum()``.
    """
    check_kind_class(kind, class_name)
    lesion_scale = check_lesion_scale(lesion_scale)
    streams = stable_streams(seed, kind, class_name, index)
    return _RENDERERS[kind](class_name, streams, int(image_size), lesion_scale)


def check_lesion_scale(value: object) -> float:
    """``value`` as a float in [0.5, 4]; ``ValueError`` otherwise."""
    try:
        scale = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"lesion_scale must be a number, got {value!r}") from None
    if isinstance(value, bool) or not 0.5 <= scale <= 4.0:
        raise ValueError(f"lesion_scale must be between 0.5 and 4, got {value!r}")
    return scale


def render_phantom(
    kind: str,
    class_name: str,
    index: int,
    *,
    image_size: int = 256,
    seed: int = 0,
    lesion_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render phantom number ``index`` of ``class_name``: ``(image uint8 HxW, lesion mask bool HxW)``.

    Deterministic: the same ``(kind, class_name, index, image_size, seed)`` always gives the same
    bytes, in any process. The geometry does not depend on ``image_size`` (only pixel noise does).
    The mask is empty exactly for the normal class (``Normal`` / ``notumor``). ``lesion_scale``
    multiplies lesion radii (1.0 = sizes as in the public datasets; the demo uses larger, more
    conspicuous lesions so a network trained from scratch on a CPU learns them in minutes).

    Usage: ``image, mask = render_phantom("kidney-ct", "Stone", 7, image_size=128)``.
    """
    sample = render_phantom_sample(
        kind, class_name, index, image_size=image_size, seed=seed, lesion_scale=lesion_scale
    )
    return sample.image, sample.mask
