"""Where an export goes and what marks it, without TensorFlow (so the CLI checks ``--out``
before importing it): version folders, the output guard, the metadata file.

Usage::

    from kidney_tf.export.layout import check_export_target, resolve_version_dir
    target = check_export_target(resolve_version_dir("serving/kidney", "auto"))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kidney_tf.utils.io import check_output_dir

METADATA_FILE = "kidney_tf_export.json"
METADATA_DIR = "assets.extra"  # SavedModel convention: files beside the model, not loaded by TF


def resolve_version_dir(out_dir: str | os.PathLike, version: int | str | None = None) -> Path:
    """``BASE/<version>`` from ``out_dir`` and ``version`` (see :func:`export_saved_model`).

    Version folders are positive integers (what TF Serving loads); anything else is refused.
    """
    out_dir = Path(out_dir)
    if version is None:
        if not _is_version(out_dir.name):
            raise ValueError(
                f"{out_dir}: the version folder must be a positive integer (TF Serving loads "
                "BASE/1, BASE/2, ...); pass --out BASE/<N> or --out BASE --version auto|N"
            )
        return out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: a file is there, not a model base folder")
    if version == "auto":
        existing = [int(p.name) for p in out_dir.glob("*") if p.is_dir() and _is_version(p.name)]
        return out_dir / str(max(existing, default=0) + 1)
    if isinstance(version, bool) or not _is_version(str(version)):
        raise ValueError(f"version must be a positive integer or 'auto', got {version!r}")
    return out_dir / str(int(version))


def _is_version(name: str) -> bool:
    return name.isascii() and name.isdigit() and int(name) > 0 and name == str(int(name))


def check_export_target(
    target: str | os.PathLike, *, overwrite: bool = False, source: str | os.PathLike | None = None
) -> Path:
    """Refuse a version folder that is not new, empty or (with ``overwrite``) an earlier export.

    Usage: ``check_export_target(resolve_version_dir("serving/kidney", "auto"))``.
    """
    return check_output_dir(
        target,
        "export",
        inputs=[source],
        replace=True,
        overwrite=overwrite,
        markers=(f"{METADATA_DIR}/{METADATA_FILE}",),
    )


def read_export_metadata(export_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``kidney_tf_export.json`` of an exported version folder (no TensorFlow needed)."""
    path = Path(export_dir) / METADATA_DIR / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is {export_dir} a kidney_tf export?)")
    return json.loads(path.read_text())
