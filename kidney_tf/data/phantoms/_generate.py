"""``generate_phantoms``: write a phantom dataset (class folders, masks, manifest) to a folder."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kidney_tf import __version__
from kidney_tf.data.phantoms._render import (
    NORMAL_CLASSES,
    PHANTOM_CLASSES,
    RENDERER_VERSION,
    check_kind_class,
    check_lesion_scale,
    render_phantom,
)
from kidney_tf.data.sources import MANIFEST_COLUMNS
from kidney_tf.utils.io import atomic_dir, atomic_path, write_json_atomic, write_text_atomic
from kidney_tf.utils.logging import get_logger

logger = get_logger(__name__)

MANIFEST_NAME = "manifest.csv"
INFO_NAME = "phantom.json"
# zlib level for the PNGs: fixed explicitly so the bytes never depend on OpenCV's default.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
# Parameters that must match for a folder to count as "the same phantom output".
_IDENTITY_KEYS = ("kind", "seed", "image_size", "per_class", "lesion_scale", "renderer_version")
# Values of identity keys that older phantom.json files did not record.
_IDENTITY_DEFAULTS = {"lesion_scale": 1.0}


def phantom_file_name(kind: str, class_name: str, index: int) -> str:
    """``<kind>_<class>_<index:05d>.png`` (the image and its mask share the name)."""
    return f"{kind}_{class_name}_{index:05d}.png"


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (or bool, stored as 0/255) 2-D array."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    ok, buffer = cv2.imencode(".png", array, _PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV only fails on unsupported arrays
        raise ValueError(f"could not encode a {array.dtype} {array.shape} array as PNG")
    return buffer.tobytes()


def generate_phantoms(
    kind: str,
    out_dir: str | os.PathLike,
    *,
    per_class: int = 50,
    image_size: int = 256,
    seed: int = 0,
    lesion_scale: float = 1.0,
    progress: bool | None = None,
) -> Path:
    """Write ``per_class`` phantoms of every class of ``kind`` to ``out_dir``; return the manifest.

    Layout: ``DIR/<Class>/<kind>_<Class>_<index:05d>.png`` (grayscale), ``DIR/masks/<Class>/<same
    name>.png`` (lesion mask, 0/255; all zero for the normal class), ``DIR/manifest.csv`` (columns
    ``path,label,split,mask_path``, relative paths, empty split: the pipeline splits) and
    ``DIR/phantom.json`` (the parameters and package version). ``lesion_scale`` multiplies lesion
    radii (see ``render_phantom``).

    A new folder appears atomically. An existing folder is only used when it is empty or holds a
    phantom output with the same parameters (missing files are then filled in, nothing else is
    touched); anything else raises ``FileExistsError``, so user data is never overwritten.
    ``progress`` shows a tqdm bar (default: when stderr is a terminal and logging is not quiet).

    Usage: ``manifest = generate_phantoms("kidney-ct", "phantoms/", per_class=100, image_size=160)``.
    """
    check_kind_class(kind)
    per_class, image_size, seed = _check_counts(per_class, image_size, seed)
    lesion_scale = check_lesion_scale(lesion_scale)
    out = Path(out_dir)
    info = {
        "kind": kind,
        "seed": seed,
        "image_size": image_size,
        "per_class": per_class,
        "lesion_scale": lesion_scale,
        "classes": list(PHANTOM_CLASSES[kind]),
        "normal_class": NORMAL_CLASSES[kind],
        "count": per_class * len(PHANTOM_CLASSES[kind]),
        "renderer_version": RENDERER_VERSION,
        "package_version": __version__,
    }
    if progress is None:
        progress = sys.stderr.isatty() and logger.getEffectiveLevel() <= logging.INFO

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if not out.exists():
        with atomic_dir(out) as tmp:
            _write_dataset(tmp, info, progress=progress, in_place=False)
        logger.debug("wrote %d %s phantoms to %s", info["count"], kind, out)
        return out / MANIFEST_NAME
    if any(out.iterdir()):
        _check_previous(out, info)
        if _is_complete(out, info):
            logger.info("%s: phantoms with these parameters are already there", out)
            return out / MANIFEST_NAME
        logger.info("%s: completing an interrupted phantom output", out)
    _write_dataset(out, info, progress=progress, in_place=True)
    return out / MANIFEST_NAME


def _check_counts(per_class: Any, image_size: Any, seed: Any) -> tuple[int, int, int]:
    for name, value, low in (
        ("per_class", per_class, 1),
        ("image_size", image_size, 16),
        ("seed", seed, 0),
    ):
        try:
            valid = not isinstance(value, bool) and int(value) == value and int(value) >= low
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(per_class), int(image_size), int(seed)


def _expected_records(info: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for class_name in info["classes"]:
        for index in range(info["per_class"]):
            name = phantom_file_name(info["kind"], class_name, index)
            rows.append(
                {
                    "path": f"{class_name}/{name}",
                    "label": class_name,
                    "split": "",
                    "mask_path": f"masks/{class_name}/{name}",
                }
            )
    return rows


def _check_previous(out: Path, info: dict[str, Any]) -> None:
    """Raise unless ``out`` holds a phantom output written with the same parameters."""
    info_path = out / INFO_NAME
    try:
        previous = json.loads(info_path.read_text())
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict):
        raise FileExistsError(
            f"{out}: folder is not empty and is not a phantom output (no valid {INFO_NAME}); "
            "choose a new or empty folder"
        )
    different = [
        f"{key} {previous.get(key, _IDENTITY_DEFAULTS.get(key))!r} != {info[key]!r}"
        for key in _IDENTITY_KEYS
        if previous.get(key, _IDENTITY_DEFAULTS.get(key)) != info[key]
    ]
    if different:
        raise FileExistsError(
            f"{out}: holds phantoms with other parameters ({'; '.join(different)}); "
            "choose a new folder or delete this one"
        )


def _is_complete(out: Path, info: dict[str, Any]) -> bool:
    if not (out / MANIFEST_NAME).is_file():
        return False
    return all(
        (out / row["path"]).is_file() and (out / row["mask_path"]).is_file()
        for row in _expected_records(info)
    )


def _write_dataset(root: Path, info: dict[str, Any], *, progress: bool, in_place: bool) -> None:
    """Render and write every image and mask, then the manifest (last: it marks completion)."""
    from tqdm.auto import tqdm

    # phantom.json first: an interrupted in-place run can then be recognised and completed.
    write_json_atomic(root / INFO_NAME, info)
    rows = _expected_records(info)
    for class_name in info["classes"]:
        (root / class_name).mkdir(parents=True, exist_ok=True)
        (root / "masks" / class_name).mkdir(parents=True, exist_ok=True)
    bar = tqdm(rows, desc=f"{info['kind']} phantoms", unit="img", disable=not progress)
    for row in bar:
        image_path, mask_path = root / row["path"], root / row["mask_path"]
        if in_place and image_path.is_file() and mask_path.is_file():
            continue
        index = int(Path(row["path"]).stem.rsplit("_", 1)[1])
        image, mask = render_phantom(
            info["kind"],
            row["label"],
            index,
            image_size=info["image_size"],
            seed=info["seed"],
            lesion_scale=info["lesion_scale"],
        )
        _write_bytes(image_path, encode_png(image), atomic=in_place)
        _write_bytes(mask_path, encode_png(mask), atomic=in_place)
    bar.close()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(root / MANIFEST_NAME, buffer.getvalue())


def _write_bytes(path: Path, data: bytes, *, atomic: bool) -> None:
    if not atomic:
        path.write_bytes(data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
